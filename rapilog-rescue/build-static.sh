#!/bin/bash
# Build the statically linked rapilog-rescue binary (no shared libraries:
# the crash kernel's initramfs has no libc) and print its path.
#
#   rapilog-rescue/build-static.sh
#
# glibc's static libc with static-pie (`-C target-feature=+crt-static` on
# x86_64-unknown-linux-gnu). Built in its own target directory
# (target/static/) so the flag never mixes with `cargo test --workspace`
# artifacts. ~20 s from nothing on 2 cores, ~0.3 s when up to date.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=kernels/lib.sh
source "$here/../kernels/lib.sh"

triple=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-$RAPILOG_TOP/target}/static
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" \
    cargo build --quiet --locked --release \
    --manifest-path "$RAPILOG_TOP/Cargo.toml" -p rapilog-rescue --bin rapilog-rescue \
    --target "$triple" --target-dir "$target_dir" >&2
out=$target_dir/$triple/release/rapilog-rescue
[[ -x $out ]] || die "build produced no $out"
# A static binary has no interpreter (PT_INTERP); ldd says so in its words.
{ ldd "$out" 2>&1 || true; } | grep -Eq 'statically linked|not a dynamic executable' ||
    die "$out is not statically linked: $(ldd "$out" 2>&1 | head -n3)"
echo "$out"
