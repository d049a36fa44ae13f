#!/usr/bin/env bash
# Runs every fuzz target for N seconds each (default 30), on nightly.
#   fuzz/run.sh 120
# New corpus entries land in fuzz/corpus/<target>/ (the committed seeds are
# there too); crashes land in fuzz/artifacts/<target>/ (not committed).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: no nightly toolchain here; fuzzing skipped (the seeds still run under stable: cargo test --all-features --test fuzz_corpus)"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is not installed (cargo install cargo-fuzz); fuzzing skipped"
    exit 0
fi
for target in $(cargo fuzz list); do
    echo "== fuzz target ${target}: ${seconds} s"
    cargo +nightly fuzz run "${target}" -- -max_total_time="${seconds}" -print_final_stats=1
done
