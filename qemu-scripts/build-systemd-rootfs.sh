#!/bin/bash
# Build the Debian rootfs image with systemd as PID 1 that
# tests/qemu/test_systemd_install.py installs rapilog's packages into.
#
#   qemu-scripts/build-systemd-rootfs.sh [-k KREL] [--extra-krel KREL2] [--print-key]
#
# Prints the image path. Steps (each cached):
#   1. qemu-scripts/build-rootfs.sh --packages "$SYSTEMD_PACKAGES": the
#      debootstrap tree of SUITE with the default test set plus systemd,
#      systemd-sysv, udev, postgresql, initramfs-tools, grub2-common
#      (grub-mkconfig, update-grub) and every dependency of rapilog-tools
#      (busybox-static, cpio, kexec-tools, kmod, xz-utils): the guest's
#      `apt install ./rapilog-*.deb` then needs no network;
#   2. a copy of that tree (.cache/guest/KREL/systemd/tree-SET) in which the
#      stock kernel is installed as a Debian package from KSUITE
#      (linux-image-KREL and its linux-base, linux-binary, linux-modules;
#      the .debs fetch-kernel.sh verified are put in apt's cache first), so
#      /boot/vmlinuz-KREL, /boot/initrd.img-KREL (initramfs-tools) and
#      dpkg's record of linux-image-KREL (rapilog-modules-KREL depends on it)
#      are the ones of a real install; with --extra-krel, that kernel too;
#   3. the guest's own pieces: the command agent as rapilog-agent.service
#      (qemu-scripts/guest/rapilog-agent over the virtio-serial port, started
#      early, restarted if it exits), /etc/default/kexec LOAD_KEXEC=false
#      (kexec-tools' "handle reboots": reboots stay real reboots), a root
#      password-less console, /etc/default/grub from grub2-common's template;
#   4. mkfs.ext4 -d into .cache/guest/KREL/rootfs-systemd-SET-KEY.img, SET
#      naming the kernel set, KEY over the step-1 image key, this script and
#      the kernels' pins.
# The harness boots it like any Guest(rootfs=PATH): the busybox initramfs
# mounts it and switch_roots to rapilog.init=/sbin/init (systemd).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=kernels/lib.sh
source "$here/../kernels/lib.sh"

SYSTEMD_PACKAGES="systemd systemd-sysv udev postgresql initramfs-tools grub2-common busybox-static cpio xz-utils"

krel=$DEFAULT_KREL
extra_krels=()
print_key=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
    case $1 in
        -k | --krel) krel=$2; shift 2 ;;
        --extra-krel) extra_krels+=("$2"); shift 2 ;;
        --print-key) print_key=1; shift ;;
        -h | --help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
load_kernel_env "$krel"
krels=("$krel" "${extra_krels[@]}")

basekey=$("$here/build-rootfs.sh" -k "$krel" -p "$SYSTEMD_PACKAGES" --print-key)
key=$( {
    echo "$basekey ${krels[*]}"
    for k in "${krels[@]}"; do cat "$RAPILOG_TOP/kernels/$k.env" 2>/dev/null || echo "$k"; done
    cat "$0" "$here/guest/rapilog-agent"
} | sha256sum | cut -c1-12)
base=$RAPILOG_CACHE/guest/$KREL
# One image per kernel set (the cleanup below keeps the other sets).
set=$(echo "${krels[*]}" | sha256sum | cut -c1-6)
img=$base/rootfs-systemd-$set-$key.img
if ((print_key)); then echo "systemd-$set-$key"; exit 0; fi
if [[ -e $img ]]; then echo "$img"; exit 0; fi
[[ $(id -u) == 0 ]] || die "must run as root"
t0=$SECONDS

# --- 1. the debootstrap tree with the systemd package set ------------------------------
"$here/build-rootfs.sh" -k "$krel" -p "$SYSTEMD_PACKAGES" >/dev/null
src=$base/rootfs/${basekey%%-*}
[[ -e $src/.rapilog-debootstrapped ]] || die "no debootstrap tree at $src"
mkdir -p "$base/systemd"
exec 9>"$base/systemd/.lock"
flock 9
if [[ -e $img ]]; then echo "$img"; exit 0; fi

