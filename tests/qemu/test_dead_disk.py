"""A log disk that stays dead does not hang the machine (issue 16, item 2;
rapilog-blk/dead_disk.rs).

Numbered 4 KiB blocks (tests/tools/rlio.rs `numbered`, O_DIRECT + fdatasync
each, stops at the first error) go to /dev/rapilog0 from one writer that
never stops by itself. Then the log disk dies for good:

- (dm) the backing disk is a device-mapper `linear` device over the virtio
  log disk, and its table is switched to `error` (suspend, load, resume);
- (hot-remove) the virtio log disk, behind a PCIe root port, is removed
  with QMP `device_del`.

The writer must get EIO within dead_disk_ms plus a generous margin
(measured with the guest's clock, from the moment the disk died), the
hung-task detector (hung_task_timeout_secs=5 in the guest) must stay quiet,
`rapilogctl status` says AT RISK with the reason, and the acknowledged
blocks still in the region read back right through /dev/rapilog0.

- dm: the table is switched back to `linear`; the background retry drains
  the region, `rapilogctl status` is healthy again, new writes are
  accepted; after an orderly power-off the host reads every acknowledged
  block, byte for byte, on the log disk image.
- hot-remove: the module unloads (writeback gives up at unload and leaves
  the records in the region); the disk is plugged back in (QMP
  blockdev-add + device_add) and the next load replays the region onto it:
  the host then reads every acknowledged block on the image.

Control run: `RAPILOG_DEAD_DISK_MS=0` loads with the old behaviour (never
fail writes): the writer blocks for ever once the ring is full, the
hung-task detector reports it, and both tests fail waiting for its EIO.
"""
import hashlib
import json
import os
import re
import time

import pytest

from rapilog_harness import Disk, scaled
from rapilog_harness.crashload import BLOCK, block, rlio_binary

REGION = "64M$0x60000000"
REGION_PARAM = "64M@0x60000000"
KO = "/lib/modules/KREL/extra/rapilog.ko"
INSMOD = "insmod /lib/modules/$(uname -r)/extra/rapilog.ko"
SERIAL = "rl-log"
DISK_SIZE = 512 << 20
SLOTS = DISK_SIZE // 2 // BLOCK  # the writer never gets that far: block n is at slot n
# A slow log disk (QEMU throttle, 4 KiB per I/O: ~800 KiB/s) so that the
# writer fills the ring and waits for space when the disk dies; lifted
# once the disk is back.
IOPS = 200
FIRST = 1000                # blocks 0..FIRST-1 are on the disk before it dies
# Below the guest's hung-task timeout (5 s) with room for the batch in
# flight when the disk dies.
DEAD_DISK_MS = int(os.environ.get("RAPILOG_DEAD_DISK_MS", "2000"))
# Generous: writeback_delay_ms (1 s) until the first failed batch, the
# deadline, one retry back-off (at most 5 s), and a slow emulated guest.
EIO_BOUND_S = DEAD_DISK_MS / 1000 + 1 + 5 + 15
HUNG = "blocked for more than"
# No udev in the guest: dmsetup must not wait for it.
DMSETUP = "dmsetup --noudevsync"


def switch_table(g, table: str) -> float:
    """Switches rllog's table; returns the guest time it took effect."""
    return float(g.check(f"timeout 60 {DMSETUP} suspend --nolockfs rllog && {DMSETUP} load rllog --table '{table}' "
                         f"&& {DMSETUP} resume rllog && date +%s.%N || "
                         "{ echo dmsetup failed; cat /proc/$(pgrep -n dmsetup)/stack; ps -eo pid,stat,wchan:30,cmd; "
                         "dmesg | tail -30; exit 1; }", timeout=scaled(90)))


def status(g) -> dict:
    rc, out = g.run("rapilogctl status --json 2>/tmp/status.err")
    assert rc in (0, 1, 2, 3), out + g.run("cat /tmp/status.err")[1]
    return json.loads(out)


