#!/usr/bin/env bash
# The main job: build libpayloadstore, then exercise it end to end from C
# (examples/demo.c) and from Rust (examples/demo.rs), printing what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cc -std=c99 -O2 -Wall -Wextra -Iinclude examples/demo.c -o target/release/demo-c \
   -Ltarget/release -lpayloadstore -Wl,-rpath,"$PWD/target/release"
echo "== C demo (examples/demo.c, linked against target/release/libpayloadstore.so) =="
./target/release/demo-c
echo
echo "== Rust demo (examples/demo.rs) =="
cargo run --release --quiet --example demo
