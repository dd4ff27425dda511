"""Power failure: the driver drains the ring inside the hold-up window.

A writer in the guest (`rlio numbered`, as in test_crash.py) issues
numbered, self-describing 4 KiB O_DIRECT writes, each fdatasync'ed and then
acknowledged on the console. The harness sends the power-fail signal (QMP
`system_powerdown`, which the ACPI button driver turns into KEY_POWER, or
`inject-nmi`), then **kills QEMU** exactly `holdup_ms` after the QMP
command returned, whatever the guest is doing: a power cut at the end of the
hold-up time the module was given. Guest RAM is not file-backed, so the
region is lost; only what the drain wrote survives. The test then reads the
log disk image and asserts that every acknowledged block is there, byte for
byte, and boots the next cycle on the same disk.

The hold-up time is not scaled for emulation: the log disk's throttle runs
in real time, so the disk part of the drain is what it would be on such a
disk, and the dirty bound (bandwidth x holdup_ms / 2) must make it fit.
HOLDUP_MS is large enough for the emulated CPU's part (the signal's
delivery, the records' checksums, the console). Per cycle the test prints
the bound at the signal and the bandwidth it came from, the bytes drained
and the drain's times as the driver reports them.

The log disk is throttled to 200 IOPS of 4 KiB, so the dirty bound the
driver derives from the hold-up window and the bandwidth it measures is
small, and the writer runs into it: every signal comes with the ring at its
bound.

False alarms (`powerfail_resume_ms=`): a signal the machine outlives. QEMU
is not killed; after the drain, writes stall until the driver resumes
service, a writer running across the signal completes, the false alarm is
logged and counted in the status, and after `rmmod` (which drains) every
acknowledged block is on the disk image. A real power cut right after a
false alarm loses nothing either.
"""
import json
import os
import re
import statistics
import time

import pytest

from rapilog_harness import Disk, scaled
from rapilog_harness.crashload import BLOCK, Model, acknowledged, rlio_binary, rng

REGION = "64M$0x60000000"
REGION_PARAM = "64M@0x60000000"
SERIAL = "rl-log"
SLOTS = 2048  # 8 MiB of the 32 MiB disk: blocks wrap, later numbers win
# The power is cut this long after the signal. Long enough for what TCG
# slows down (the signal's delivery, checksums, console lines: tens of ms),
# and at most RESUME_MS / 10, the driver's minimum for powerfail_resume_ms.
HOLDUP_MS = 400
DISK_IOPS = 200
# Per signal; `make crash-test N=...` runs more.
CYCLES_PER_SIGNAL = int(os.environ.get("RAPILOG_POWERFAIL_CYCLES", "2"))
STATS = os.environ.get("RAPILOG_CRASH_STATS")
DRAIN = re.compile(r"power-fail drain complete: (\d+) bytes written back and durable in ([\d.]+) ms "
                   r"\(signal: ([A-Za-z ]+), hold-up window (\d+) ms\)")
# The drain's data is durable (logged before the disk marker is written),
# with the bound the drain was held to.
DURABLE = re.compile(r"power-fail drain: (\d+) bytes durable in ([\d.]+) ms; dirty bound at the signal "
                     r"(\d+) bytes \(writeback bandwidth (\d+) bytes/s")
# The time the complete line gives for the disk marker.
MARKED = re.compile(r"region and disk marker clean ([\d.]+) ms after the signal")
WRITER_RUNS = (0.5, 4.0)  # seconds after the first acknowledgement, uniform
# powerfail_resume_ms of the false-alarm tests: the driver's minimum is
# 10 x HOLDUP_MS (and 1000); long enough that the second NMI of the NMI test
# lands in the wait even when TCG is slow to show the drain line.
RESUME_MS = 4000
RESUMED = re.compile(r"power-fail signal \(([A-Za-z ]+)\) was a false alarm: the machine still runs "
                     r"(?:(\d+) ms after it|(\d+) ms after the first signal and (\d+) ms after the last)")
# Blocks the false-alarm writer writes, then exits: the signal comes after a
# quarter of them, so it runs across the signal and the resume.
WRITES = 1200


