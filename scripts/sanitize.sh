#!/usr/bin/env bash
# Runs the Swift unit tests under a sanitizer (docs/FUZZING.md "Sanitizers").
#
#   scripts/sanitize.sh thread  [swift test options, e.g. --filter PreRankServerTests]
#   scripts/sanitize.sh address [swift test options]
#
# Builds into .build-tsan/ or .build-asan/ (git-ignored), apart from the normal build. Reports
# are suppressed only by the committed files scripts/sanitizers/{tsan,lsan}.supp, each entry with
# its reason and evidence. Exit status 0 only when the test run passed and printed no
# unsuppressed report; the test run's summary is printed either way.
set -uo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
case "$mode" in
    thread)  scratch=.build-tsan ;;
    address) scratch=.build-asan ;;
    *) echo "usage: scripts/sanitize.sh thread|address [swift test options]" >&2; exit 2 ;;
esac
shift

supp="$(pwd)/scripts/sanitizers"
export TSAN_OPTIONS="suppressions=$supp/tsan.supp halt_on_error=0 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp print_suppressions=1 ${LSAN_OPTIONS:-}"
export ASAN_OPTIONS="detect_leaks=1 ${ASAN_OPTIONS:-}"
# The kernels' OpenBLAS threads are not TSan-instrumented; one thread keeps them out of the picture.
export OPENBLAS_NUM_THREADS=1

mkdir -p "$scratch"
log="$scratch/sanitize-$mode.log"
echo "== swift test --sanitize=$mode --scratch-path $scratch $* (log: $log)" >&2
swift test --sanitize="$mode" --scratch-path "$scratch" "$@" >"$log" 2>&1
rc=$?

reports=$(grep -cE "^WARNING: ThreadSanitizer|^==[0-9]+==ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$log" || true)
echo "== test run summary" >&2
grep -E "Test run with [0-9]+ tests?|^Test Suite 'All tests' (passed|failed)|error: .*failed|^Suppressions used:|^ *count +bytes +template|^ +[0-9]+ +[0-9]+ " "$log" | tail -12 >&2
if [[ "$reports" -gt 0 ]]; then
    echo "== $reports unsuppressed sanitizer report(s); the first:" >&2
    grep -m1 -A25 -E "^WARNING: ThreadSanitizer|^==[0-9]+==ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$log" >&2
fi
if [[ $rc -ne 0 || "$reports" -gt 0 ]]; then
    echo "sanitize ($mode): FAILED (swift test exit $rc, $reports report(s)); full log: $log" >&2
    exit 1
fi
echo "sanitize ($mode): clean (tests passed, no unsuppressed report)" >&2
