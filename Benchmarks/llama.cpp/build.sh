#!/usr/bin/env bash
# Builds llama.cpp's llama-bench, llama-perplexity and llama-server from the sources vendored in PyPI's
# llama-cpp-python sdist, WITHOUT AMX: on these AMX-capable CPUs a GGML_NATIVE=ON build computes
# wrong prompt-processing results (perplexity 261 instead of 25.4; see the reference pack README).
#
#   Benchmarks/llama.cpp/build.sh [WORKDIR]        (default WORKDIR: /tmp/quill-llama.cpp)
#
# Result: $WORKDIR/build/bin/llama-bench, llama-perplexity, llama-completion (for peak RSS) and
# llama-server (for the server benchmark).
# Takes ~25 min on 2 busy cores.
set -euo pipefail
WORK=${1:-/tmp/quill-llama.cpp}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON"}
mkdir -p "$WORK"
cd "$WORK"
# Build tools come from wheels in a private venv, so nothing is installed system-wide.
if [ ! -x venv/bin/cmake ]; then
    python3 -m venv venv
    venv/bin/pip install -q cmake ninja scikit-build-core
fi
if [ ! -f "llama_cpp_python-$VERSION.tar.gz" ]; then
    # --no-build-isolation: reading the sdist's metadata must not compile cmake from source.
    venv/bin/pip download "llama-cpp-python==$VERSION" --no-deps --no-binary llama-cpp-python \
        --no-build-isolation -d .
fi
[ -d src ] || { mkdir src; tar -xzf "llama_cpp_python-$VERSION.tar.gz" -C src --strip-components=1; }
# shellcheck disable=SC2086
venv/bin/cmake -S src/vendor/llama.cpp -B build -G Ninja -DCMAKE_MAKE_PROGRAM="$PWD/venv/bin/ninja" \
    -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON \
    -DBUILD_SHARED_LIBS=OFF $CMAKE_ARGS
venv/bin/cmake --build build -j "${JOBS:-2}" --target llama-bench llama-perplexity llama-completion llama-server
echo "built: $WORK/build/bin/{llama-bench,llama-perplexity,llama-completion,llama-server}"
