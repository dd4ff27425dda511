#!/bin/sh
# Fuzz the region parser and replay planner with libFuzzer (cargo-fuzz, nightly).
#   rapilog-format/fuzz/run.sh [seconds]   (default 60)
# New inputs go to fuzz/corpus/region (ignored by git); tests/corpus seeds it.
# A crash is saved under fuzz/artifacts/region/; reproduce it with
#   cargo +nightly fuzz run region <file>
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-60}
mkdir -p fuzz/corpus/region
exec cargo +nightly fuzz run region fuzz/corpus/region tests/corpus -- \
    -max_total_time="$seconds" -timeout=5 -max_len=65536