def start_writer(g, first: int) -> None:
    """`rlio numbered` in the background: the agent runs one command at a
    time and must stay free."""
    g.check(f"setsid rlio numbered /dev/rapilog0 {first} {SLOTS} </dev/null >/tmp/rlio.out 2>&1 &")


def start_counted_writer(g, first: int, count: int) -> None:
    """`rlio numbered` of `count` blocks in the background; its exit status
    goes to the kernel log as `rlio exit N`."""
    g.check(f"setsid sh -c 'rlio numbered /dev/rapilog0 {first} {SLOTS} {count}; "
            f"echo rlio exit $? > /dev/kmsg' </dev/null >/tmp/rlio.out 2>&1 &")


def insmod(g, signals: str, extra: str = "") -> str:
    g.check("echo on > /proc/sys/kernel/printk_devkmsg && dmesg -c > /dev/null")
    g.check("insmod /lib/modules/$(uname -r)/extra/rapilog.ko region=" + REGION_PARAM +
            f" backing=$(disk-by-serial {SERIAL}) disk_id=serial:{SERIAL} powerfail={signals}"
            f" holdup_ms={HOLDUP_MS} {extra}", timeout=scaled(60))
    return g.check("dmesg")


def send_signal(g, signal: str) -> None:
    if signal == "powerdown":
        g.powerdown()
    else:
        g.inject_nmi()


def cut_power_after_holdup(g, signal: str) -> float:
    """Sends `signal` and kills QEMU exactly HOLDUP_MS after the QMP command
    returned (the signal reaches the guest a few ms after that, so the
    guest gets slightly less than HOLDUP_MS). Returns the seconds from the
    QMP command's return to the kill."""
    send_signal(g, signal)
    sent = time.monotonic()
    left = sent + HOLDUP_MS / 1000 - time.monotonic()
    if left > 0:
        time.sleep(left)
    killed = time.monotonic()
    g.kill()  # the power is gone
    return killed - sent


def status(g) -> dict:
    """`rapilogctl status --json` (exit 0 whatever the verdict)."""
    return json.loads(g.check("rapilogctl status --json"))


def power_cycles(name, guest_factory, ko, tmp_path, signal: str) -> list[dict]:
    """CYCLES_PER_SIGNAL power cuts after `signal` ('powerdown' or 'nmi')."""
    rnd, seed = rng(name)
    disk = tmp_path / "log.img"
    g = guest_factory(memmap=REGION, disks=[Disk(disk, serial=SERIAL, size="32M", iops=DISK_IOPS)],
                      files={"/lib/modules/KREL/extra/rapilog.ko": ko, "/usr/bin/rlio": rlio_binary()})
    model = Model(SLOTS)
    results = []
    for cycle in range(CYCLES_PER_SIGNAL):
        if cycle:
            g.restart()
        else:
            g.boot()
        log = insmod(g, "button,nmi")
        assert "power-fail path armed (powerfail=button,nmi)" in log, log
        assert 'power-fail signal armed on input device "Power Button"' in log, log
        # The region does not survive a power cut: the driver starts afresh.
        assert "no rapilog superblock, formatting it" in log, log
        if cycle:  # the last cycle's acknowledged blocks read back through rapilog
            n = max(model.newest.values())
            slot = n % SLOTS
            got = g.run_bytes(f"dd if=/dev/rapilog0 bs={BLOCK} skip={slot} count=1 iflag=direct 2>/dev/null")[1]
            assert got[:32] == disk.read_bytes()[slot * BLOCK:slot * BLOCK + 32], (n, got[:32])
        first = cycle * 10_000_000
        mark = g.console_mark()
        start_writer(g, first)
        g.wait_console(r"rlack ", scaled(60), since=mark)
        time.sleep(rnd.uniform(*WRITER_RUNS))
        signal_mark = g.console_mark()
        killed_after = cut_power_after_holdup(g, signal)
        console = g.console_text(mark)
        after_signal = g.console_text(signal_mark)
        # The hold-up time is for the data: the disk marker's write after it
        # may be cut (the next load then reports a loss that is not one).
        durable = DURABLE.search(after_signal)
        assert durable, (f"the drain's data was not durable within the hold-up time of {HOLDUP_MS} ms "
                         f"(power cut {killed_after * 1000:.0f} ms after the signal):\n" + console[-3000:])
        drain = DRAIN.search(after_signal)
        marked = MARKED.search(after_signal)
        lines = acknowledged(console)
        assert lines and min(lines) == first, sorted(lines)[:3]
        # Sequential writer: the newest intact line vouches for every block before it.
        acks = range(first, max(lines) + 1)
        model.acknowledge(acks)
        lost = model.check(disk)
        stats = dict(test=name, seed=seed, cycle=cycle, signal=signal, acknowledged=len(acks),
                     checked=len(model.newest), lost=len(lost), holdup_ms=HOLDUP_MS,
                     killed_after_ms=round(killed_after * 1000, 1), bound_bytes=int(durable.group(3)),
                     bandwidth=int(durable.group(4)), drained_bytes=int(durable.group(1)),
                     drain_ms=float(durable.group(2)), marker_ms=float(marked.group(1)) if marked else None)
        print("cycle:", " ".join(f"{k}={v}" for k, v in stats.items()))
        if STATS:  # for tests/crash/summary.py
            with open(STATS, "a") as f:
                f.write(json.dumps(dict(stats, replayed=0)) + "\n")
        assert not drain or drain.group(3) == ("power button" if signal == "powerdown" else "NMI"), \
            drain.group(0)
        assert not lost, (f"{len(lost)} acknowledged blocks lost (seed {seed}, cycle {cycle}):\n"
                          + "\n".join(lost[:10]))
        results.append(stats)
    g.close()
    return results


