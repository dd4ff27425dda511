"""The Debian rootfs image (qemu-scripts/build-rootfs.sh, Guest(rootfs=...)).

The stock kernel boots the busybox initramfs, which mounts the trixie rootfs
(found by its virtio serial) through a per-guest qcow2 overlay and
switch_roots into it; the same agent answers. Checks the Debian tools later
tests need (fio with crc32c verify, mkfs.ext4/fsck.ext4, kexec -p, dmsetup,
ndctl), stock modules via Debian's modprobe, files=/overlays=, and that
guests never see each other's writes. The first test of a run builds the
image if it is not cached (~2 min from scratch).
"""
import os
import statistics
import subprocess

import pytest

from rapilog_harness import (CACHE, DEFAULT_KREL, ROOTFS_BOOT_MEASURED_S, ROOTFS_SERIAL, SCRIPTS, Disk, Guest,
                             build_rootfs, scaled)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="build-rootfs.sh needs root (debootstrap)")


@pytest.fixture(scope="module")
def rootfs_image() -> str:
    return str(build_rootfs(DEFAULT_KREL))


@pytest.fixture(scope="module")
def rg(rootfs_image):
    """One rootfs guest shared by the read-mostly checks: a scratch disk, a
    crash kernel reservation (for kexec -p)."""
    g = Guest("test_rootfs-shared", rootfs=True, crashkernel="256M",
              disks=[Disk("scratch.img", serial="rl-scratch", size="256M")])
    try:
        g.boot()
        yield g
    finally:
        g.close()


def test_rootfs_boots_stock_kernel(rg, krel):
    assert rg.check("uname -r").strip() == krel
    assert rg.check("cat /etc/debian_version").startswith("13.")
    # / is the disk with the rootfs serial, read-write, ext4
    root = rg.check("findmnt -n -o SOURCE,FSTYPE,OPTIONS /").split()
    assert root[0] == rg.check(f"disk-by-serial {ROOTFS_SERIAL}").strip()
    assert root[1] == "ext4" and root[2].startswith("rw")
    print(f"agent ready {rg.boots[-1]['t']:.2f} s after QEMU start (guest uptime {rg.boots[-1]['uptime']:.2f} s)")


def test_rootfs_fio_crc32c_verify(rg):
    assert rg.check("fio --version").startswith("fio-")
    out = rg.check("fio --name=v --filename=/tmp/fio.dat --size=8M --bs=4k --rw=randwrite "
                   "--ioengine=psync --verify=crc32c --do_verify=1 --output-format=terse", timeout=scaled(120))
    assert ";" in out


def test_rootfs_mkfs_fsck_scratch_disk(rg):
    dev = rg.check("disk-by-serial rl-scratch").strip()
    rg.check(f"mkfs.ext4 -q -F {dev}")
    rg.check(f"mkdir -p /mnt/s && mount {dev} /mnt/s && head -c 4M /dev/urandom > /mnt/s/f && "
             "sha256sum /mnt/s/f > /tmp/f.sum && umount /mnt/s")
    rg.check(f"fsck.ext4 -f -n {dev}")
    rg.check(f"mount -o ro {dev} /mnt/s && sha256sum -c /tmp/f.sum; rc=$?; umount /mnt/s; exit $rc")


def test_rootfs_kexec_loads_crash_kernel(rg, krel):
    assert rg.check("kexec --version").startswith("kexec-tools")
    assert rg.check("cat /sys/kernel/kexec_crash_loaded").strip() == "0"
    # the stock bzImage is in the image next to its modules
    rg.check(f"kexec -p /lib/modules/{krel}/vmlinuz --append='console=ttyS0 nr_cpus=1 reset_devices'",
             timeout=scaled(60))
    assert rg.check("cat /sys/kernel/kexec_crash_loaded").strip() == "1"
    rg.check("kexec -p -u")


def test_rootfs_stock_modules_dmsetup_ndctl(rg):
    rg.check("modprobe dm-mod && grep -qw dm_mod /proc/modules")
    assert "linear" in rg.check("dmsetup targets")
    rg.check("modprobe brd rd_nr=1 rd_size=8192 && test -b /dev/ram0")  # params from the command line
    assert rg.check("cat /sys/module/brd/parameters/rd_size").strip() == "8192"
    rg.check("ndctl --version")


def test_rootfs_busybox_fallback_applets(rg):
    # Applets Debian minbase lacks come from the static busybox (tests written
    # for the initramfs keep working), Debian's own binaries win.
    assert rg.check("readlink /usr/sbin/reboot").strip() == "/usr/lib/rapilog/busybox"
    assert rg.check("readlink -f $(command -v mount)").strip() != "/usr/lib/rapilog/busybox"
    assert rg.check("readlink $(command -v devmem)").strip() == "/usr/lib/rapilog/busybox"


def test_rootfs_files_overlay_isolation_and_restart(rg, guest_factory, tmp_path):
    # the shared guest writes to its root; another guest must not see it
    rg.check("echo shared > /root/written-by-shared && sync")
    (tmp_path / "ovl" / "etc" / "rapilog" / "init.d").mkdir(parents=True)
    hook = tmp_path / "ovl" / "etc" / "rapilog" / "init.d" / "10-mark"
    hook.write_text("#!/bin/sh\necho hook ran > /run/hook-ran\n")
    hook.chmod(0o755)
    (tmp_path / "hello.txt").write_text("hello rootfs\n")
    base_mtime = os.stat(build_rootfs(DEFAULT_KREL)).st_mtime_ns
    files = {"/root/hello.txt": tmp_path / "hello.txt"}
    # a module added under /lib/modules/KREL/ is indexed by the rootfs's depmod
    ko = CACHE / "build" / DEFAULT_KREL / "rapilog.ko"  # built by `make test` before this phase
    if ko.exists():
        files["/lib/modules/KREL/extra/rapilog.ko"] = ko
    g = guest_factory(rootfs=True, files=files, overlays=[tmp_path / "ovl"])
    g.boot()
    assert g.check("cat /root/hello.txt") == "hello rootfs\n"
    if ko.exists():
        assert g.check("modinfo -n rapilog").strip().endswith("/extra/rapilog.ko")
    assert g.check("cat /run/hook-ran") == "hook ran\n"
    g.check("! test -e /root/written-by-shared")
    # what the guest writes survives a power cut of that guest (its overlay)
    g.check("echo kept > /root/kept && sync")
    g.restart()
    assert g.check("cat /root/kept") == "kept\n"
    # the cached image itself is untouched: a raw image, not written by guests
    img = g.rootfs_image
    assert img == build_rootfs(DEFAULT_KREL)
    assert os.stat(img).st_mtime_ns == base_mtime
    info = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(g.rootfs_overlay)],
                          capture_output=True, text=True, check=True).stdout
    assert str(img) in info
    print(f"boot to agent ready with the rootfs: {', '.join(f'{t:.2f}' for t in g.ready_times)} s "
          f"(median {statistics.median(g.ready_times):.2f}; measured constant {ROOTFS_BOOT_MEASURED_S} s)")


def test_rootfs_image_key_depends_on_packages():
    key = subprocess.run([str(SCRIPTS / "build-rootfs.sh"), "--print-key"], capture_output=True, text=True,
                         check=True).stdout.strip()
    key2 = subprocess.run([str(SCRIPTS / "build-rootfs.sh"), "--print-key", "--packages", "postgresql"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert key != key2 and key.split("-")[0] != key2.split("-")[0]
    assert build_rootfs(DEFAULT_KREL).name == f"rootfs-{key}.img"
