#!/bin/bash
# Builds the libFuzzer harnesses (Linux; swiftc -sanitize=fuzzer,address) into Tests/Fuzz/.build.
# The Quill modules are compiled here with coverage and ASan, all with Swift's checks on (-O, not
# -Ounchecked, so an out-of-bounds index traps where it happens). Not part of `swift test`.
#   Tests/Fuzz/build.sh [harness...]      (default: all)
set -e
cd "$(dirname "$0")"
root=../..
out=.build
mkdir -p "$out"
# -package-name as SwiftPM passes it: the modules share `package` helpers (JSONValue's bridged
# accessors, String(fixed:decimals:), the path and trimming helpers).
flags=(-O -wmo -swift-version 6 -parse-as-library -sanitize=fuzzer,address -g -target-cpu native
       -package-name Quill -I "$out" -I "$root/Sources/COpenBLAS")

# Modules in dependency order; each is rebuilt only when one of its sources is newer than it.
build_module() {
  local name=$1
  local sources
  mapfile -t sources < <(find "$root/Sources/$name" -name '*.swift' | sort)  # subfolders too (Architectures/)
  local lib="$out/lib$name.a"
  if [ -f "$lib" ] && [ -z "$(find "$root/Sources/$name" -newer "$lib" -name '*.swift')" ] && [ "$2" != force ]; then return; fi
  echo "building $name"
  nice -n 19 swiftc "${flags[@]}" -module-name "$name" -emit-library -static -emit-module \
    -emit-module-path "$out/$name.swiftmodule" -o "$lib" "${sources[@]}"
}
build_module QuillKernels
build_module QuillTokenizers
build_module QuillGeneration
build_module QuillAudio
build_module QuillModels

harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=(gguf checkpoint tokenizer-json bpe-files sentencepiece chat-template detokenizer server-request)
for h in "${harnesses[@]}"; do
  echo "building fuzz-$h"
  extra=()
  # The server's request decoder is compiled in from its sources (QuillServer itself needs Hummingbird).
  [ "$h" = server-request ] && extra=("$root/Sources/QuillServer/APIError.swift" "$root/Sources/QuillServer/JSONValue.swift" \
                                      "$root/Sources/QuillServer/CompletionRequest.swift")
  nice -n 19 swiftc "${flags[@]}" -module-name "Fuzz${h//-/}" -o "$out/fuzz-$h" "$h/main.swift" Support/FuzzSupport.swift "${extra[@]}" \
    -L "$out" -lQuillModels -lQuillAudio -lQuillGeneration -lQuillTokenizers -lQuillKernels -ldl 2>&1 \
    | { grep -v "Cannot export local symbol '__asan" || true; }
  [ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
done