def report(results):
    ms = [r["drain_ms"] for r in results]
    mib = sum(r["drained_bytes"] for r in results) / (1 << 20)
    print(f"{len(results)} power cuts at {HOLDUP_MS} ms: {sum(r['acknowledged'] for r in results)} "
          f"acknowledged writes, 0 lost; drain ms min/median/max {min(ms):.1f}/{statistics.median(ms):.1f}/"
          f"{max(ms):.1f} for {[r['drained_bytes'] for r in results]} bytes"
          + (f" ({sum(ms) / mib:.0f} ms per MiB)" if mib else "")
          + f"; dirty bounds {[r['bound_bytes'] for r in results]} bytes; disk marker clean at "
          f"{[r['marker_ms'] for r in results]} ms")


@pytest.mark.slow
@pytest.mark.parametrize("signal", ["powerdown", "nmi"])
def test_power_cut_after_the_signal_loses_no_acknowledged_write(guest_factory, module_path, tmp_path, signal):
    report(power_cycles(f"powerfail-{signal}", guest_factory, module_path, tmp_path, signal))


@pytest.mark.slow
def test_writes_are_held_after_the_drain(guest_factory, module_path, tmp_path):
    """With powerfail_resume_ms=0, after the drain no write completes: the
    writer stalls, unacknowledged."""
    disk = tmp_path / "log.img"
    g = guest_factory(memmap=REGION, disks=[Disk(disk, serial=SERIAL, size="32M", iops=DISK_IOPS)],
                      files={"/lib/modules/KREL/extra/rapilog.ko": module_path, "/usr/bin/rlio": rlio_binary()})
    g.boot()
    log = insmod(g, "nmi", "powerfail_resume_ms=0")
    assert "after a drain writes are held until reboot (powerfail_resume_ms=0)" in log, log
    mark = g.console_mark()
    start_writer(g, 0)
    g.wait_console(r"rlack ", scaled(60), since=mark)
    time.sleep(1)
    g.inject_nmi()
    drain = g.wait_console(DRAIN.pattern + r".*", scaled(30), since=mark)
    assert drain.group(0).endswith("new writes are held until reboot (powerfail_resume_ms=0)"), drain.group(0)
    # A write admitted before the signal may complete (and log its line)
    # after the drain line: it was drained. Give those lines time to land.
    time.sleep(scaled(1))
    acks = acknowledged(g.console_text(mark))
    time.sleep(scaled(2))
    assert acknowledged(g.console_text(mark)) == acks, "a write completed after the drain"
    # The writer is stuck in the kernel, not failed: its process is in D state.
    # (Found by comm: pidof would read its memory, which a writer blocked in
    # a direct write may hold.)
    state = g.check("for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = rlio ] && "
                    "cut -d' ' -f3 $p/stat; done; true").split()
    assert state == ["D"], state
    # What was acknowledged is on the disk (the drain made it durable).
    model = Model(SLOTS)
    model.acknowledge(range(0, max(acks) + 1))
    assert not model.check(disk)
    g.kill()


