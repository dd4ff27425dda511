"""An uncorrected machine check under load: the kernel panics with
"Machine check", the kdump crash kernel's rapilog-rescue replays the
region, and every acknowledged write is on the log disk (issue 21, item 1).

The guest runs test_crash.py's numbered-block writer (tests/tools/rlio.rs)
on /dev/rapilog0 over a throttled log disk; after a fixed time the host
injects a machine check on CPU 0 through QEMU's monitor (HMP `mce`, over
QMP's human-monitor-command): bank 1, MCi_STATUS = VAL|UC|EN|PCC (an
uncorrected error with the processor context corrupt), MCG_STATUS =
MCIP|EIPV (no restart IP: the interrupted context cannot resume). The
guest CPU (TCG `-cpu max`) reports itself as AMD, whose severity grading
(arch/x86/kernel/cpu/mce/severity.c, mce_severity_amd) makes PCC a panic,
as Intel's table does (the broadcast case presents the CPU as Intel:
below); the kernel's #MC handler calls mce_panic, which
panics, and panic() boots the crash kernel loaded by rapilog-arm. The host
then reads the log disk image, as test_crash.py does.

The kernel settings this relies on, which `rapilogctl plan` checks for on a
real machine (docs/configuration.md, "Panics and machine checks"): MCE handling on
(no `mce=off`: with CR4.MCE clear a machine check shuts the CPU down, no
crash kernel runs) and the crash kernel loaded. The test asserts the guest
kernel runs the machine check handler (/sys/devices/system/machinecheck).
"""
import re

import pytest

from rapilog_harness import Disk
from rapilog_harness.crashload import CrashRig, Model, artifacts, guest_files

REGION = "4M$0x60000000"
REGION_PARAM = "4M@0x60000000"
SERIAL = "rl-log"
SLOTS = 8191  # 4 KiB blocks of the 32 MiB log disk before its loss marker
DISK_IOPS = 300
DELAY = 3.0   # seconds of load after the first acknowledgement: past the first writeback (1 s)

MCI_STATUS_VAL, MCI_STATUS_UC, MCI_STATUS_EN, MCI_STATUS_PCC = 1 << 63, 1 << 61, 1 << 60, 1 << 57
MCG_STATUS_RIPV, MCG_STATUS_EIPV, MCG_STATUS_MCIP = 1, 2, 4
FATAL = MCI_STATUS_VAL | MCI_STATUS_UC | MCI_STATUS_EN | MCI_STATUS_PCC
# QEMU broadcasts a machine check only on an Intel CPU of family 6 model
# >= 14 (cpu_x86_support_mca_broadcast); TCG's max CPU says AMD family 6
# model 6. The same CPU, presented as an Intel Skylake-SP (family 6 model
# 85): the kernel takes the Intel path (severity table, broadcast
# rendezvous with the monarch CPU deciding). The last -cpu wins.
INTEL_CPU = ["-cpu", "max,vendor=GenuineIntel,family=6,model=85,stepping=4"]
MCE_ARGS = f"0 1 {FATAL:#x} {MCG_STATUS_MCIP | MCG_STATUS_EIPV:#x} 0 0"


@pytest.fixture(scope="module")
def art(krel, tmp_path_factory):
    return artifacts(krel, tmp_path_factory.mktemp("mce-artifacts"))


def injector(broadcast: bool):
    cmd = "mce -b " + MCE_ARGS if broadcast else "mce " + MCE_ARGS

    def inject(g) -> None:
        out = g.qmp("human-monitor-command", {"command-line": cmd})
        # QEMU answers with text only when it did not inject (reporting
        # disabled for the bank, CR4.MCE clear, a machine check in progress).
        assert out == "", f"{cmd}: {out}"
    return inject


@pytest.mark.slow
@pytest.mark.parametrize("broadcast", [False, True], ids=["cpu0", "broadcast"])
def test_fatal_machine_check_under_load_every_acknowledged_write_survives(guest_factory, art, krel, tmp_path,
                                                                          broadcast):
    """cpu0: the machine check on CPU 0 only (a local one). broadcast
    (`mce -b`): QEMU also raises one on every other CPU (MCG_STATUS
    MCIP|RIPV, MCi_STATUS VAL|UC in the same bank), as a processor that
    broadcasts machine checks does: both CPUs enter the handler, one
    panics, the other waits in it for the crash kernel's stop NMI."""
    disk = tmp_path / "log.img"
    g = guest_factory(memmap=REGION, crashkernel="256M", overlays=[art["kexec"]],
                      disks=[Disk(disk, serial=SERIAL, size="32M", iops=DISK_IOPS)],
                      files=guest_files(art, krel), qemu_args=INTEL_CPU if broadcast else [])
    g.boot()
    # The machine check handler is set up on every CPU (mce= not off).
    g.check("test -d /sys/devices/system/machinecheck/machinecheck0 && "
            "test -d /sys/devices/system/machinecheck/machinecheck1")
    rig = CrashRig(g, disk, SERIAL, REGION_PARAM, "")
    rig.load_and_arm()
    r = rig.run_until_panic(f"rlio numbered /dev/rapilog0 0 {SLOTS}", "rlack", 0, DELAY, trigger=injector(broadcast))
    console = r["console"]
    panic = console[console.index("Kernel panic - not syncing"):].splitlines()[0]
    print(panic)
    # mce_panic's report: the bank as injected, graded fatal (AMD's
    # severity code and Intel's table word it differently).
    assert panic.endswith("Fatal machine check" if broadcast else "Fatal local machine check"), panic
    assert f"mce: [Hardware Error]: CPU 0: Machine Check Exception: 6 Bank 1: {FATAL:x}" in console, console[-3000:]
    assert re.search(r"mce: \[Hardware Error\]: Machine check: Processor [Cc]ontext [Cc]orrupt", console), \
        console[-3000:]
    print(f"rescue: {r['report']}; panic -> report {r['panic_to_report']:.1f} s")
    model = Model(SLOTS)
    model.acknowledge(r["acks"])
    lost = model.check(disk)
    print(f"{len(r['acks'])} acknowledged writes, {len(model.newest)} slots checked on the disk, "
          f"{r['report']['applied']} records replayed by the crash kernel, {len(lost)} lost")
    assert not lost, f"{len(lost)} acknowledged blocks lost:\n" + "\n".join(lost[:10])
    assert int(r["report"]["applied"]) > 0, r["report"]  # data only in the region at the machine check
    # The rebooted machine: the module loads over the replayed region.
    log = rig.load_and_arm()
    assert "last replay by rapilog-rescue (crash kernel)" in log and " 0 damaged records" in log, log
