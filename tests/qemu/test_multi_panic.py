"""Three devices, one panic: the crash kernel replays every region onto its
own log disk.

/dev/rapilog0..2 front three log disks, their regions consecutive 4 MiB
slices of one `memmap=12M$0x60000000`, all three loaded and the crash
kernel armed by kexec-tools-config/rapilog-arm from a three-device
rapilog.conf (REGION/BACKING/DISK_ID, REGION_1/..., REGION_2/...). One
`rlio numbered` writer per device (each device's block numbers in their own
range, so an acknowledgement names its device) runs on all three at once
over throttled disks, so each region holds records not yet written back;
the guest panics at a seeded random moment. rapilog-rescue must replay all
three regions (one report per region, `3 of 3 regions replayed cleanly`),
and the host then finds every acknowledged block on each disk. The module
loads again over the three replayed regions, and each device reads back
exactly what its disk holds.
"""
import hashlib
import re
import time

import pytest

from rapilog_harness import Disk, scaled
from rapilog_harness.crashload import (BLOCK, SUMMARY, CrashRig, Device, Model, acknowledged, artifacts,
                                       config_devices, guest_files, rng)

MEMMAP = "12M$0x60000000"
DEVICES = [Device("4M@0x60000000", "rl-a"), Device("4M@0x60400000", "rl-b"), Device("4M@0x60800000", "rl-c")]
SLOTS = 8191  # 4 KiB blocks of each 32 MiB disk before its loss marker
SPAN = 10_000_000  # device i writes blocks i*SPAN, i*SPAN+1, ...
DISK_IOPS = 300
DELAY = (1.0, 6.0)  # seconds after every writer's first acknowledgement


@pytest.fixture(scope="module")
def art(krel, tmp_path_factory):
    return artifacts(krel, tmp_path_factory.mktemp("multi-panic-artifacts"))


def acks_by_device(console: str) -> list[range]:
    """Per device, the block numbers acknowledged: each writer is
    sequential, so its newest intact line vouches for every number before
    it (TCG's serial console now and then drops characters)."""
    lines = acknowledged(console)
    out = []
    for i in range(len(DEVICES)):
        mine = [n for n in lines if n // SPAN == i]
        assert mine and min(mine) == i * SPAN, (i, sorted(mine)[:3])
        out.append(range(i * SPAN, max(mine) + 1))
    return out


@pytest.mark.slow
def test_panic_with_three_devices_replays_every_region(guest_factory, art, krel, tmp_path):
    disks = [tmp_path / f"{d.serial}.img" for d in DEVICES]
    g = guest_factory(memmap=MEMMAP, crashkernel="256M", overlays=[art["kexec"]],
                      disks=[Disk(p, serial=d.serial, size="32M", iops=DISK_IOPS) for p, d in zip(disks, DEVICES)],
                      files=guest_files(art, krel))
    g.boot()
    rnd, seed = rng("multi-panic")
    rig = CrashRig(g, disks[0], DEVICES[0].serial, DEVICES[0].region, "", conf=config_devices(DEVICES))
    log = rig.load_and_arm()
    for i, d in enumerate(DEVICES):
        assert f"/dev/rapilog{i}:" in log, log
    command = g.check("rapilog-arm command")
    for d in DEVICES:
        assert f"rapilog.region={d.region} rapilog.disk=serial:{d.serial}" in command, command

    mark = g.console_mark()
    for i in range(len(DEVICES)):
        g.check(f"setsid rlio numbered /dev/rapilog{i} {i * SPAN} {SLOTS} </dev/null >/tmp/rlio{i}.out 2>&1 &")
    deadline = time.monotonic() + scaled(60)
    while {n // SPAN for n in acknowledged(g.console_text(mark))} != set(range(len(DEVICES))):
        assert time.monotonic() < deadline, g.console_tail()
        time.sleep(0.2)
    delay = rnd.uniform(*DELAY)
    time.sleep(delay)
    r = rig.panic_and_replay()
    console = r["console"]
    acks = acks_by_device(g.console_text(mark))

    # One report per region, each clean; the summary counts three.
    reports = r["reports"]
    assert sorted(reports) == [0, 1, 2], console[-3000:]
    for i, rep in reports.items():
        assert (rep["exit"], rep["region"], rep["bad_payload"], rep["malformed"]) == ("0", "written", "0", "0"), rep
    summary = re.search(SUMMARY, console, re.M)
    assert summary and summary.groups()[:2] == ("3", "3") and not summary.group(3).strip(), console[-3000:]

    replayed = [int(reports[i]["applied"]) for i in range(len(DEVICES))]
    print(f"multi-panic: seed {seed} delay {delay:.2f} s; acknowledged {[len(a) for a in acks]}, "
          f"replayed by the crash kernel {replayed}")
    assert sum(replayed) > 0, "every record was written back before the panic: the test proves nothing"
    for i, (disk, numbers) in enumerate(zip(disks, acks)):
        model = Model(SLOTS)
        model.acknowledge(numbers)
        lost = model.check(disk)
        assert not lost, f"/dev/rapilog{i}: {len(lost)} acknowledged blocks lost (seed {seed}):\n" + \
            "\n".join(lost[:10])

    # The module loads over the three replayed regions; each device reads
    # exactly what its disk holds.
    log = rig.load_and_arm()
    assert log.count("last replay by rapilog-rescue (crash kernel)") == len(DEVICES), log
    for i, disk in enumerate(disks):
        got = g.check(f"dd if=/dev/rapilog{i} bs={BLOCK} count={SLOTS} iflag=direct 2>/dev/null | sha256sum",
                      timeout=scaled(120)).split()[0]
        assert got == hashlib.sha256(disk.read_bytes()[:SLOTS * BLOCK]).hexdigest(), f"/dev/rapilog{i}"
