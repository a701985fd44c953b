#!/bin/bash
# Runs the whole test suite under AddressSanitizer and then ThreadSanitizer (release build, so the
# model tests finish in minutes), each in its own scratch directory so the normal .build is untouched.
#   Tests/Sanitizers/run.sh [address|thread]... [-- swift-test-arguments...]   (default: both, whole suite)
# e.g. `Tests/Sanitizers/run.sh address -- --filter ServeCommandLineTests` reruns one suite.
# Prints each run's wall time; the exit status is non-zero if any run failed or a sanitizer reported.
cd "$(dirname "$0")/../.." || exit 1
# The whole run (compiler, test runner and every process they start) at nice 19: the runs take many
# minutes on a shared machine. A `nice` on the command is not enough: on Linux niceness belongs to each
# thread, and libdispatch gives its worker threads the niceness of their QoS class (0, even -4), so
# swift-build's and the tests' threads, and the compilers they spawn, ran at normal priority. A watcher
# renices every thread of every process below this script every 2 s (`ps -L -o ni` shows them).
renice -n 19 -p $$ >/dev/null
keep_nice() {
  while kill -0 $$ 2>/dev/null; do
    ps -e -L -o pid=,ppid=,tid=,ni= | awk -v root=$$ '
      { parent[$1] = $2; tid[NR] = $3; owner[NR] = $1; ni[NR] = $4 }
      END { for (i = 1; i <= NR; i++) if (ni[i] != 19) {
              for (p = owner[i]; p > 1 && p != root; p = parent[p]) {}
              if (p == root) print tid[i] } }' | xargs -r renice -n 19 -p >/dev/null 2>&1
    sleep 2
  done
}
keep_nice &
watcher=$!
trap 'kill $watcher 2>/dev/null' EXIT
sanitizers=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do sanitizers+=("$1"); shift; done
[ "$1" = "--" ] && shift  # the rest goes to swift test
[ ${#sanitizers[@]} -eq 0 ] && sanitizers=(address thread)
status=0
for s in "${sanitizers[@]}"; do
  mkdir -p ".build-$s"
  log=".build-$s/sanitizer-run$([ $# -gt 0 ] && echo -partial).log"  # a partial rerun keeps the whole run's log
  start=$(date +%s)
  # ASan stops at its first report. TSan goes on to the end of the suite (a run takes most of an hour
  # here, so it should show every race at once); any report still fails the run (TSan exits 66).
  # Reports go to files (log_path), so those of the `quill serve` processes that the server tests start,
  # whose stderr the tests keep to themselves, are counted too.
  reportfiles="$PWD/.build-$s/report"
  rm -f "$reportfiles".*
  LSAN_OPTIONS=suppressions=$PWD/Tests/Sanitizers/lsan.supp ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:log_path=$reportfiles \
  TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1:suppressions=$PWD/Tests/Sanitizers/tsan.supp:log_path=$reportfiles \
    swift test -c release --sanitize="$s" --scratch-path ".build-$s" "$@" >"$log" 2>&1
  rc=$?
  end=$(date +%s)
  reports=$(cat "$log" "$reportfiles".* 2>/dev/null | grep -c "ERROR: AddressSanitizer\|WARNING: ThreadSanitizer\|ERROR: LeakSanitizer")
  [ "$reports" -gt 0 ] && echo "$s: reports in $reportfiles.*"
  echo "$s: exit $rc, $((end - start)) s (build + tests), $reports sanitizer reports; log in $log"
  grep -E "Test run with|✘" "$log" | tail -5
  [ "$rc" -eq 0 ] && [ "$reports" -eq 0 ] || status=1
done
exit $status
