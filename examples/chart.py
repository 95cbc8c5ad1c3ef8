#!/usr/bin/env python3
"""Draws BENCHMARKS.md's charts from the JSON results of ../shared/peers.

usage: python3 examples/chart.py OUT.svg TITLE results/*.json

One panel per figure, one bar per engine (payloadstore highlighted), the
value printed at the end of each bar. Standard library only.
"""
import json
import sys

FIGURES = [
    ("bulk append MB/s", lambda d: d["bulk"]["mb_per_s"], True),
    ("durable append (sync/1000) MB/s", lambda d: d["sync"]["mb_per_s"], True),
    ("get 1 thread kops/s", lambda d: d["get1"]["ops_per_s"] / 1e3, True),
    ("get 2 threads kops/s", lambda d: d["get2"]["ops_per_s"] / 1e3, True),
    ("reopen + first get ms (lower is better)", lambda d: d["reopen"]["open_first_get_s"] * 1e3, False),
    ("disk / logical bytes (lower is better)", lambda d: d["reopen"]["disk_alloc_after_close"] / d["logical_bytes"], False),
]


def main():
    out, title, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    runs = []
    for f in files:
        with open(f) as fh:
            d = json.load(fh)
        runs.append((d.get("label") or d["engine"], d))
    runs.sort(key=lambda r: (not r[0].startswith("payloadstore"), r[0] != "rawfile", r[0]))
    bar_h, gap, label_w, bar_w, panel_w = 16, 4, 150, 300, 520
    panel_h = 30 + len(runs) * (bar_h + gap)
    cols = 2
    rows = (len(FIGURES) + cols - 1) // cols
    width, height = cols * panel_w + 20, rows * panel_h + 50
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="24" font-size="16" font-weight="bold">{title}</text>']
    for i, (name, get, _higher_better) in enumerate(FIGURES):
        x0 = 10 + (i % cols) * panel_w
        y0 = 40 + (i // cols) * panel_h
        svg.append(f'<text x="{x0}" y="{y0 + 14}" font-weight="bold">{name}</text>')
        vals = []
        for eng, d in runs:
            try:
                vals.append(float(get(d)))
            except (KeyError, TypeError, ZeroDivisionError):
                vals.append(None)
        top = max([v for v in vals if v is not None] or [1.0]) or 1.0
        for j, ((eng, _), v) in enumerate(zip(runs, vals)):
            y = y0 + 22 + j * (bar_h + gap)
            svg.append(f'<text x="{x0 + label_w - 6}" y="{y + 12}" text-anchor="end">{eng}</text>')
            if v is None:
                svg.append(f'<text x="{x0 + label_w}" y="{y + 12}" fill="#888">n/a</text>')
                continue
            w = max(1.0, bar_w * v / top)
            color = "#d9534f" if eng.startswith("payloadstore") else ("#555" if eng == "rawfile" else "#5b9bd5")
            svg.append(f'<rect x="{x0 + label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
            txt = f"{v:.2f}" if v < 10 else f"{v:.0f}"
            svg.append(f'<text x="{x0 + label_w + w + 4:.1f}" y="{y + 12}">{txt}</text>')
    svg.append("</svg>")
    with open(out, "w") as fh:
        fh.write("\n".join(svg))


if __name__ == "__main__":
    main()
