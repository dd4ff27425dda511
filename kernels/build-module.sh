#!/usr/bin/env bash
# Build rapilog.ko out of tree against a stock Debian kernel's headers and
# print the path of the result.
#
#   kernels/build-module.sh KREL          in the build chroot (created if absent)
#   KDIR=/lib/modules/$(uname -r)/build kernels/build-module.sh KREL
#                                          directly against headers on this machine
#                                          (run `make host-rust-artifacts` once first)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die "usage: $0 KREL"
krel=$1
out=$RAPILOG_CACHE/build/$krel
mkdir -p "$out"

if [ -n "${KDIR:-}" ]; then
	[ -e "$KDIR/rust/libkernel.rmeta" ] ||
		die "$KDIR lacks the Rust build artifacts Debian does not ship; run 'make host-rust-artifacts' first"
	make -C "$KDIR" M="$RAPILOG_TOP" modules >&2
else
	load_kernel_env "$krel"
	root=$("$RAPILOG_TOP/kernels/build-env.sh" "$krel")
	run_in_chroot "$root" make -s -C "/usr/src/linux-headers-$krel" M=/rapilog modules >&2
fi
# One source tree serves every kernel; keep each kernel's result apart.
cp "$RAPILOG_TOP/rapilog-blk/rapilog.ko" "$out/rapilog.ko"
echo "$out/rapilog.ko"