def false_alarm_guest(guest_factory, ko, ctl, disk):
    return guest_factory(memmap=REGION, disks=[Disk(disk, serial=SERIAL, size="32M", iops=DISK_IOPS)],
                         files={"/lib/modules/KREL/extra/rapilog.ko": ko, "/usr/bin/rlio": rlio_binary(),
                                "/bin/rapilogctl": ctl})


@pytest.mark.slow
@pytest.mark.parametrize("signal", ["powerdown", "nmi"])
def test_a_false_alarm_resumes_service(guest_factory, module_path, ctl_bin, tmp_path, signal):
    """The machine outlives the signal: after the drain, writes stall until
    the driver resumes service (powerfail_resume_ms after the last signal),
    then go on; the writer completes, the false alarm is logged once and
    counted, and nothing acknowledged is lost. With NMIs a second one
    arrives during the wait and restarts it (the first may have been
    spurious and the second real)."""
    disk = tmp_path / "log.img"
    g = false_alarm_guest(guest_factory, module_path, ctl_bin, disk)
    g.boot()
    armed = "button" if signal == "powerdown" else "nmi"
    log = insmod(g, armed, f"powerfail_resume_ms={RESUME_MS}")
    assert (f"writes are held, and admitted again if the machine still runs "
            f"powerfail_resume_ms={RESUME_MS} ms after the last signal") in log, log
    mark = g.console_mark()
    start_counted_writer(g, 0, WRITES)
    g.wait_console(rf"rlack {WRITES // 4} ", scaled(120), since=mark)
    signal_mark = g.console_mark()
    send_signal(g, signal)
    g.wait_console(DRAIN.pattern, scaled(30), since=signal_mark)
    if signal == "nmi":
        # A second NMI well into the wait: a driver that kept counting from
        # the first would resume about a second too early for the check on
        # the resume line below (TCG wakes late by up to a few hundred ms).
        time.sleep(1)
        g.inject_nmi()
    # The writer is held, not failed: the status says so, consistently
    # (the resume may come while rapilogctl runs). The drain marked the
    # disk's marker clean; the resume marks it live before any write.
    s = status(g)
    held = (s["power_fail"]["state"], s["power_fail"]["false_alarms"], s["flags"]["writes_held"],
            s["marker"]["state"])
    assert held in (("drained", 0, True, "clean"), ("armed", 1, False, "live")), held
    g.wait_console(RESUMED.pattern, scaled(60) + RESUME_MS / 1000, since=signal_mark)
    g.wait_console(r"rlio exit \d+", scaled(180), since=mark)
    console = g.console_text(mark)
    assert re.search(r"^(?:\[ *\d+\.\d+\] )?rlio exit 0$", console, re.M), console[-3000:]

    after_signal = g.console_text(signal_mark)
    drains = list(DRAIN.finditer(after_signal))
    resumes = list(RESUMED.finditer(after_signal))
    assert len(drains) == 1 and len(resumes) == 1, (drains, resumes, after_signal[-3000:])
    drain, resume = drains[0], resumes[0]
    assert drain.start() < resume.start()
    assert drain.group(3) == resume.group(1) == ("power button" if signal == "powerdown" else "NMI"), \
        (drain.group(0), resume.group(0))
    # The driver's own clock: never before powerfail_resume_ms after the
    # last signal.
    if signal == "nmi":
        assert resume.group(3), f"the second NMI did not land in the wait: {resume.group(0)}"
        first, last = int(resume.group(3)), int(resume.group(4))
        assert last >= RESUME_MS and first > last, resume.group(0)
    else:
        assert int(resume.group(2)) >= RESUME_MS, resume.group(0)
    # Writes stall from the drain to the resume: only the one write the
    # writer (QD1) had admitted before the signal may complete in between.
    held_acks = acknowledged(after_signal[drain.start():resume.start()])
    resumed_acks = acknowledged(after_signal[resume.start():])
    assert len(held_acks) <= 1, sorted(held_acks)
    assert resumed_acks and min(resumed_acks) > max(held_acks, default=-1), \
        (sorted(held_acks), sorted(resumed_acks)[:3])
    assert max(resumed_acks) == WRITES - 1, max(resumed_acks)

    s = status(g)
    p = s["power_fail"]
    assert (p["state"], p["false_alarms"], p["resume_ms"]) == ("armed", 1, RESUME_MS), p
    assert s["flags"]["writes_held"] is False, s["flags"]
    # Writes are buffered again, so the log disk's marker says the region
    # may hold writes it lacks (a clean one would hide their loss with the
    # region): read from the disk itself, not the module's view.
    on_disk = json.loads(g.run(f"rapilogctl marker $(disk-by-serial {SERIAL}) --json")[1])
    assert on_disk["marker"]["state"] == "live" and on_disk["marker"]["epoch"] == s["marker"]["epoch"], \
        (on_disk, s["marker"])
    assert re.search(r"false alarm 1 since load\)$", after_signal, re.M), after_signal[-3000:]

    # rmmod drains: every acknowledged block is on the disk image.
    g.check("rmmod rapilog", timeout=scaled(60))
    assert "rapilog: unloaded" in g.check("dmesg"), g.check("dmesg")
    model = Model(SLOTS)
    model.acknowledge(range(WRITES))  # rlio exited 0: every write was acknowledged
    lost = model.check(disk)
    assert not lost, f"{len(lost)} acknowledged blocks lost:\n" + "\n".join(lost[:10])
    print(f"{signal}: {resume.group(0)}; {len(held_acks)} write(s) completed between drain and resume, "
          f"{len(resumed_acks)} after")


