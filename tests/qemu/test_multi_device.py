"""Several devices in one module: /dev/rapilog0..2 on three log disks.

One reserved range (`memmap=96M$0x60000000`) is sliced into three 32 MiB
regions, one per device, given as per-device lists:
`region=32M@0x60000000,32M@0x62000000,32M@0x64000000
backing=DISK0,DISK1,DISK2 disk_id=serial:rl-log0,...`.

- Refusals: lists of different lengths, overlapping regions and one log
  disk named twice are refused at insmod with one line naming the
  parameter; nothing loads.
- Orderly unload: a writer per device (`rlio numbered`, as in
  test_crash.py; each device's block numbers in their own range) runs on
  all three at once, with writeback held back (`writeback_delay_ms=60000`)
  so the records are in the regions; `rapilogctl status` shows the three
  devices and an overall verdict, `--device` selects one; `rmmod` drains
  every device, and the host reads every acknowledged block on each disk.
- Run time: two devices from the parameters carry writes while a third is
  created (`rapilogctl create`), written, refused removal while open,
  removed (`rapilogctl remove`, which drains), and a second one removed
  once its writer is done; creating over another device's region or log
  disk is refused; the host then finds every acknowledged block on each
  of the three disks.
- Power failure: the same writers, then the power button (QMP
  `system_powerdown`), QEMU killed `holdup_ms` after it: each device logs
  its drain durable within the window (the bound shared three ways), and
  the host finds every acknowledged block on each disk.
"""
import json
import re
import time

import pytest

from rapilog_harness import Disk, scaled
from rapilog_harness.crashload import Model, acknowledged, rlio_binary

MEMMAP = "96M$0x60000000"
REGIONS = ["32M@0x60000000", "32M@0x62000000", "32M@0x64000000"]
SERIALS = ["rl-log0", "rl-log1", "rl-log2"]
SLOTS = 1024  # 4 MiB of each 32 MiB disk
SPAN = 10_000_000  # device i writes blocks i*SPAN, i*SPAN+1, ...
WRITES = 300
HOLDUP_MS = 400
DISK_IOPS = 200
DURABLE = re.compile(r"(rapilog\d): power-fail drain: (\d+) bytes durable in ([\d.]+) ms; dirty bound at the "
                     r"signal (\d+) bytes")


def make_guest(guest_factory, tmp_path, ko, ctl_bin, iops=None):
    disks = [Disk(tmp_path / f"{s}.img", serial=s, size="32M", iops=iops) for s in SERIALS]
    g = guest_factory(memmap=MEMMAP, disks=disks,
                      files={"/lib/modules/KREL/extra/rapilog.ko": ko, "/usr/bin/rlio": rlio_binary(),
                             "/bin/rapilogctl": ctl_bin})
    g.boot()
    g.check("echo on > /proc/sys/kernel/printk_devkmsg")
    return g, [tmp_path / f"{s}.img" for s in SERIALS]


def insmod(g, params: str, timeout=None) -> tuple[int, str]:
    g.check("dmesg -c > /dev/null")
    rc, _ = g.run(f"insmod /lib/modules/$(uname -r)/extra/rapilog.ko {params}", timeout=timeout or scaled(60))
    return rc, g.check("dmesg")


def backings(g) -> list[str]:
    return [g.check(f"disk-by-serial {s}").strip() for s in SERIALS]


def params(g, extra: str = "") -> str:
    ids = ",".join(f"serial:{s}" for s in SERIALS)
    return f"region={','.join(REGIONS)} backing={','.join(backings(g))} disk_id={ids} {extra}"


def start_writers(g, count: int | None) -> None:
    """One `rlio numbered` per device in the background; a counted one logs
    `rlio N exit S` when done."""
    for i in range(len(SERIALS)):
        n = "" if count is None else str(count)
        g.check(f"setsid sh -c 'rlio numbered /dev/rapilog{i} {i * SPAN} {SLOTS} {n}; "
                f"echo rlio {i} exit $? > /dev/kmsg' </dev/null >/tmp/rlio{i}.out 2>&1 &")


def check_disks(console: str, images) -> list[int]:
    """Every acknowledged block of each device on its disk; returns the
    acknowledged counts."""
    acks = acknowledged(console)
    counts = []
    for i, image in enumerate(images):
        mine = sorted(n for n in acks if i * SPAN <= n < (i + 1) * SPAN)
        assert mine and mine[0] == i * SPAN, (i, mine[:3])
        # Sequential writer: the newest intact line vouches for every block before it.
        model = Model(SLOTS)
        model.acknowledge(range(i * SPAN, mine[-1] + 1))
        lost = model.check(image)
        assert not lost, f"rapilog{i}: {len(lost)} acknowledged blocks lost:\n" + "\n".join(lost[:10])
        counts.append(len(model.newest))
    return counts


