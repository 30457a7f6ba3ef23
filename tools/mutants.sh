#!/usr/bin/env bash
# Mutation testing of the files that keep caskade's promises (issue 18), each with the tests
# that hold those promises, so that a file's run stays within tens of minutes on a small
# machine. Results go to mutants.out/<name>/ (outcomes.json, caught.txt, missed.txt, ...);
# record the score and each survivor's verdict in TESTING.md.
#
#   tools/mutants.sh                 every group below
#   tools/mutants.sh held commit     the groups named
#   tools/mutants.sh --in-diff [REF] the mutants of lines changed since this branch left REF
#                                    (default: main), work tree included,
#                                    with the promise tests
#   tools/mutants.sh --list          the groups and their mutant counts
#
# Environment: MUTANTS_TIMEOUT (seconds per test run, default 180), MUTANTS_JOBS (default 1),
# MUTANTS_ARGS (more options for cargo mutants, such as `-F add_to` to rerun some mutants),
# MUTANTS_TARGET_DIR (default: target/mutants under the repository; shared by the runs, so
# each mutant is an incremental build).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "installing cargo-mutants" >&2
    cargo install --locked cargo-mutants
fi

export CARGO_TARGET_DIR=${MUTANTS_TARGET_DIR:-$root/target/mutants}
timeout=${MUTANTS_TIMEOUT:-180}
jobs=${MUTANTS_JOBS:-1}

# The tests that hold the promises of the reply path and the log.
promise_tests=(--test ack_always --test ack_roll --test ack_everysec --test opcode_table --test pipeline_order --test fault_injection)

# group: files; tests (after `--`).
declare -A files tests
files[held]="src/server/held.rs"
tests[held]="--test ack_always --test pipeline_order --test fault_injection"
files[commit]="src/storage/disk/group_commit.rs"
tests[commit]="--test ack_always --test ack_roll --test ack_everysec --test fault_injection"
files[core]="src/server/core.rs src/server/mailbox.rs"
tests[core]="--test ack_always --test pipeline_order --test text_pipeline --test fault_injection --test lifecycle"
files[log]="src/storage/disk/log.rs"
tests[log]="--lib --test fault_injection --test ack_always --test ack_roll --test ack_everysec --test torn_tail --test restart --test storage_model"
files[recovery]="src/storage/disk/recovery.rs"
tests[recovery]="--lib --test torn_tail --test restart --test storage_model --test crash_kill"
files[merge]="src/storage/disk/merge.rs"
tests[merge]="--lib --test merge --test storage_model --test fault_injection"
files[dispatch]="src/server/binary.rs src/server/text.rs src/server/route.rs src/protocol/binary/dispatch.rs"
tests[dispatch]="--lib --test opcode_table --test noreply_table --test text_commands --test pipeline_order --test bad_input"
order=(held commit core log recovery merge dispatch)

run() {
    local name=$1
    shift
    echo "=== $name: $*" >&2
    # Failure is the normal outcome when mutants survive: report and go on.
    mkdir -p "mutants.out/$name"
    # shellcheck disable=SC2086 # MUTANTS_ARGS is words
    cargo mutants --no-shuffle -j "$jobs" --timeout "$timeout" --output "mutants.out/$name" ${MUTANTS_ARGS:-} "$@" || true
    local out=mutants.out/$name/mutants.out
    if [ -f "$out/outcomes.json" ]; then
        local caught missed timeout_n unviable
        caught=$(wc -l <"$out/caught.txt")
        missed=$(wc -l <"$out/missed.txt")
        timeout_n=$(wc -l <"$out/timeout.txt")
        unviable=$(wc -l <"$out/unviable.txt")
        echo "=== $name: caught $caught, missed $missed, timeout $timeout_n, unviable $unviable" >&2
        if [ "$missed" -gt 0 ]; then
            sed 's/^/    missed: /' "$out/missed.txt" >&2
        fi
    fi
}

case "${1:-}" in
--list)
    for g in "${order[@]}"; do
        args=()
        for f in ${files[$g]}; do args+=(-f "$f"); done
        echo "$g: $(cargo mutants --list "${args[@]}" | wc -l) mutants in ${files[$g]}; tests: ${tests[$g]}"
    done
    ;;
--in-diff)
    ref=${2:-main}
    diff=$(mktemp)
    trap 'rm -f "$diff"' EXIT
    # From where this branch left REF, work tree included: not REF's own later changes.
    git diff "$(git merge-base "$ref" HEAD)" -- src >"$diff"
    if [ ! -s "$diff" ]; then
        echo "no change under src/ since $ref" >&2
        exit 0
    fi
    run in-diff --in-diff "$diff" -- "${promise_tests[@]}"
    ;;
*)
    groups=("$@")
    [ ${#groups[@]} -gt 0 ] || groups=("${order[@]}")
    for g in "${groups[@]}"; do
        [ -n "${files[$g]:-}" ] || { echo "no group $g (groups: ${order[*]})" >&2; exit 2; }
        args=()
        for f in ${files[$g]}; do args+=(-f "$f"); done
        # shellcheck disable=SC2086 # the test list is words
        run "$g" "${args[@]}" -- ${tests[$g]}
    done
    ;;
esac
