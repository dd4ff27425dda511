"""Smoke tests of the QEMU harness with the stock Debian kernel (no rapilog yet).

They check the facts later tests rely on: the stock kernel boots, the agent
reports exit codes, stock modules load, the memmap region is reserved, the
host sees guest RAM through the shared file at the computed offsets, and the
power/panic signals (pvpanic, ACPI power button, NMI) arrive.
"""
import os
import re
import time

import pytest

from rapilog_harness import (DEFAULT_KREL, CommandFailed, CommandTimeout, Disk, Guest, GuestPanicked, parse_memmap,
                             pinned_krels, scaled)

REGION = "64M$0x60000000"
REGION_START, REGION_SIZE = parse_memmap(REGION)


# --- one shared guest for the read-only checks ------------------------------------------

def test_uname_is_pinned_kernel(booted, krel):
    assert booted.check("uname -r").strip() == krel
    assert booted.boots[-1]["krel"] == krel
    assert "memmap=" + REGION in booted.check("cat /proc/cmdline")


def test_agent_reports_exit_codes(booted):
    assert booted.run("true") == (0, "")
    rc, _ = booted.run("false")
    assert rc != 0
    assert booted.run("echo out; echo err >&2; exit 7") == (7, "out\nerr\n")
    with pytest.raises(CommandFailed) as e:
        booted.check("echo broken; exit 3")
    assert e.value.rc == 3 and "broken" in str(e.value)


def test_agent_binary_and_large_output(booted):
    rc, out = booted.run_bytes("head -c 300000 /dev/urandom > /tmp/r; cat /tmp/r")
    assert rc == 0 and len(out) == 300000
    digest = booted.check("sha256sum /tmp/r").split()[0]
    import hashlib
    assert hashlib.sha256(out).hexdigest() == digest
    data = bytes(range(256)) * 40
    booted.write_file("/tmp/w", data)
    assert booted.read_file("/tmp/w") == data


def test_agent_timeout_kills_command(booted):
    t = time.monotonic()
    with pytest.raises(CommandTimeout):
        booted.run("echo started; sleep 30", timeout=2)
    assert time.monotonic() - t < scaled(15)
    assert booted.check("echo still alive").strip() == "still alive"


def test_insmod_stock_brd(booted):
    booted.check("! test -e /dev/ram0")
    booted.check("insmod /lib/modules/$(uname -r)/kernel/drivers/block/brd.ko rd_nr=1 rd_size=4096")
    booted.check("test -b /dev/ram0 && grep -q '^brd ' /proc/modules")
    assert booted.check("blockdev --getsize64 /dev/ram0").strip() == str(4096 * 1024)
    booted.check("dd if=/dev/zero of=/dev/ram0 bs=4096 count=16 2>&1")
    booted.check("rmmod brd")
    booted.check("! test -e /dev/ram0 && ! grep -q '^brd ' /proc/modules")
    # modprobe resolves dependencies from the initramfs' modules.dep
    booted.check("modprobe null_blk nr_devices=1 && test -b /dev/nullb0 && rmmod null_blk")


def test_memmap_region_is_reserved(booted):
    iomem = booted.check("cat /proc/iomem")
    start, end = REGION_START, REGION_START + REGION_SIZE - 1
    top = [ln for ln in iomem.splitlines() if not ln.startswith(" ")]
    want = f"{start:08x}-{end:08x} : Reserved"
    assert want in top, iomem
    for line in top:  # no System RAM range overlaps the region
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) : System RAM", line)
        if m:
            lo, hi = int(m.group(1), 16), int(m.group(2), 16)
            assert hi < start or lo > end, line
    # the user-defined (memmap=) e820 map the kernel printed at boot
    assert re.search(rf"user: \[mem {start:#018x}-{end:#018x}\]\s+(device )?reserved", booted.check("dmesg"))


# --- guest RAM shared with the host -------------------------------------------------------