def test_mismatched_overlapping_or_shared_lists_are_refused(guest_factory, module_path, ctl_bin, tmp_path):
    g, _ = make_guest(guest_factory, tmp_path, module_path, ctl_bin)
    b = backings(g)
    cases = [
        (f"region={REGIONS[0]},{REGIONS[1]} backing={b[0]}",
         "rapilog: backing= lists 1 values refused: expected 2, one per region="),
        (f"region={REGIONS[0]},{REGIONS[1]} backing={b[0]},{b[1]} disk_id=serial:x",
         "rapilog: disk_id= lists 1 values refused: expected 2, one per region="),
        (f"region=32M@0x60000000,32M@0x61000000 backing={b[0]},{b[1]}",
         "rapilog: region= refused: rapilog0's region 32M@0x60000000 and rapilog1's region 32M@0x61000000 "
         "overlap"),
        (f"region={REGIONS[0]},{REGIONS[1]} backing={b[0]},{b[0]}",
         f"rapilog: backing= refused: {b[0]} is named for rapilog0 and for rapilog1; each device needs its "
         "own log disk"),
        ("region=" + ",".join(["4M@0x60000000"] * 9) + " backing=" + ",".join([b[0]] * 9),
         "rapilog: region= lists 9 regions refused: at most 8 devices (rapilog0 to rapilog7)"),
    ]
    for p, line in cases:
        rc, log = insmod(g, p)
        assert rc != 0, p
        assert line in log, (p, log)
        assert not g.run("test -e /sys/module/rapilog")[0] == 0, p


def test_three_devices_drain_at_unload(guest_factory, module_path, ctl_bin, tmp_path):
    g, images = make_guest(guest_factory, tmp_path, module_path, ctl_bin)
    rc, log = insmod(g, params(g, "writeback_delay_ms=60000"))
    assert rc == 0, log
    for i, region in enumerate(REGIONS):
        assert f"rapilog: configured: region={region} backing=" in log, log
        assert f"rapilog: /dev/rapilog{i}: " in log, log
    assert g.check("ls /sys/block | grep rapilog").split() == ["rapilog0", "rapilog1", "rapilog2"]
    # Each device's writeback thread is named after it.
    assert sorted(g.check("grep -h 'rapilog.-wb' /proc/[0-9]*/comm").split()) \
        == ["rapilog0-wb", "rapilog1-wb", "rapilog2-wb"]
    mark = g.console_mark()
    start_writers(g, WRITES)
    for i in range(len(SERIALS)):
        g.wait_console(rf"rlio {i} exit \d+", scaled(240), since=mark)
    console = g.console_text(mark)
    for i in range(len(SERIALS)):
        assert re.search(rf"^(?:\[ *\d+\.\d+\] )?rlio {i} exit 0$", console, re.M), console[-3000:]

    # The CLI: every device, a verdict each and an overall one.
    doc = json.loads(g.check("rapilogctl status --json"))
    assert [d["device"] for d in doc["devices"]] == ["rapilog0", "rapilog1", "rapilog2"], doc["devices"]
    assert doc["device"] == "rapilog0" and doc["backing"] == doc["devices"][0]["backing"]
    assert [d["region"]["phys"] for d in doc["devices"]] == [0x60000000, 0x62000000, 0x64000000]
    worst = max(["protected", "degraded", "at_risk", "possible_loss"].index(d["verdict"]["level"])
                for d in doc["devices"])
    assert doc["overall"]["level"] == ["protected", "degraded", "at_risk", "possible_loss"][worst], doc["overall"]
    for d in doc["devices"]:
        # Writeback waits 60 s: the blocks are in the regions.
        assert d["ring"]["dirty_bytes"] > 0, d["ring"]
    text = g.check("rapilogctl status")
    assert text.count("/dev/rapilog") >= 3 and "overall: " in text, text
    one = json.loads(g.check("rapilogctl status --device 2 --json"))
    assert one["device"] == "rapilog2" and one["region"]["phys"] == 0x64000000, one["region"]
    listed = json.loads(g.check("rapilogctl list --json"))
    assert [d["device"] for d in listed["devices"]] == ["rapilog0", "rapilog1", "rapilog2"], listed
    rc, out = g.run("rapilogctl status rapilog5")
    assert rc == 7, out

    # Orderly unload drains every device; the host reads the disks.
    g.check("rmmod rapilog", timeout=scaled(120))
    log = g.check("dmesg")
    for region in REGIONS:
        assert f"rapilog: unloaded (region={region})" in log, log
    g.close()
    counts = check_disks(console, images)
    print("acknowledged blocks per device, all on their disks after rmmod:", counts)


def start_writer(g, i: int, count: int) -> None:
    g.check(f"setsid sh -c 'rlio numbered /dev/rapilog{i} {i * SPAN} {SLOTS} {count}; "
            f"echo rlio {i} exit $? > /dev/kmsg' </dev/null >/tmp/rlio{i}.out 2>&1 &")


def wait_writer(g, i: int, since: int) -> None:
    g.wait_console(rf"rlio {i} exit \d+", scaled(300), since=since)
    assert re.search(rf"^(?:\[ *\d+\.\d+\] )?rlio {i} exit 0$", g.console_text(since), re.M), \
        g.console_text(since)[-3000:]


