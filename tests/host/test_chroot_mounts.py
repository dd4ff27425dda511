"""kernels/lib.sh's chroot helpers: a chroot stage never leaves a mount behind
in its tree, and packing a tree never walks into another filesystem.

On a fresh machine (2026-12-05) debootstrap's second stage once left /proc
mounted inside the rootfs tree; `du` then walked into it and `make demo`
failed. qemu-scripts/build-rootfs.sh runs its second stage through
chroot_stage and packs through pack_tree; these tests run the same two
functions on a small busybox tree, with the leftover mount injected on purpose
(RAPILOG_FAULT_LEFTOVER_PROC=1 mounts proc in the tree in the caller's
namespace, as a stage whose unmount failed leaves it).
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "kernels" / "lib.sh"
BUSYBOX = Path("/bin/busybox")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting and chroot need root")


def sh(script: str, **env) -> subprocess.CompletedProcess:
    """Runs script in bash after sourcing kernels/lib.sh."""
    return subprocess.run(["bash", "-c", f'set -euo pipefail; source "{LIB}"; {script}'],
                          capture_output=True, text=True, env=dict(os.environ, **env))


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


@pytest.fixture
def tree(tmp_path):
    """A chroot tree with a static busybox as sh, env and mount."""
    t = tmp_path / "tree"
    for d in ("usr/bin", "proc", "sys", "dev", "etc"):
        (t / d).mkdir(parents=True)
    (t / "bin").symlink_to("usr/bin")
    shutil.copy2(BUSYBOX, t / "usr/bin/busybox")
    for applet in ("sh", "env", "mount", "umount", "test", "cat"):
        (t / "usr/bin" / applet).symlink_to("busybox")
    (t / "etc/hostname").write_text("tiny\n")
    yield t
    # Whatever a failing test left: never leave the host with a mount in /tmp.
    for m in reversed(mounts_under(t)):
        subprocess.run(["umount", "-l", m], check=False)


def test_a_stage_that_leaves_proc_mounted_still_packs(tree, tmp_path):
    log, image = tmp_path / "stage.log", tmp_path / "tree.img"
    # The stage mounts /proc itself (as debootstrap's second stage does) and
    # the injected fault leaves another proc mounted in the caller's namespace.
    p = sh(f'chroot_stage "{tree}" "{log}" /bin/sh -c "mount -t proc proc /proc && test -e /proc/1/status" && '
           f'pack_tree "{tree}" "{image}" tiny',
           RAPILOG_FAULT_LEFTOVER_PROC="1")
    assert p.returncode == 0, p.stderr
    assert "fault injection: left proc mounted" in p.stderr, "the fault was not injected"
    assert mounts_under(tree) == []
    # The packed image holds the tree, and /proc in it is the empty directory.
    ls = subprocess.run(["debugfs", "-R", "ls -p /proc", str(image)], capture_output=True, text=True)
    assert ls.returncode == 0, ls.stderr
    names = {f.split("/")[5] for f in ls.stdout.split() if f.count("/") >= 6} - {".", ".."}
    assert names == set(), f"/proc in the image is not empty: {sorted(names)[:10]}"
    cat = subprocess.run(["debugfs", "-R", "cat /etc/hostname", str(image)], capture_output=True, text=True)
    assert cat.stdout == "tiny\n"


def test_the_stage_exit_status_is_kept_and_its_mounts_are_released(tree, tmp_path):
    log = tmp_path / "stage.log"
    p = sh(f'rc=0; chroot_stage "{tree}" "{log}" /bin/sh -c "mount -t proc proc /proc; echo from-stage; exit 7" '
           f'|| rc=$?; echo "rc=$rc"', RAPILOG_FAULT_LEFTOVER_PROC="1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "rc=7"
    assert "from-stage" in log.read_text()
    assert mounts_under(tree) == []


def test_pack_never_counts_or_copies_another_filesystem(tree, tmp_path):
    # A tmpfs with a 64 MiB file mounted in the tree: released before the
    # size is taken, so neither the size nor the image includes it.
    big = tree / "var/big"
    big.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(big)], check=True)
    subprocess.run(["dd", "if=/dev/zero", f"of={big}/f", "bs=1M", "count=64", "status=none"], check=True)
    image = tmp_path / "tree.img"
    p = sh(f'pack_tree "{tree}" "{image}" tiny; stat -c %s "{image}"')
    assert p.returncode == 0, p.stderr
    assert mounts_under(tree) == []
    assert int(p.stdout.split()[-1]) < (300 << 20)  # 256 MiB headroom + a 1-2 MiB tree
    ls = subprocess.run(["debugfs", "-R", "ls -p /var/big", str(image)], capture_output=True, text=True)
    assert "/f/" not in ls.stdout


def test_a_bind_of_dev_is_released_without_touching_the_hosts_dev(tree):
    # A recursive bind of /dev is a peer of the host's /dev under shared
    # propagation; releasing the tree's copy must leave the host's submounts.
    before = mounts_under(Path("/dev"))
    subprocess.run(["mount", "--rbind", "/dev", str(tree / "dev")], check=True)
    assert len(mounts_under(tree)) >= 1
    p = sh(f'release_mounts "{tree}"')
    assert p.returncode == 0, p.stderr
    assert mounts_under(tree) == []
    assert mounts_under(Path("/dev")) == before
