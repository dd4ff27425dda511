"""rapilog.ko in the unmodified Debian kernel: it loads, refuses bad
parameters with one clear line, and unloads.

The module comes from kernels/build-module.sh (built against the stock
headers); the kernel image and modules come straight from the Debian archive.
"""
import pytest

from rapilog_harness import parse_memmap

REGION = "64M$0x60000000"
REGION_START, REGION_SIZE = parse_memmap(REGION)
REGION_PARAM = "64M@0x60000000"
MODULE_IN_GUEST = "/lib/modules/KREL/extra/rapilog.ko"


@pytest.fixture(scope="module")
def guest(request, module_path, krel):
    from rapilog_harness import Disk, Guest, LOG_ROOT
    # The log disk (/dev/vda): the module opens it at load.
    g = Guest("test_module", krel=krel, memmap=REGION,
              disks=[Disk("log.img", serial="rl-log", size="64M")],
              files={MODULE_IN_GUEST: module_path}, log_dir=LOG_ROOT / "test_module")
    request.addfinalizer(g.close)
    g.boot()
    return g


def insmod(g, params: str) -> tuple[int, str, str]:
    """insmod with params; returns (rc, insmod output, kernel log lines it caused)."""
    g.check("dmesg -c > /dev/null")
    rc, out = g.run(f"insmod /lib/modules/$(uname -r)/extra/rapilog.ko {params}")
    return rc, out, g.check("dmesg")


def loaded(g) -> bool:
    return g.run("grep -q '^rapilog ' /proc/modules")[0] == 0


def test_runs_the_stock_kernel(guest, krel):
    release = guest.check("uname -r").strip()
    print(f"guest runs the stock Debian kernel: uname -r = {release}")
    assert release == krel
    # The module was built out of tree, never by the kernel's own build.
    assert guest.check("modinfo -F vermagic /lib/modules/$(uname -r)/extra/rapilog.ko").startswith(krel + " ")


def test_loads_with_valid_parameters_and_unloads(guest):
    # Loading also proves the kernel's crc32c() agrees with the format crate's
    # shared test vectors: the module refuses to load otherwise.
    rc, out, log = insmod(guest, f"region={REGION_PARAM} backing=/dev/vda")
    assert rc == 0, out + log
    line = f"rapilog: configured: region={REGION_PARAM} backing=/dev/vda protect=window"
    assert line in log
    print(f"insmod rapilog.ko: {line}")
    assert loaded(guest)
    # Parameters are visible, read-only, to the administrator.
    params = "/sys/module/rapilog/parameters"
    assert guest.check(f"cat {params}/region").strip() == REGION_PARAM
    assert guest.check(f"cat {params}/protect").strip() == "window"
    assert guest.check(f"stat -c %a {params}/backing").strip() == "444"
    # The disk less its last 4 KiB, where the loss marker lives (FORMAT.md).
    assert guest.check("cat /sys/block/rapilog0/size").strip() == str((64 << 11) - 8)

    guest.check("dmesg -c > /dev/null")
    guest.check("rmmod rapilog")
    assert not loaded(guest)
    assert f"rapilog: unloaded (region={REGION_PARAM})" in guest.check("dmesg")


@pytest.mark.parametrize("params, message", [
    ("backing=/dev/vda",
     "rapilog: region= is required: reserve memory at boot with memmap=SIZE$PHYS"),
    ("region=64Q@0x60000000 backing=/dev/vda",
     "rapilog: region=64Q@0x60000000 refused: SIZE must be a number with an optional K/M/G/T suffix"),
    ("region=64M@0x60000001 backing=/dev/vda",
     "rapilog: region=64M@0x60000001 refused: SIZE and PHYS must be multiples of 4 KiB"),
    ("region=64M backing=/dev/vda",
     "rapilog: region=64M refused: expected SIZE@PHYS, e.g. 64M@0x60000000"),
    (f"region={REGION_PARAM}",
     "rapilog: backing= is required: the log disk's path"),
    (f"region={REGION_PARAM} backing=vda",
     "rapilog: backing=vda refused: expected an absolute path"),
    (f"region={REGION_PARAM} backing=/dev/vda protect=maybe",
     "rapilog: protect=maybe refused: expected window (default) or off"),
    (f"region={REGION_PARAM} backing=/dev/vda iommu_fence=strict",
     "rapilog: iommu_fence=strict refused: expected warn (default) or require"),
    (f"region={REGION_PARAM} backing=/dev/vda powerfail=button,ups",
     "rapilog: powerfail=button,ups refused: expected button, nmi, button,nmi, or empty for none"),
    (f"region={REGION_PARAM} backing=/dev/vda powerfail=nmi holdup_ms=0",
     "rapilog: holdup_ms=0 refused: expected 1 to 10000"),
    (f"region={REGION_PARAM} backing=/dev/vda powerfail_action=reboot",
     "rapilog: powerfail_action=reboot refused: expected quiesce (default) or poweroff"),
    (f"region={REGION_PARAM} backing=/dev/vda powerfail=nmi holdup_ms=500 powerfail_resume_ms=2000",
     "rapilog: powerfail_resume_ms=2000 refused: expected 0 (never: after a power-fail drain, hold writes "
     "until reboot) or 5000 to 3600000"),
    (f"region={REGION_PARAM} backing=/dev/vda powerfail_resume_ms=4000000",
     "rapilog: powerfail_resume_ms=4000000 refused: expected 0 (never: after a power-fail drain, hold writes "
     "until reboot) or 1000 to 3600000"),
])
def test_refuses_bad_parameters_with_one_clear_line(guest, params, message):
    rc, out, log = insmod(guest, params)
    assert rc != 0, f"insmod {params} succeeded:\n{log}"
    assert "Invalid argument" in out or "Invalid parameters" in out, out
    assert message in log, log
    assert not loaded(guest)
    print(f"insmod rapilog.ko {params}: exit {rc}, kernel log: {message}...")


def test_overlong_parameter_is_refused_by_the_kernel(guest):
    rc, out, log = insmod(guest, f"region={REGION_PARAM} backing=/{'x' * 300}")
    assert rc != 0
    assert "backing: string doesn't fit in 255 chars" in log, log
    assert not loaded(guest)
