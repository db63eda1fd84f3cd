#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the source llama-cpp-python vendors (the same llama.cpp the tests verify
# GGUF exports with), once per version, into a cache outside the checkout; prints the binary's path.
# tests/export/test_llama_server.py compares the prompts llama-server builds with dsft's (DSFT_LLAMA_SERVER).
# About 11 CPU-minutes the first time (22 minutes of wall time on 2 busy cores); then a lookup.
set -euo pipefail
version=$(python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
cache="${DSFT_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dsft-ci}/llama-server-$version"
if [ ! -x "$cache/llama-server" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    pip download -q "llama-cpp-python==$version" --no-deps --no-binary :all: -d "$work" >&2
    tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
    cmake -S "$work"/llama_cpp_python-*/vendor/llama.cpp -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
    cmake --build "$work/build" --target llama-server -j"$(nproc)" >&2
    mkdir -p "$cache"
    cp "$work/build/bin/llama-server" "$cache/llama-server.partial"
    mv "$cache/llama-server.partial" "$cache/llama-server"
fi
echo "$cache/llama-server"
