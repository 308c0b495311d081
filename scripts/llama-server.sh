#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` once, for the remote-backend tests, into
# $TARGET/llama-server/bin/ (TARGET = $CARGO_TARGET_DIR or target/). Cached:
# does nothing when the binary is already there.
#
# The llama.cpp vendored by llama-cpp-sys-2 leaves out tools/server, so the
# sources come from the llama-cpp-python sdist on PyPI (its vendor/llama.cpp is
# complete), checked by sha256. CPU only, no curl/OpenSSL, no web UI download;
# only the `llama-server` target, with -j2 (the machines have two cores).
set -euo pipefail
cd "$(dirname "$0")/.."

SDIST_PKG="llama-cpp-python==0.3.36"
SDIST_FILE="llama_cpp_python-0.3.36.tar.gz"
SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
OUT="${CARGO_TARGET_DIR:-target}/llama-server"
BIN="$OUT/bin/llama-server"

say() { printf '[llama-server] %s\n' "$*" >&2; }

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
    exit 0
fi
mkdir -p "$OUT"
work="$OUT/work"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

say "fetching the llama.cpp sources ($SDIST_PKG sdist from PyPI, ~75 MB)"
python3 -m pip download --quiet --no-deps --no-binary :all: --disable-pip-version-check \
    "$SDIST_PKG" -d "$work"
got="$(sha256sum "$work/$SDIST_FILE" | cut -d' ' -f1)"
if [ "$got" != "$SDIST_SHA256" ]; then
    say "checksum mismatch for $SDIST_FILE: expected $SDIST_SHA256, got $got"
    exit 1
fi
tar -xzf "$work/$SDIST_FILE" -C "$work" "${SDIST_FILE%.tar.gz}/vendor/llama.cpp"
src="$work/${SDIST_FILE%.tar.gz}/vendor/llama.cpp"

say "building llama-server (CPU only; a few minutes on two cores)"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF \
    >"$OUT/cmake-configure.log" 2>&1 || { tail -30 "$OUT/cmake-configure.log" >&2; exit 1; }
cmake --build "$work/build" --target llama-server -j2 >"$OUT/cmake-build.log" 2>&1 \
    || { tail -30 "$OUT/cmake-build.log" >&2; exit 1; }
mkdir -p "$OUT/bin"
# Copy then rename so a half-written binary is never taken as the cache.
cp "$work/build/bin/llama-server" "$BIN.partial"
mv "$BIN.partial" "$BIN"
say "ready: $BIN"
