#!/usr/bin/env bash
# Coverage-guided fuzzing of every input with libFuzzer (docs/FUZZING.md).
#
#   scripts/fuzz.sh --list                 the target names, one a line
#   scripts/fuzz.sh NAME SECONDS           build if needed, fuzz NAME for SECONDS from its corpus
#   scripts/fuzz.sh --smoke SECONDS        every target for SECONDS each (CI)
#   scripts/fuzz.sh --repro NAME FILE...   run NAME once on each FILE (a reproducer, a regression)
#
# The fuzz package (Fuzz/) is built with -sanitize=fuzzer,address into .build-fuzz/ (git-ignored),
# apart from the normal build. Runs start from the committed seeds (Fuzz/corpus/NAME, read only)
# and write what they discover to .build-fuzz/work/NAME/corpus; a finding is saved under
# .build-fuzz/work/NAME/findings/. Exit status: 0 clean, 1 a finding (its path is printed),
# 2 usage or build error. PRERANK_FUZZ_TOLERATE=id,... turns off known checks (Fuzz/Sources/PreRankFuzz/Known.swift).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(http chunked request items updates safetensors model config gzip)
BUILD_DIR=.build-fuzz
WORK_DIR="$BUILD_DIR/work"

usage() {
    echo "usage: scripts/fuzz.sh --list | NAME SECONDS | --smoke SECONDS | --repro NAME FILE..." >&2
    exit 2
}

is_target() {
    local t
    for t in "${TARGETS[@]}"; do [[ "$t" == "$1" ]] && return 0; done
    return 1
}

check_seconds() {
    [[ "$1" =~ ^[0-9]+$ && "$1" -ge 1 ]] || { echo "Error: SECONDS must be a positive integer, not '$1'" >&2; exit 2; }
}

BIN=""
build() {
    [[ -n "$BIN" ]] && return 0
    # swiftc keeps only the last of several -sanitize= flags, so SwiftPM's two (--sanitize=fuzzer
    # --sanitize=address, which still pick the runtimes to link) would leave the Swift code without
    # coverage; the combined -Xswiftc flag comes last and instruments for both.
    local flags=(--package-path Fuzz --scratch-path "$BUILD_DIR" --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address)
    echo "== building the fuzz targets (swift build ${flags[*]})" >&2
    # The variables the targets read stay out of the build: SwiftPM re-plans (and here rebuilt
    # everything) when the environment it evaluates the manifests in changes.
    if ! env -u PRERANK_FUZZ_TOLERATE -u PRERANK_FUZZ_TARGET swift build "${flags[@]}" >&2; then
        echo "Error: the fuzz build failed" >&2
        exit 2
    fi
    BIN="$(env -u PRERANK_FUZZ_TOLERATE -u PRERANK_FUZZ_TARGET swift build "${flags[@]}" --show-bin-path)/PreRankFuzz"
}

# run_one NAME SECONDS: fuzz one target; returns 0 clean, 1 on a finding.
run_one() {
    local name="$1" seconds="$2"
    local work="$WORK_DIR/$name"
    mkdir -p "$work/corpus" "$work/findings"
    local log="$work/last.log"
    echo "== fuzz $name for ${seconds}s (log: $log)" >&2
    local rc=0
    # -timeout: an input slower than 10 s is a finding (a hang or a quadratic path);
    # -rss_limit_mb: one allocation or the process past 2 GiB is a finding.
    # SWIFT_BACKTRACE: the Swift backtracer, reading memory after an abort, trips ASan itself.
    LSAN_OPTIONS="suppressions=$(pwd)/Fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
    SWIFT_BACKTRACE=enable=no PRERANK_FUZZ_TARGET="$name" PRERANK_FUZZ_SCRATCH="$work" \
        "$BIN" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/findings/" "$work/corpus" "Fuzz/corpus/$name" >"$log" 2>&1 || rc=$?
    grep -E "^#[0-9]+ +(DONE|INITED)|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" "$log" | tail -4 >&2 || true
    if [[ $rc -ne 0 ]]; then
        local repro
        repro="$(grep -oE "(Test unit written to|written to) [^ ]+" "$log" | tail -1 | awk '{print $NF}')"
        grep -E "INVARIANT BROKEN|ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|Fatal error|SUMMARY" "$log" | head -5 >&2 || true
        echo "FINDING in $name: reproducer ${repro:-<none written, see $log>}" >&2
        echo "  re-run: scripts/fuzz.sh --repro $name ${repro:-FILE}" >&2
        return 1
    fi
    echo "clean: $name ran ${seconds}s" >&2
    return 0
}

[[ $# -ge 1 ]] || usage
case "$1" in
    --list)
        printf '%s\n' "${TARGETS[@]}"
        ;;
    --smoke)
        [[ $# -eq 2 ]] || usage
        check_seconds "$2"
        build
        failed=()
        for t in "${TARGETS[@]}"; do
            run_one "$t" "$2" || failed+=("$t")
        done
        if [[ ${#failed[@]} -gt 0 ]]; then
            echo "fuzz smoke: findings in ${failed[*]}" >&2
            exit 1
        fi
        echo "fuzz smoke: all ${#TARGETS[@]} targets clean for $2 s each" >&2
        ;;
    --repro)
        [[ $# -ge 3 ]] || usage
        is_target "$2" || { echo "Error: unknown target '$2' (scripts/fuzz.sh --list names them)" >&2; exit 2; }
        name="$2"; shift 2
        build
        mkdir -p "$WORK_DIR/$name"
        LSAN_OPTIONS="suppressions=$(pwd)/Fuzz/lsan.supp" SWIFT_BACKTRACE=enable=no PRERANK_FUZZ_TARGET="$name" PRERANK_FUZZ_SCRATCH="$WORK_DIR/$name" "$BIN" -timeout=10 -rss_limit_mb=2048 "$@"
        ;;
    -*)
        usage
        ;;
    *)
        [[ $# -eq 2 ]] || usage
        is_target "$1" || { echo "Error: unknown target '$1' (scripts/fuzz.sh --list names them)" >&2; exit 2; }
        check_seconds "$2"
        build
        run_one "$1" "$2" || exit 1
        ;;
esac
