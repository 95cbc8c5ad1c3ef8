#!/usr/bin/env bash
# Every test: Rust (unit, integration, doc), the C tests against the shared
# and the static library under valgrind, header compile checks (C99, C++11),
# pkg-config and static-link lines, the Clang module map, the C++ example and
# the Go (cgo) package. Needs: cargo, cc, c++, valgrind, pkg-config, clang, go
# (.ci/run installs them on a clean machine).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
LIB="$ROOT/target/release"
OUT="$ROOT/target/c-tests"
mkdir -p "$OUT"
step() { printf '\n== %s ==\n' "$*"; }

step "Rust tests (cargo test --release)"
cargo test --release

step "build the library"
cargo build --release
test -f "$LIB/libpayloadstore.so" && test -f "$LIB/libpayloadstore.a"

CFLAGS=(-std=c99 -O1 -g -Wall -Wextra -Werror -pthread -I"$ROOT/include" -I"$ROOT/tests/c")
SHARED=(-L"$LIB" -lpayloadstore -Wl,-rpath,"$LIB")
# The README's static-link line; checked against what rustc says it needs.
NATIVE="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
step "static link line matches rustc's native-static-libs"
want=$(cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs 2>&1 | sed -n 's/.*native-static-libs: //p' | head -1)
[ "$want" = "$NATIVE" ] || { echo "rustc wants '$want', tests use '$NATIVE'"; exit 1; }
grep -qF -- "libpayloadstore.a $NATIVE" README.md || { echo "README's static line is not '$NATIVE'"; exit 1; }
STATIC=("$LIB/libpayloadstore.a" $NATIVE)

VG=(valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite,indirect,possible)
for kind in shared static; do
  if [ $kind = shared ]; then LINK=("${SHARED[@]}"); else LINK=("${STATIC[@]}"); fi
  for t in test_api test_threads; do
    step "C $t ($kind library) under valgrind"
    cc "${CFLAGS[@]}" "tests/c/$t.c" -o "$OUT/$t-$kind" "${LINK[@]}"
    "${VG[@]}" "$OUT/$t-$kind" 3000
  done
  "$OUT/test_threads-$kind" 50000   # full size without valgrind
done

step "header compiles as C99 and C++11 with -Wall -Wextra -Wpedantic -Werror, included twice"
cc -std=c99 -Wall -Wextra -Wpedantic -Werror -I"$ROOT/include" tests/c/test_header.c -o "$OUT/header-c" "${SHARED[@]}"
"$OUT/header-c"
c++ -std=c++11 -Wall -Wextra -Wpedantic -Werror -I"$ROOT/include" -x c++ tests/c/test_header.c -o "$OUT/header-cpp" "${SHARED[@]}"
"$OUT/header-cpp"

step "pkg-config (dynamic and --static)"
export PKG_CONFIG_PATH="$LIB"
cc -std=c99 -I"$ROOT/tests/c" tests/c/test_api.c -o "$OUT/pc-dyn" $(pkg-config --cflags --libs payloadstore) -Wl,-rpath,"$LIB"
"$OUT/pc-dyn" > /dev/null
cc -std=c99 -I"$ROOT/tests/c" tests/c/test_api.c -o "$OUT/pc-static" $(pkg-config --cflags payloadstore) "$LIB/libpayloadstore.a" $(pkg-config --libs-only-other --libs-only-l --static payloadstore | sed 's/-lpayloadstore//')
"$OUT/pc-static" > /dev/null
echo ok

step "Clang module map (what Swift imports)"
clang -fmodules -fmodules-cache-path="$OUT/modcache" -fmodule-map-file="$ROOT/include/module.modulemap" \
  -I"$ROOT/include" -x objective-c tests/c/test_module.c -o "$OUT/module" "${SHARED[@]}"
"$OUT/module" && echo ok

step "C++ RAII wrapper example"
c++ -std=c++11 -Wall -Wextra -Wpedantic -Werror -I"$ROOT/include" examples/cpp_example.cpp -o "$OUT/cpp-example" "${SHARED[@]}"
"$OUT/cpp-example"

step "Go (cgo) package: go test"
(cd examples/go && GOFLAGS=-mod=mod go test -count=1 ./...)

step "soak (short CI version; run longer with --secs N)"
cargo run --release --quiet --example soak -- --secs "${SOAK_SECS:-10}"

step "all tests passed"