# --- 2. copy, install the stock kernel package(s) ------------------------------------------
tree=$base/systemd/tree-$set
slog=$base/systemd/build-$set.log
release_mounts "$tree" 2>/dev/null || true
rm -rf --one-file-system "$tree"
mkdir -p "$tree"
: >"$slog"
log "copying $src"
cp -a "$src/." "$tree/"
mirror=$(debian_mirror)
{
    echo "deb $mirror $SUITE main"
    for k in "${krels[@]}"; do
        (load_kernel_env "$k" && echo "deb $mirror $KSUITE main")
    done
} | sort -u >"$tree/etc/apt/sources.list"
pkgs=(linux-base/"$KSUITE") # linux-image-* pre-depends on the backports one
for k in "${krels[@]}"; do
    kdir=$("$here/fetch-kernel.sh" "$k")
    cp "$kdir"/debs/*.deb "$tree/var/cache/apt/archives/"
    pkgs+=("linux-image-$k")
done
# Only the kernel's modules that dpkg installs (no copy from build-rootfs.sh).
rm -rf "$tree/usr/lib/modules/$KREL"
echo 'LOAD_KEXEC=false' >"$tree/etc/default/kexec"
log "installing ${pkgs[*]} in the chroot (log: $slog)"
run_in_chroot "$tree" sh -ec "
    echo force-unsafe-io >/etc/dpkg/dpkg.cfg.d/rapilog-unsafe-io
    apt-get update -q
    apt-get install -y -q --no-install-recommends ${pkgs[*]}
    rm -f /etc/dpkg/dpkg.cfg.d/rapilog-unsafe-io
    apt-get clean
" >>"$slog" 2>&1 || { tail -n 30 "$slog" >&2; die "installing the kernel packages failed (log: $slog)"; }
release_mounts "$tree"
for k in "${krels[@]}"; do
    [[ -s $tree/boot/vmlinuz-$k && -s $tree/usr/lib/modules/$k/modules.dep ]] ||
        die "no /boot/vmlinuz-$k or modules.dep in the tree after the install (log: $slog)"
done
# What the busybox-init tests use: the bzImage next to the modules.
ln -sfn "/boot/vmlinuz-$KREL" "$tree/usr/lib/modules/$KREL/vmlinuz"
rm -rf "$tree"/var/lib/apt/lists/*_Packages "$tree"/var/cache/apt/*.bin

# --- 3. the guest's pieces ------------------------------------------------------------------------
cat >"$tree/etc/systemd/system/rapilog-agent.service" <<'EOF'
[Unit]
Description=rapilog test command agent (virtio-serial port org.rapilog.agent)
DefaultDependencies=no
After=systemd-udevd.service
Before=shutdown.target
Conflicts=shutdown.target

[Service]
ExecStart=/usr/bin/rapilog-agent
Restart=always
RestartSec=1

[Install]
WantedBy=sysinit.target
EOF
ln -sfn /etc/systemd/system/rapilog-agent.service "$tree/etc/systemd/system/sysinit.target.wants/rapilog-agent.service"
# Root logs in on the console without a password (debugging a failed boot).
sed -i 's|^root:[^:]*:|root::|' "$tree/etc/shadow"
[[ -e $tree/etc/default/grub ]] || install -m 644 "$tree/usr/share/grub/default/grub" "$tree/etc/default/grub"
mkdir -p "$tree/boot/grub"
# Nothing of the image's first boot should wait for the network or timers.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer dpkg-db-backup.timer; do
    rm -f "$tree/etc/systemd/system/timers.target.wants/$u"
done
echo rapilog-guest >"$tree/etc/hostname"

# --- 4. pack -------------------------------------------------------------------------------
pack_tree "$tree" "$img" rapilog-root $((2 << 30))
for old in "$base"/rootfs-systemd-"$set"-*.img; do
    [[ $old == "$img" ]] || rm -f "$old"
done
log "packed $img ($(du -sh "$img" | cut -f1) used) in $((SECONDS - t0)) s"
echo "$img"