@pytest.mark.slow
def test_a_power_failure_right_after_a_false_alarm_loses_nothing(guest_factory, module_path, ctl_bin,
                                                                  tmp_path):
    """After a false alarm the path is armed again and the dirty bound held
    all along: a real power failure then drains in time like any other."""
    rnd, seed = rng("powerfail-after-false-alarm")
    disk = tmp_path / "log.img"
    g = false_alarm_guest(guest_factory, module_path, ctl_bin, disk)
    g.boot()
    insmod(g, "nmi", f"powerfail_resume_ms={RESUME_MS}")
    mark = g.console_mark()
    start_writer(g, 0)
    g.wait_console(r"rlack ", scaled(60), since=mark)
    time.sleep(rnd.uniform(*WRITER_RUNS))
    g.inject_nmi()
    g.wait_console(RESUMED.pattern, scaled(60) + RESUME_MS / 1000, since=mark)
    resumed_mark = g.console_mark()
    g.wait_console(r"rlack ", scaled(60), since=resumed_mark)
    time.sleep(rnd.uniform(*WRITER_RUNS))
    cut_mark = g.console_mark()
    killed_after = cut_power_after_holdup(g, "nmi")  # the power is gone this time
    console = g.console_text(mark)
    drains = list(DURABLE.finditer(console))
    assert len(drains) == 2, ("expected the false alarm's drain and the real one's:\n" + console[-3000:])
    assert DURABLE.search(g.console_text(cut_mark)), (
        f"the drain's data was not durable within the hold-up time of {HOLDUP_MS} ms (power cut "
        f"{killed_after * 1000:.0f} ms after the second signal):\n" + console[-3000:])
    lines = acknowledged(console)
    assert lines and min(lines) == 0, sorted(lines)[:3]
    assert acknowledged(g.console_text(resumed_mark)), "no write completed after the resume"
    model = Model(SLOTS)
    model.acknowledge(range(0, max(lines) + 1))
    lost = model.check(disk)
    assert not lost, (f"{len(lost)} acknowledged blocks lost (seed {seed}):\n" + "\n".join(lost[:10]))
    print(f"seed {seed}: {max(lines) + 1} acknowledged, 0 lost; drains: "
          + "; ".join(d.group(0) for d in drains))
