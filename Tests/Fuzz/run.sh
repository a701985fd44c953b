#!/bin/bash
# Builds and runs every fuzz harness for SECONDS each (default 60), nice'd; PARALLEL=n runs n at once.
#   Tests/Fuzz/run.sh SECONDS [harness...]
# New corpus entries go to Tests/Fuzz/.build/corpus/<harness> (the seeds in <harness>/corpus stay as
# they are); crashes, leaks and timeouts are written to Tests/Fuzz/.build/artifacts/. Prints each
# harness's execution count and result; the exit status is non-zero if any harness found something.
cd "$(dirname "$0")" || exit 1
seconds=${1:-60}; shift
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=(gguf checkpoint tokenizer-json bpe-files sentencepiece chat-template detokenizer server-request)
./build.sh "${harnesses[@]}" || exit 1
mkdir -p .build/artifacts .build/logs
run_one() {
  local h=$1 max_len=8192
  case $h in gguf|checkpoint) max_len=16384 ;; esac  # the seeds are at most 15 KB
  mkdir -p ".build/corpus/$h"
  LSAN_OPTIONS=suppressions=lsan.supp ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 nice -n 19 ".build/fuzz-$h" \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -max_len=$max_len -print_final_stats=1 \
    -artifact_prefix=".build/artifacts/$h-" ".build/corpus/$h" "$h/corpus" >".build/logs/$h.log" 2>&1
  local rc=$?
  local execs=$(grep -o "stat::number_of_executed_units: *[0-9]*" ".build/logs/$h.log" | grep -o "[0-9]*$")
  local found=$(grep -m1 -o "ERROR: [A-Za-z]*Sanitizer: [a-z-]*\|ERROR: libFuzzer: [a-z-]*\|Fatal error: .*\|==[0-9]*== ERROR: .*" ".build/logs/$h.log")
  printf "%-15s exit %-3s %10s executions  %s\n" "$h" "$rc" "${execs:-?}" "${found:-no crash, leak or timeout}"
  return $rc
}
status=0
parallel=${PARALLEL:-1}
for h in "${harnesses[@]}"; do
  run_one "$h" &
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || status=1; done
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || status=1; done
exit $status
