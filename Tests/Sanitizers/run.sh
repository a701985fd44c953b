#!/bin/bash
# Runs the whole test suite under AddressSanitizer and then ThreadSanitizer (release build, so the
# model tests finish in minutes), each in its own scratch directory so the normal .build is untouched.
#   Tests/Sanitizers/run.sh [address|thread]...   (default: both)
# Prints each run's wall time; the exit status is non-zero if any run failed or a sanitizer reported.
cd "$(dirname "$0")/../.." || exit 1
status=0
for sanitizer in "${@:-address thread}"; do
  for s in $sanitizer; do
    mkdir -p ".build-$s"
    log=".build-$s/sanitizer-run.log"
    start=$(date +%s)
    # halt_on_error: the first report fails the run instead of scrolling by.
    LSAN_OPTIONS=suppressions=$PWD/Tests/Sanitizers/lsan.supp ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
      nice -n 19 swift test -c release --sanitize="$s" --scratch-path ".build-$s" >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    reports=$(grep -c "ERROR: AddressSanitizer\|WARNING: ThreadSanitizer\|ERROR: LeakSanitizer" "$log")
    echo "$s: exit $rc, $((end - start)) s (build + tests), $reports sanitizer reports; log in $log"
    grep -E "Test run with|✘" "$log" | tail -5
    [ "$rc" -eq 0 ] && [ "$reports" -eq 0 ] || status=1
  done
done
exit $status
