#!/usr/bin/env bash
# Checks that rapilog.ko fits the unmodified Debian kernel it was built for:
#  - every undefined symbol is exported by that kernel's stock Module.symvers
#    (so it loads without any rebuilt kernel piece), and
#  - its vermagic equals that of a stock module shipped in linux-modules-KREL.
#
#   tests/check-module.sh KREL MODULE.ko
set -euo pipefail
. "$(dirname "$0")/../kernels/lib.sh"

[ $# -eq 2 ] || die "usage: $0 KREL MODULE.ko"
krel=$1 ko=$2
symvers=${KDIR:-$RAPILOG_CACHE/kbuild/$krel/root/usr/src/linux-headers-$krel}/Module.symvers
[ -f "$symvers" ] || die "no stock Module.symvers at $symvers (build the module first)"
guest=$("$RAPILOG_TOP/qemu-scripts/fetch-kernel.sh" "$krel")
stock_ko=$(find "$guest/root/lib/modules/$krel/kernel/drivers/block" -name 'brd.ko*' | head -n1)
[ -n "$stock_ko" ] || die "no stock brd module in $guest to compare vermagic with"

undefined=$(nm -u "$ko" | awk '{print $2}' | sort -u)
missing=$(comm -23 <(echo "$undefined") <(awk '{print $2}' "$symvers" | sort -u))
count=$(echo "$undefined" | wc -l)
if [ -n "$missing" ]; then
	echo "FAIL: $ko needs symbols the stock $krel does not export:" >&2
	echo "$missing" | sed 's/^/  /' >&2
	exit 1
fi
echo "ok: all $count undefined symbols of rapilog.ko are exported by stock $krel (Module.symvers)"

ours=$(modinfo -F vermagic "$ko")
stock=$(modinfo -F vermagic "$stock_ko")
if [ "$ours" != "$stock" ]; then
	echo "FAIL: vermagic '$ours' differs from the stock modules' '$stock'" >&2
	exit 1
fi
echo "ok: vermagic '$ours' equals the stock modules' (e.g. $(basename "$stock_ko"))"