def _roundtrip_phys(g: Guest, phys: int):
    pat = 0x5A17_0000 | (phys >> 20 & 0xFFFF)
    g.check(f"devmem {phys:#x} 32 {pat:#x}")
    assert int.from_bytes(g.read_phys(phys, 4), "little") == pat
    g.write_phys(phys + 64, (0xC0DE_F00D).to_bytes(4, "little"))
    assert int(g.check(f"devmem {phys + 64:#x} 32"), 16) == 0xC0DE_F00D


def test_ram_file_maps_low_memory(guest_factory):
    """-m 2G: guest physical == file offset (all RAM below the PCI hole)."""
    g = guest_factory(memmap=REGION, ram_file=True)
    g.boot()
    assert g.phys_offset(REGION_START) == REGION_START
    _roundtrip_phys(g, REGION_START)
    _roundtrip_phys(g, REGION_START + REGION_SIZE - 128)


@pytest.mark.slow
def test_ram_file_maps_high_memory(guest_factory):
    """-m 4G: 2 GiB below 4 GiB, the rest from 4 GiB at file offset 2 GiB."""
    high = 0x1_1000_0000
    g = guest_factory(mem="4G", memmap=f"16M${high:#x}", ram_file=True)
    g.boot()
    assert g.phys_offset(high) == high - (1 << 32) + (2 << 30)
    assert f"{high:x}-{high + (16 << 20) - 1:x} : Reserved" in g.check("cat /proc/iomem")
    _roundtrip_phys(g, high)


@pytest.mark.slow
def test_region_survives_reboot_and_restart_with_ram_file(guest_factory, tmp_path):
    ram = tmp_path / "ram"
    g = guest_factory(memmap=REGION, ram_file=ram)
    first = g.boot().boots[-1]["boot_id"]
    g.check(f"devmem {REGION_START:#x} 32 0x600dcafe")
    assert g.reboot()["boot_id"] != first  # reboot -f inside the guest
    assert int(g.check(f"devmem {REGION_START:#x} 32"), 16) == 0x600DCAFE
    g.restart()  # QEMU killed (power cut) and started again on the same RAM file
    assert int(g.check(f"devmem {REGION_START:#x} 32"), 16) == 0x600DCAFE
    assert g.read_phys(REGION_START, 4) == (0x600DCAFE).to_bytes(4, "little")


# --- signals: panic, power button, NMI ----------------------------------------------------

def test_pvpanic_reports_guest_panic(guest_factory):
    g = guest_factory(memmap=REGION, crashkernel="256M", pvpanic=True)
    g.boot()
    # crashkernel= reserved (no crash kernel loaded here: the panic stays a panic)
    assert g.check("cat /sys/kernel/kexec_crash_size").strip() == str(256 << 20)
    assert g.check("cat /sys/kernel/kexec_crash_loaded").strip() == "0"
    mark, cmark = g.event_mark(), g.console_mark()
    t = time.monotonic()
    with pytest.raises(GuestPanicked):  # run() notices the panic, no timeout wait
        g.run("echo c > /proc/sysrq-trigger")
    assert time.monotonic() - t < scaled(20)
    ev = g.wait_event("GUEST_PANICKED", scaled(30), since=mark)
    assert ev["data"]["action"] in ("run", "pause", "shutdown")
    g.wait_console(r"Kernel panic - not syncing", scaled(30), since=cmark)


def test_powerdown_and_nmi_reach_guest(guest_factory):
    g = guest_factory()
    g.boot()
    # The ACPI "Power Button" input device (button.ko) delivers KEY_POWER.
    dev = g.check("for d in /sys/class/input/event*; do "
                  "grep -qx 'Power Button' $d/device/name && echo ${d##*/}; done").split()
    assert dev, g.check("cat /proc/bus/input/devices")
    g.check(f"(cat /dev/input/{dev[0]} > /tmp/ev &) ; sleep 0.2")
    g.powerdown()
    deadline = time.monotonic() + scaled(10)
    while g.check("wc -c < /tmp/ev").strip() == "0":
        assert time.monotonic() < deadline, "no input event after system_powerdown"
        time.sleep(0.2)
    # struct input_event on x86_64: 16 bytes time, u16 type, u16 code, s32 value
    ev = g.read_file("/tmp/ev")
    events = [(int.from_bytes(ev[i + 16:i + 18], "little"), int.from_bytes(ev[i + 18:i + 20], "little"))
              for i in range(0, len(ev) - 23, 24)]
    assert (1, 116) in events  # EV_KEY, KEY_POWER
    assert g.running()  # nothing in the guest acts on it: the test decides
    mark = g.console_mark()
    g.inject_nmi()
    g.wait_console(r"NMI received for unknown reason", scaled(10), since=mark)
    assert g.check("echo ok").strip() == "ok"