def wait_status(g, what: str, pred, timeout: float = 120) -> dict:
    deadline = time.monotonic() + scaled(timeout)
    while True:
        s = status(g)
        if pred(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s: {s}\n{g.check('dmesg | tail -40')}")
        time.sleep(1)


def guest_now(g) -> float:
    return float(g.check("date +%s.%N"))


def prepare(g) -> None:
    """Kernel log quiet on the console (rlio logs each block to /dev/kmsg),
    hung-task detector at 5 s, and the first FIRST blocks on the disk."""
    g.check("dmesg -n 1 && dmesg -c > /dev/null && echo 5 > /proc/sys/kernel/hung_task_timeout_secs")


def load(g, backing: str) -> None:
    rc, out = g.run(f"{INSMOD} region={REGION_PARAM} backing={backing} disk_id=serial:{SERIAL} "
                    f"dead_disk_ms={DEAD_DISK_MS}", timeout=scaled(120))
    assert rc == 0, out + g.check("dmesg | tail -20")


def start_writer(g, first: int) -> None:
    """A writer from block `first` on, until an error, in the background (the
    agent runs one command at a time); its exit code, stderr and the guest
    time it ended land in /tmp/w.*."""
    g.check(f"rm -f /tmp/w.*; setsid sh -c 'rlio numbered /dev/rapilog0 {first} {SLOTS} 2> /tmp/w.err; "
            "echo $? > /tmp/w.rc0; date +%s.%N > /tmp/w.end; mv /tmp/w.rc0 /tmp/w.rc' "
            "< /dev/null > /dev/null 2>&1 &")


def writer_failed(g, died_at: float) -> tuple[int, float]:
    """Waits for the writer: it must have failed with EIO; returns the first
    block it could not write (every block before it was acknowledged) and
    how long after `died_at` (guest clock) it got the error."""
    deadline = time.monotonic() + scaled(EIO_BOUND_S + 60)
    while g.run("test -e /tmp/w.rc")[0] != 0:
        assert time.monotonic() < deadline, "the writer never got an error\n" + g.check("dmesg | tail -40")
        time.sleep(1)
    err = g.check("cat /tmp/w.err")
    assert g.check("cat /tmp/w.rc").strip() == "1", err
    m = re.search(r"block (\d+): Input/output error", err)
    assert m, err
    return int(m.group(1)), float(g.check("cat /tmp/w.end")) - died_at


def check_dead(g, refused_block: int) -> dict:
    """While the disk is dead: no hung task, AT RISK, region data readable."""
    # Two periods of the hung-task detector after the writer failed.
    time.sleep(scaled(11))
    dmesg = g.check("dmesg")
    assert HUNG not in dmesg, dmesg
    assert re.search(r"writeback: the log disk backing=\S+ has failed for \d+ ms without a single "
                     r"success .*new writes fail with EIO from now on", dmesg), dmesg
    s = status(g)
    print("status while dead:", s["verdict"]["line"])
    assert s["verdict"]["level"] == "at_risk", s["verdict"]
    assert re.search(r"log disk failing for [0-9.]+ s .*new writes fail with EIO since", s["verdict"]["line"])
    assert s["flags"]["disk_dead"] is True
    dd = s["dead_disk"]
    assert dd["dead"] is True and dd["deadline_ms"] == DEAD_DISK_MS, dd
    assert dd["writes_refused"] >= 1 and dd["failing_for_us"] >= DEAD_DISK_MS * 1000, dd
    # More writes fail at once, not after waiting (dd exits with an error).
    rc, out = g.run("dd if=/dev/zero of=/dev/rapilog0 bs=4096 count=1 seek=7 oflag=direct,dsync 2>&1",
                    timeout=scaled(30))
    assert rc != 0 and "Input/output error" in out, out
    # Flushes still succeed: every acknowledged write is in the region.
    g.check("sync /dev/rapilog0 || blockdev --flushbufs /dev/rapilog0")
    # The acknowledged blocks not yet on the disk are the newest ones: they
    # read back right through /dev/rapilog0 (from the region).
    live = s["ring"]["live_records"]
    assert live > 0 and dd["oldest_unwritten_us"] is not None, s
    first = refused_block - live
    assert first >= FIRST, (first, s["ring"])
    got = g.check(f"dd if=/dev/rapilog0 bs={BLOCK} skip={first} count={live} iflag=direct 2>/dev/null | sha256sum",
                  timeout=scaled(120)).split()[0]
    want = hashlib.sha256(b"".join(block(n) for n in range(first, refused_block))).hexdigest()
    assert got == want, f"acknowledged blocks {first}..{refused_block - 1} do not read back from the region"
    print(f"{live} acknowledged blocks ({live * BLOCK} bytes) read back from the region while the disk is dead")
    return s


def missing(disk, count: int) -> list[int]:
    with open(disk, "rb") as f:
        return [n for n in range(count) if os.pread(f.fileno(), BLOCK, n * BLOCK) != block(n)]


@pytest.fixture
def files(module_path, ctl_bin) -> dict:
    return {KO: module_path, "/usr/bin/rlio": rlio_binary(), "/usr/bin/rapilogctl": ctl_bin}


def test_dm_error_table_fails_writes_in_time_and_drains_when_the_disk_returns(guest_factory, tmp_path, files):
    disk = tmp_path / "log.img"
    g = guest_factory(rootfs=True, overlays=[], memmap=REGION, files=files,
                      disks=[Disk(disk, serial=SERIAL, size=DISK_SIZE, iops=IOPS)])
    g.boot()
    prepare(g)
    dev = g.check(f"disk-by-serial {SERIAL}").strip()
    sectors = int(g.check(f"blockdev --getsz {dev}"))
    linear = f"0 {sectors} linear {dev} 0"
    error = f"0 {sectors} error"
    g.check(f"modprobe dm-mod && dmsetup create --noudevsync rllog --table '{linear}' && "
            "dmsetup mknodes rllog && test -b /dev/mapper/rllog")
    load(g, "/dev/mapper/rllog")
    g.check(f"rlio numbered /dev/rapilog0 0 {SLOTS} {FIRST} > /dev/null && rlio drain /dev/rapilog-ctl",
            timeout=scaled(120))

    start_writer(g, FIRST)
    time.sleep(scaled(2))
    died_at = switch_table(g, error)
    refused, after = writer_failed(g, died_at)
    print(f"dm error table: writer got EIO {after:.2f} s after the switch (dead_disk_ms={DEAD_DISK_MS}); "
          f"blocks {FIRST}..{refused - 1} acknowledged")
    assert refused > FIRST, "the writer acknowledged nothing before the disk died: the test proves nothing"
    assert after <= EIO_BOUND_S, f"EIO {after:.1f} s after the disk died, bound {EIO_BOUND_S} s"
    dead = check_dead(g, refused)

    # The disk returns: the retry drains the region, writes are accepted again.
    switch_table(g, linear)
    g.set_throttle(Disk(disk, serial=SERIAL), 0)
    back = wait_status(g, "the region drained after the disk came back",
                       lambda s: not s["dead_disk"]["dead"] and s["ring"]["dirty_bytes"] == 0, timeout=120)
    print("status after the disk returned:", back["verdict"]["line"])
    assert back["dead_disk"]["failing_for_us"] is None, back["dead_disk"]
    assert back["dead_disk"]["writes_refused"] == dead["dead_disk"]["writes_refused"] + 1  # + the dd
    assert "log disk" not in back["verdict"]["line"]
    dmesg = g.check("dmesg")
    assert re.search(r"the log disk backing=/dev/mapper/rllog is back .* after failing for \d+ ms; new writes "
                     r"had failed with EIO for \d+ ms and are accepted again", dmesg), dmesg
    assert HUNG not in dmesg, dmesg
    g.check(f"rlio numbered /dev/rapilog0 {refused} {SLOTS} 100 > /dev/null", timeout=scaled(60))
    total = refused + 100

    g.send("poweroff -f")
    g.wait_exit(scaled(120))
    lost = missing(disk, total)
    assert lost == [], f"{len(lost)} acknowledged blocks not on the log disk, first {lost[:10]}"
    print(f"dm: {total} blocks ({total * BLOCK} bytes) acknowledged, all on the log disk image")


def test_hot_removed_disk_fails_writes_in_time_and_the_region_replays_when_it_returns(guest_factory, tmp_path,
                                                                                      files):
    disk = tmp_path / "log.img"
    with open(disk, "wb") as f:
        f.truncate(DISK_SIZE)
    # Behind a PCIe root port: devices on q35's root bus cannot be unplugged.
    port = ["-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1"]
    drive = ["-drive", f"file={disk},format=raw,if=none,id=drv-log,cache=directsync,aio=threads,"
                      f"throttling.iops-total={IOPS},throttling.iops-size={BLOCK}",
             "-device", f"virtio-blk-pci,drive=drv-log,id=logdisk,serial={SERIAL},bus=rp1"]
    g = guest_factory(rootfs=True, overlays=[], memmap=REGION, files=files, qemu_args=port + drive)
    g.boot()
    prepare(g)
    dev = g.check(f"disk-by-serial {SERIAL}").strip()
    load(g, dev)
    g.check(f"rlio numbered /dev/rapilog0 0 {SLOTS} {FIRST} > /dev/null && rlio drain /dev/rapilog-ctl",
            timeout=scaled(120))

    start_writer(g, FIRST)
    time.sleep(scaled(2))
    mark = g.event_mark()
    died_at = guest_now(g)
    g.qmp("device_del", id="logdisk")
    g.wait_event("DEVICE_DELETED", timeout=scaled(60), since=mark)
    refused, after = writer_failed(g, died_at)
    print(f"device_del: writer got EIO {after:.2f} s after device_del (dead_disk_ms={DEAD_DISK_MS}, "
          f"plus the guest's 5 s hot-unplug delay); blocks {FIRST}..{refused - 1} acknowledged")
    assert refused > FIRST, "the writer acknowledged nothing before the disk died: the test proves nothing"
    # pciehp waits 5 s for the attention button to be cancelled before the
    # disk goes away.
    assert after <= EIO_BOUND_S + 5, f"EIO {after:.1f} s after device_del, bound {EIO_BOUND_S + 5} s"
    check_dead(g, refused)

    # Unload with the disk gone: writeback gives up, the records stay.
    t = time.monotonic()
    g.check("rmmod rapilog", timeout=scaled(120))
    print(f"rmmod with the disk gone took {time.monotonic() - t:.1f} s")
    dmesg = g.check("dmesg")
    assert "giving up at unload" in dmesg, dmesg
    assert HUNG not in dmesg, dmesg

    # The disk comes back; the next load replays the region onto it.
    g.qmp("blockdev-add", {"driver": "raw", "node-name": "log2", "cache": {"direct": True},
                           "file": {"driver": "file", "filename": str(disk)}})
    g.qmp("device_add", {"driver": "virtio-blk-pci", "drive": "log2", "id": "logdisk2", "serial": SERIAL,
                         "bus": "rp1"})
    deadline = time.monotonic() + scaled(60)
    while (rc := g.run(f"disk-by-serial {SERIAL}")[0]) != 0 and time.monotonic() < deadline:
        time.sleep(1)
    assert rc == 0, "the re-added disk did not appear"
    dev = g.check(f"disk-by-serial {SERIAL}").strip()
    load(g, dev)
    log = g.check("dmesg")
    print("\n".join(line for line in log.splitlines() if "replay" in line))
    g.send("poweroff -f")
    g.wait_exit(scaled(120))
    lost = missing(disk, refused)
    assert lost == [], f"{len(lost)} acknowledged blocks not on the log disk, first {lost[:10]}"
    print(f"device_del: {refused} blocks ({refused * BLOCK} bytes) acknowledged, all on the log disk image")


def test_a_failed_write_among_several_in_flight_is_retried_and_nothing_is_released_early(guest_factory, tmp_path,
                                                                                         files):
    """Writeback keeps up to 8 disk writes of 1 MiB in flight
    (`BackingDisk::write_group`): a drain of 12 MiB is one batch of two
    groups. The log disk's MiB 4 fails (a dm table of `linear`, `error`,
    `linear`): the fifth write of the first group, not its last. The group's
    error must be seen, the group retried, nothing flushed or released
    while it fails (the ring keeps every byte, the durable tail stays, the
    flush waits), and once the disk takes it again the drain completes and
    the disk holds the 12 MiB byte for byte."""
    mib = 1 << 20
    span, bad = 12, 4
    data = os.urandom(span * mib)
    pattern = tmp_path / "pattern"
    pattern.write_bytes(data)
    disk = tmp_path / "log.img"
    # A 128 MiB region: 12 MiB stay below an eighth of its ring, so nothing
    # is written back before the flush asks for it.
    g = guest_factory(rootfs=True, overlays=[], memmap="128M$0x60000000",
                      files=dict(files, **{"/root/pattern": str(pattern)}),
                      disks=[Disk(disk, serial=SERIAL, size=DISK_SIZE)])
    g.boot()
    prepare(g)
    dev = g.check(f"disk-by-serial {SERIAL}").strip()
    sectors = int(g.check(f"blockdev --getsz {dev}"))
    first, last = bad * 2048, (bad + 1) * 2048
    g.check(f"echo '0 {sectors} linear {dev} 0' > /tmp/linear && "
            f"printf '0 {first} linear {dev} 0\\n{first} 2048 error\\n{last} {sectors - last} linear {dev} {last}\\n'"
            " > /tmp/holed")
    g.check(f"modprobe dm-mod && {DMSETUP} create rllog /tmp/linear && dmsetup mknodes rllog")
    rc, out = g.run(f"{INSMOD} region=128M@0x60000000 backing=/dev/mapper/rllog disk_id=serial:{SERIAL} "
                    "writeback_delay_ms=60000", timeout=scaled(120))
    assert rc == 0, out + g.check("dmesg | tail -20")
    g.check("dd if=/root/pattern of=/dev/rapilog0 bs=1M oflag=direct 2>&1", timeout=scaled(120))
    before = status(g)
    assert before["ring"]["dirty_bytes"] == span * mib and before["writeback"]["ios"] == 0, before

    g.check(f"{DMSETUP} suspend --nolockfs rllog && {DMSETUP} load rllog /tmp/holed && {DMSETUP} resume rllog",
            timeout=scaled(90))
    g.check("rm -f /tmp/f.*; setsid sh -c 'rapilogctl flush > /tmp/f.out 2>&1; echo $? > /tmp/f.rc0; "
            "mv /tmp/f.rc0 /tmp/f.rc' < /dev/null > /dev/null 2>&1 &")
    failing = wait_status(g, "the group's write error seen and retried", lambda s: s["errors"]["disk_errors"] >= 2,
                          timeout=120)
    assert g.run("test -e /tmp/f.rc")[0] != 0, "the flush completed while the disk failed: " + g.check("cat /tmp/f.*")
    for key in ("dirty_bytes", "live_records", "tail_seq", "durable_tail"):
        assert failing["ring"][key] == before["ring"][key], (key, before["ring"], failing["ring"])
    dmesg = g.check("dmesg")
    # The whole first group failed together: 8 writes of 1 MiB in flight.
    assert re.search(rf"writeback: writing {8 * mib} bytes in 8 writes from sector 0 on failed", dmesg), dmesg
    assert failing["writeback"]["disk_flushes"] == before["writeback"]["disk_flushes"], failing["writeback"]

    g.check(f"{DMSETUP} suspend --nolockfs rllog && {DMSETUP} load rllog /tmp/linear && {DMSETUP} resume rllog",
            timeout=scaled(90))
    deadline = time.monotonic() + scaled(60)
    while g.run("test -e /tmp/f.rc")[0] != 0:
        assert time.monotonic() < deadline, "the flush did not complete once the disk was back\n" + \
            g.check("dmesg | tail -20")
        time.sleep(1)
    assert g.check("cat /tmp/f.rc").strip() == "0", g.check("cat /tmp/f.out")
    after = status(g)
    assert after["ring"]["dirty_bytes"] == 0 and after["writeback"]["bytes"] == span * mib, after
    g.send("poweroff -f")
    g.wait_exit(scaled(120))
    with open(disk, "rb") as f:
        got = f.read(span * mib)
    bad_mib = [m for m in range(span) if got[m * mib:(m + 1) * mib] != data[m * mib:(m + 1) * mib]]
    assert bad_mib == [], f"MiB {bad_mib} of the drain are not on the log disk image as written"