@pytest.mark.slow
def test_create_and_remove_at_run_time_while_others_write(guest_factory, module_path, ctl_bin, tmp_path):
    g, images = make_guest(guest_factory, tmp_path, module_path, ctl_bin)
    b = backings(g)
    rc, log = insmod(g, f"region={REGIONS[0]},{REGIONS[1]} backing={b[0]},{b[1]} "
                        f"disk_id=serial:{SERIALS[0]},serial:{SERIALS[1]}")
    assert rc == 0, log
    mark = g.console_mark()
    start_writer(g, 0, 1500)
    start_writer(g, 1, 600)
    g.wait_console(r"rlack ", scaled(60), since=mark)

    # Refused: another device's region, another device's disk.
    g.check("dmesg -c > /dev/null")
    rc, out = g.run(f"rapilogctl create --region {REGIONS[0]} --backing {b[2]}")
    assert rc == 1 and "the kernel log names the reason" in out, out
    assert (f"rapilog: region= refused: rapilog0's region {REGIONS[0]} and rapilog2's region {REGIONS[0]} "
            "overlap") in g.check("dmesg"), g.check("dmesg")
    rc, out = g.run(f"rapilogctl create --region {REGIONS[2]} --backing {b[1]}")
    assert rc == 1, out
    assert f"rapilog: backing= refused: {b[1]} is named for rapilog1 and for rapilog2" in g.check("dmesg")

    # Created while the others write.
    out = g.check(f"rapilogctl create --region {REGIONS[2]} --backing {b[2]} --disk-id serial:{SERIALS[2]}",
                  timeout=scaled(60))
    assert f"created /dev/rapilog2: region={REGIONS[2]} backing={b[2]}" in out, out
    assert "rapilog: /dev/rapilog2: " in g.check("dmesg")
    assert json.loads(g.check("rapilogctl list --json"))["devices"][2]["device"] == "rapilog2"
    start_writer(g, 2, 300)
    wait_writer(g, 2, mark)

    # Open: refused; closed: drained and removed.
    holder = g.check("sleep 600 < /dev/rapilog2 >/dev/null 2>&1 & echo $!").strip()
    g.check(f"while ! ls -l /proc/{holder}/fd/0 | grep -q rapilog2; do sleep 0.1; done")
    rc, out = g.run("rapilogctl remove rapilog2")
    assert rc == 1 and "/dev/rapilog2 is open" in out, out
    g.check(f"kill {holder}; while kill -0 {holder} 2>/dev/null; do sleep 0.1; done")
    g.check("dmesg -c > /dev/null")
    out = g.check("rapilogctl remove rapilog2", timeout=scaled(120))
    assert "removed /dev/rapilog2" in out, out
    log = g.check("dmesg")
    assert f"rapilog: unloaded (region={REGIONS[2]})" in log and "rapilog: /dev/rapilog2 removed" in log, log
    assert not g.run("test -e /sys/block/rapilog2")[0] == 0

    # The second device once its writer is done, the first still writing.
    wait_writer(g, 1, mark)
    g.check("rapilogctl remove 1", timeout=scaled(120))
    assert [d["device"] for d in json.loads(g.check("rapilogctl status --json"))["devices"]] == ["rapilog0"]
    wait_writer(g, 0, mark)
    console = g.console_text(mark)
    g.check("rmmod rapilog", timeout=scaled(120))
    g.close()
    counts = check_disks(console, images)
    print("acknowledged blocks per device, all on their disks:", counts)


@pytest.mark.slow
def test_power_fail_drains_every_device_within_the_shared_bound(guest_factory, module_path, ctl_bin, tmp_path):
    g, images = make_guest(guest_factory, tmp_path, module_path, ctl_bin, iops=DISK_IOPS)
    rc, log = insmod(g, params(g, f"powerfail=button holdup_ms={HOLDUP_MS}"))
    assert rc == 0, log
    assert ("dirty data bounded to what drains in half of holdup_ms=400 ms, shared by 3 devices" in log), log
    mark = g.console_mark()
    start_writers(g, None)
    g.wait_console(r"rlack ", scaled(60), since=mark)
    # Every writer running and the bounds measured.
    time.sleep(3)
    doc = json.loads(g.check("rapilogctl status --json"))
    assert [d["power_fail"]["shared_by"] for d in doc["devices"]] == [3, 3, 3], doc["devices"]
    signal_mark = g.console_mark()
    g.powerdown()
    sent = time.monotonic()
    left = sent + HOLDUP_MS / 1000 - time.monotonic()
    if left > 0:
        time.sleep(left)
    g.kill()  # the power is gone
    console = g.console_text(mark)
    after = g.console_text(signal_mark)
    durable = {m.group(1): m for m in DURABLE.finditer(after)}
    assert sorted(durable) == ["rapilog0", "rapilog1", "rapilog2"], \
        f"not every device's drain was durable within {HOLDUP_MS} ms:\n" + after[-3000:]
    for name, m in sorted(durable.items()):
        print(f"{name}: {m.group(2)} bytes durable in {m.group(3)} ms, bound at the signal {m.group(4)} bytes")
    counts = check_disks(console, images)
    print("acknowledged blocks per device, all on their disks after the power cut:", counts)
