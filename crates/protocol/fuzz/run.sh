#!/usr/bin/env bash
# Runs one fuzz target: bash crates/protocol/fuzz/run.sh filter_parse|patch_apply [seconds, default 600]
# Needs the nightly toolchain and `cargo install cargo-fuzz`. New inputs collect in fuzz/corpus/,
# crashes in fuzz/artifacts/ (both ignored by git); the committed seeds come from the fixtures.
set -euo pipefail
target="${1:?usage: run.sh filter_parse|patch_apply [seconds]}"
seconds="${2:-600}"
cd "$(dirname "$0")/.."
mkdir -p "fuzz/corpus/$target"
exec cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1
