#!/bin/sh
# Build and run the host check and native microbenchmark of the fused copy +
# CRC-32C (bench/copy_crc/main.rs over rapilog-blk/sys/copy_crc.rs).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${RAPILOG_CACHE:-$here/../../.cache}/copy-crc
mkdir -p "$out"
rustc --edition 2021 -O -o "$out/copy-crc" "$here/main.rs"
exec "$out/copy-crc" "$@"
