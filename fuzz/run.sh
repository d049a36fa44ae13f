#!/usr/bin/env bash
# Runs every fuzz target for N seconds each (default 30), on nightly.
#   fuzz/run.sh 120
# The fuzzer starts from the committed seeds in fuzz/corpus/<target>/ and writes
# what it finds to fuzz/target/corpus/<target>/; crashes land in
# fuzz/artifacts/<target>/. Neither is committed: reduce a crash, fix it, and add
# it to the seeds by hand.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: no nightly toolchain here; fuzzing skipped (the seeds still run under stable: cargo test --all-features --test fuzz_seeds_pass)"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is not installed (cargo install cargo-fuzz); fuzzing skipped"
    exit 0
fi
for target in $(cargo fuzz list); do
    echo "== fuzz target ${target}: ${seconds} s"
    mkdir -p "target/corpus/${target}"
    # The crate forbids unsafe code, so AddressSanitizer would mostly cost
    # executions; the checks that matter are the targets' own assertions.
    # Only the end of the fuzzer's progress log is kept; a crash still fails the
    # run (pipefail), and its input lands in fuzz/artifacts/.
    cargo +nightly fuzz run --sanitizer none "${target}" "target/corpus/${target}" "corpus/${target}" -- \
        -max_total_time="${seconds}" -print_final_stats=1 2>&1 | tail -n 40
done