# --- disks and IOMMU ------------------------------------------------------------------------

@pytest.mark.slow
def test_disks_by_serial_and_throttling(guest_factory):
    log = Disk("log.img", serial="rl-log", size="64M", iops=200)
    data = Disk("data.img", serial="rl-data", size="32M")
    g = guest_factory(disks=[log, data])
    g.boot()
    dev = g.check("disk-by-serial rl-log").strip()
    assert re.fullmatch(r"/dev/vd[a-z]", dev)
    assert g.check("disk-by-serial rl-data").strip() != dev
    assert g.check(f"blockdev --getsize64 {dev}").strip() == str(64 << 20)

    def direct_writes(n: int) -> float:
        # one dd process, n O_DIRECT 4 KiB writes = n requests to the throttle
        t = time.monotonic()
        g.check(f"dd if=/dev/zero of={dev} bs=4096 count={n} oflag=direct 2>&1", timeout=scaled(120))
        return time.monotonic() - t

    # 200 IOPS (QEMU allows a burst of ~iops/10): 200 requests take >= ~0.9 s
    throttled = direct_writes(200)
    assert throttled >= 0.7, throttled
    g.set_throttle(log, 0)
    unthrottled = direct_writes(200)
    assert unthrottled < throttled / 2, (throttled, unthrottled)
    # per-write fsync also works on the device (busybox dd has no oflag=dsync)
    g.check(f"dd if=/dev/zero of={dev} bs=4096 count=1 oflag=direct conv=fsync 2>&1")


@pytest.mark.slow
def test_iommu_translates_virtio(guest_factory):
    g = guest_factory(iommu=True, memmap=REGION, disks=[Disk("d.img", serial="rl-d", size="8M")])
    g.boot()
    assert "intel_iommu=on" in g.check("cat /proc/cmdline")
    g.check("test -e /sys/class/iommu/dmar0")
    dev = g.check("disk-by-serial rl-d").strip()
    name = dev.rsplit("/", 1)[1]
    # the disk's PCI function sits in an IOMMU group with a DMA (translated) domain
    group = g.check(f"readlink -f /sys/block/{name}/device/../iommu_group 2>/dev/null || "
                    f"readlink -f /sys/block/{name}/device/device/iommu_group")
    assert "/iommu_groups/" in group
    dtype = g.check(f"cat {group.strip()}/type").strip()
    assert dtype == "DMA", dtype  # translated and strict (lazy would be DMA-FQ)
    g.check(f"dd if=/dev/urandom of={dev} bs=64k count=16 oflag=direct 2>&1 && "
            f"dd if={dev} of=/dev/null bs=64k count=16 iflag=direct 2>&1")


# --- every pinned kernel boots ---------------------------------------------------------------

# sid's kernel moves with sid, and the archive drops old sid versions: `make
# test` boots only the default kernel; RAPILOG_ALL_KERNELS=1 boots every pinned one.
KERNELS = pinned_krels() if os.environ.get("RAPILOG_ALL_KERNELS") == "1" else [DEFAULT_KREL]


@pytest.mark.parametrize("kernel", KERNELS)
def test_pinned_kernel_boots(guest_factory, kernel):
    g = guest_factory(krel=kernel, memmap=REGION)
    g.boot()
    assert g.check("uname -r").strip() == kernel
    g.check("modprobe brd rd_nr=1 rd_size=1024 && test -b /dev/ram0 && rmmod brd")
