"""rapilog-rescue in the stock Debian kernel: replays a region found in guest
RAM (/dev/mem) onto the log disk it names, found by its virtio serial.

Region images are built on the host with the format crate's test helpers
(rapilog-rescue/examples/make-test-image.rs: records written exactly as the
kernel writer writes them, some torn, some already written back) and put into
guest RAM through the shared RAM file; damage is done the same way, from the
host, by flipping bytes in guest RAM. The static rescue binary runs in the
normal kernel here (the crash kernel runs the same binary with the same
/dev/mem access); the panic -> kexec -> rescue loop is tested with the driver.

One guest serves the tests of the program itself; each uses its own disks
and writes its own region, so they do not depend on each other's order. The
last test runs the real crash path without the driver: a region put into
RAM, the crash kernel armed with Debian's kexec-tools (kexec -p), a panic,
rapilog-rescue from its initramfs in the crash kernel, reboot.
"""
import hashlib
import json
import re
import shutil
import subprocess

import pytest

import time

from rapilog_harness import REPO, Disk, Guest, LOG_ROOT, build_module, fetch_kernel, parse_memmap, scaled

REGION = "64M$0x60000000"
REGION_START, REGION_SIZE = parse_memmap(REGION)
REGION_PARAM = "64M@0x60000000"
MiB = 1 << 20


# --- host side: binaries, images, superblock decoding ------------------------------------

@pytest.fixture(scope="module")
def rescue_bin() -> str:
    out = subprocess.run([str(REPO / "rapilog-rescue/build-static.sh")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def make_image(tmp_path_factory, test_image_tool):
    exe = test_image_tool
    base = tmp_path_factory.mktemp("images")

    def make(name: str, *args: str) -> tuple:
        out = base / name
        subprocess.run([exe, "--out", str(out), *args], check=True, stdout=subprocess.DEVNULL)
        return out, json.loads((out / "manifest.json").read_text())

    return make


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def superblock(region_head: bytes) -> dict:
    """The current superblock (FORMAT.md): the valid copy with the newer generation."""
    best = None
    for copy in (0, 1):
        sb = region_head[copy * 512:(copy + 1) * 512]
        if sb[:8] != b"RAPILOGS" or crc32c(sb[:508]) != int.from_bytes(sb[508:512], "little"):
            continue
        u32 = lambda o: int.from_bytes(sb[o:o + 4], "little")  # noqa: E731
        u64 = lambda o: int.from_bytes(sb[o:o + 8], "little")  # noqa: E731
        d = dict(copy=copy, state=u32(12), generation=u64(16), durable_tail=u64(32),
                 disk_id=sb[88:152].rstrip(b"\0").decode(), replay_by=u32(164),
                 replay_from_seq=u64(168), replay_finished_at=u64(176), replay_duration_us=u64(184),
                 replay_bytes=u64(192), replay_applied=u32(200), replay_skip_bad_descriptor=u32(208),
                 replay_skip_bad_payload=u32(224))
        if best is None or ((d["generation"] - best["generation"]) % (1 << 64)) in range(1, 1 << 63):
            best = d
    assert best is not None, "no valid superblock copy"
    return best


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def report_of(out: str) -> dict:
    m = re.search(r"^rapilog-rescue: report (applied=.*)$", out, re.M)
    assert m, out
    return {k: (int(v) if v.lstrip("-").isdigit() else v)
            for k, v in (w.split("=", 1) for w in m.group(1).split())}


# --- the guest ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def images(make_image):
    return {
        "log": make_image("log", "--disk-id", "serial:rl-log", "--seed", "1"),
        "log2": make_image("log2", "--disk-id", "serial:rl-log2", "--seed", "2",
                           "--corrupt-payload", "7", "--corrupt-descriptor", "30"),
        "gone": make_image("gone", "--disk-id", "serial:rl-gone", "--seed", "3", "--records", "8"),
        "small": make_image("small", "--disk-id", "serial:rl-small", "--seed", "4", "--records", "8"),
        "dup": make_image("dup", "--disk-id", "serial:rl-dup", "--seed", "5", "--records", "8"),
        # a by-id path, as rapilog.ko recorded by default before it read the disk's own id
        "byid": make_image("byid", "--disk-id", "/dev/disk/by-id/virtio-rl-log2", "--seed", "6", "--records", "8"),
    }


@pytest.fixture(scope="module")
def guest(request, rescue_bin, images, tmp_path_factory):
    d = tmp_path_factory.mktemp("disks")
    shutil.copy(images["log"][0] / "disk.img", d / "log.img")
    shutil.copy(images["log2"][0] / "disk.img", d / "log2.img")
    for name, size in (("small.img", 8 * MiB), ("dup1.img", 16 * MiB), ("dup2.img", 16 * MiB)):
        with open(d / name, "wb") as f:
            f.write(bytes(range(256)) * (size // 256))
    disks = [Disk(d / "log.img", serial="rl-log"), Disk(d / "log2.img", serial="rl-log2"),
             Disk(d / "small.img", serial="rl-small"),
             Disk(d / "dup1.img", serial="rl-dup", id="dup1"), Disk(d / "dup2.img", serial="rl-dup", id="dup2")]
    g = Guest("test_rescue", memmap=REGION, ram_file=True, disks=disks,
              files={"/bin/rapilog-rescue": rescue_bin}, log_dir=LOG_ROOT / "test_rescue",
              append=f"rapilog.region={REGION_PARAM} rapilog.disk=serial:rl-log rapilog.reboot=0")
    request.addfinalizer(g.close)
    g.boot()
    g.disk_files = {disk.serial if disk.id is None else disk.id: disk.path for disk in disks}
    return g


def put_region(g: Guest, image_dir, flips=()):
    region = bytearray((image_dir / "region.img").read_bytes())
    assert len(region) == REGION_SIZE
    for off in flips:
        region[off] ^= 0xFF
    g.write_phys(REGION_START, bytes(region))


def region_digest(g: Guest) -> str:
    return hashlib.sha256(g.read_phys(REGION_START, REGION_SIZE)).hexdigest()


# --- tests -------------------------------------------------------------------------------

def test_rescue_replays_region_onto_disk_found_by_serial(guest, images):
    g = guest
    image_dir, manifest = images["log"]
    put_region(g, image_dir)
    expected = manifest["expect"]

    # Dry run, region read with read(2) (mmap is the default): verifies, writes nothing.
    before = sha256_file(g.disk_files["rl-log"])
    rc, out = g.run("rapilog-rescue --no-reboot --dry-run --read")
    assert rc == 0, out
    r = report_of(out)
    assert (r["applied"], r["bytes"], r["region"]) == (expected["applied"], expected["bytes"], "dry-run"), out
    assert sha256_file(g.disk_files["rl-log"]) == before

    # The real thing, configured by the kernel command line only.
    rc, out = g.run("rapilog-rescue --no-reboot")
    print(out)
    assert rc == 0, out
    r = report_of(out)
    assert r["applied"] == expected["applied"] and r["bytes"] == expected["bytes"], out
    assert r["bad_descriptor"] == expected["bad_descriptor"] == 2, out  # the two torn records
    assert r["bad_payload"] == 0 and r["malformed"] == 0 and r["from_seq"] == expected["from_seq"], out
    assert r["region"] == "written" and r["exit"] == 0, out
    assert re.search(r"log disk /dev/vd[a-z] \(vd[a-z] 25\d:\d+, serial:rl-log, 32768 sectors, 512-byte blocks\)",
                     out), out

    # The disk: from inside the guest (sha256 of the block device and of the
    # written ranges) and byte for byte from the host.
    want = (image_dir / "expected.img").read_bytes()
    dev = g.check("disk-by-serial rl-log").strip()
    assert g.check(f"sha256sum {dev}").split()[0] == hashlib.sha256(want).hexdigest()
    live = [rec for rec in manifest["records"] if rec["state"] == "published"]
    for rec in (live[0], live[len(live) // 2], live[-1]):
        s, n = rec["sector"], rec["len"] // 512
        got = g.check(f"dd if={dev} bs=512 skip={s} count={n} 2>/dev/null | sha256sum").split()[0]
        assert got == hashlib.sha256(want[s * 512:(s + n) * 512]).hexdigest(), rec
    assert (open(g.disk_files["rl-log"], "rb").read() == want), "log disk differs from the writer's model"

    # The report in the region.
    sb = superblock(g.read_phys(REGION_START, 1024))
    assert sb["state"] == 1 and sb["replay_by"] == 2, sb  # clean, by rapilog-rescue
    assert sb["replay_applied"] == expected["applied"] and sb["replay_bytes"] == expected["bytes"], sb
    assert sb["replay_from_seq"] == expected["from_seq"] and sb["replay_skip_bad_descriptor"] == 2, sb
    assert sb["durable_tail"] == expected["from_seq"] + REGION_SIZE // 4096, sb  # past the whole window
    assert sb["replay_duration_us"] == r["duration_us"] and sb["replay_finished_at"] > 1_700_000_000, sb

    # Again: nothing to do, region and disk left alone.
    digest = region_digest(g)
    rc, out = g.run("rapilog-rescue --no-reboot")
    assert rc == 0 and "region already clean" in out, out
    assert region_digest(g) == digest
    assert open(g.disk_files["rl-log"], "rb").read() == want


def test_rescue_skips_and_reports_corrupted_records(guest, images):
    """Bytes flipped in guest RAM from the host: one payload, one descriptor.
    Those records are skipped and reported, never written; the rest lands."""
    g = guest
    image_dir, manifest = images["log2"]
    assert len(manifest["flip"]) == 2
    put_region(g, image_dir, flips=manifest["flip"])
    rc, out = g.run("rapilog-rescue --no-reboot --disk-id serial:rl-log2")
    print(out)
    assert rc == 1, out  # replayed, but acknowledged data was damaged
    r = report_of(out)
    expected = manifest["expect"]
    assert r["applied"] == expected["applied"] and r["bytes"] == expected["bytes"], out
    assert r["bad_payload"] == 1 and r["bad_descriptor"] == expected["bad_descriptor"] == 3, out
    assert "WARNING: 1 damaged record(s) not replayed" in out, out
    # expected.img excludes the damaged records: their sectors keep the old data
    assert open(g.disk_files["rl-log2"], "rb").read() == (image_dir / "expected.img").read_bytes()
    sb = superblock(g.read_phys(REGION_START, 1024))
    assert sb["replay_skip_bad_payload"] == 1 and sb["replay_skip_bad_descriptor"] == 3, sb
    # the other log disk was not touched by this replay
    assert open(g.disk_files["rl-log"], "rb").read() == (images["log"][0] / "expected.img").read_bytes()


@pytest.mark.parametrize("case, needle", [
    ("gone", r"no disk has identity serial:rl-gone \(seen: .*vd[a-z] serial:rl-log, "
             r"/dev/disk/by-id/virtio-rl-log;.*\); nothing written"),
    ("small", r"refused as log disk: region's disk has 32768 sectors, target has 16384; nothing written"),
    ("dup", r"2 disks have identity serial:rl-dup: vd[a-z], vd[a-z]; refusing to guess; nothing written"),
])
def test_rescue_refuses_wrong_disk_and_writes_nothing(guest, images, case, needle):
    g = guest
    image_dir, _ = images[case]
    put_region(g, image_dir)
    region = region_digest(g)
    disks = {k: sha256_file(p) for k, p in g.disk_files.items()}
    rc, out = g.run(f"rapilog-rescue --no-reboot --disk-id serial:rl-{case} --wait 1")
    print(out)
    assert rc == 4, out
    failures = [line for line in out.splitlines() if "FAILED" in line]
    assert len(failures) == 1 and failures[0].startswith("rapilog-rescue: FAILED (exit 4): "), out
    assert re.search(needle, failures[0]), failures[0]
    assert region_digest(g) == region, "region changed"
    assert {k: sha256_file(p) for k, p in g.disk_files.items()} == disks, "a disk changed"


def test_rescue_configuration_mismatch_and_live_driver_guard(guest, images):
    g = guest
    image_dir, _ = images["gone"]
    put_region(g, image_dir)
    region = region_digest(g)
    # rapilog.disk=serial:rl-log on the kernel command line, region names rl-gone
    rc, out = g.run("rapilog-rescue --no-reboot")
    assert rc == 4 and "belongs to disk serial:rl-gone but the configuration names disk serial:rl-log" in out, out
    # bad kernel-command-line value given as flag
    rc, out = g.run("rapilog-rescue --no-reboot --region 64M@0x60000001")
    assert rc == 2 and "multiples of 4 KiB" in out, out
    assert region_digest(g) == region
    # --list-disks shows the identities the rule gives
    listing = g.check("rapilog-rescue --list-disks")
    assert re.search(r"^vd[a-z] 25\d:\d+ 32768 sectors, 512-byte blocks: serial:rl-log, /dev/disk/by-id/virtio-rl-log$",
                     listing, re.M), listing
    assert listing.count("serial:rl-dup") == 2, listing
    # A region whose id is a /dev/disk/by-id path finds its disk through sysfs
    # alone (no udev in a crash initramfs).
    put_region(g, images["byid"][0])
    rc, out = g.run("rapilog-rescue --no-reboot --dry-run --disk-id /dev/disk/by-id/virtio-rl-log2")
    assert rc == 0, out
    assert re.search(r"log disk /dev/vd[a-z] \(vd[a-z] 25\d:\d+, /dev/disk/by-id/virtio-rl-log2, ", out), out
    assert report_of(out)["applied"] == images["byid"][1]["expect"]["applied"], out


# --- the crash path: panic -> kexec crash kernel -> rapilog-rescue -> reboot --------------

def crash_append(disk_id: str) -> str:
    """The crash kernel's command line, as kexec-tools-config arms it."""
    return ("console=ttyS0,115200 nr_cpus=1 irqpoll reset_devices panic=-1 "
            f"rapilog.region={REGION_PARAM} rapilog.disk={disk_id}")


@pytest.mark.slow
def test_rescue_in_crash_kernel_after_panic(guest_factory, make_image, rescue_bin, krel, tmp_path):
    kexec = subprocess.run([str(REPO / "rapilog-rescue/fetch-kexec-tools.sh"), krel], check=True,
                           stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    kdir = fetch_kernel(krel)
    cpio = subprocess.run([str(REPO / "rapilog-rescue/build-initramfs.sh"), "-k", krel, "-r", str(kdir / "root"),
                           "-b", rescue_bin, "-o", str(tmp_path / "rescue.cpio.gz")],
                          check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    image_dir, manifest = make_image("crash", "--disk-id", "serial:rl-log", "--seed", "7")
    shutil.copy(image_dir / "disk.img", tmp_path / "log.img")
    g = guest_factory(memmap=REGION, crashkernel="256M", ram_file=True,
                      disks=[Disk(tmp_path / "log.img", serial="rl-log")], overlays=[kexec],
                      files={"/boot/vmlinuz": kdir / "vmlinuz", "/boot/rescue.cpio.gz": cpio})
    first = g.boot().boots[-1]["boot_id"]
    put_region(g, image_dir)
    t = time.monotonic()
    g.check(f"kexec -p /boot/vmlinuz --initrd=/boot/rescue.cpio.gz --append='{crash_append('serial:rl-log')}'",
            timeout=scaled(60))
    armed = time.monotonic() - t
    assert g.check("cat /sys/kernel/kexec_crash_loaded").strip() == "1"

    mark = g.console_mark()
    t = time.monotonic()
    g.send("echo c > /proc/sysrq-trigger")
    g.wait_console(r"Kernel panic - not syncing", scaled(30), since=mark)
    m = g.wait_console(r"rapilog-rescue: report (applied=\S+ .* exit=\d+)", scaled(120), since=mark)
    to_report = time.monotonic() - t
    r = dict(w.split("=", 1) for w in m.group(1).split())
    expected = manifest["expect"]
    assert (int(r["applied"]), int(r["bytes"])) == (expected["applied"], expected["bytes"]), m.group(0)
    assert r["region"] == "written" and r["exit"] == "0", m.group(0)
    info = g.wait_booted(scaled(120))
    to_boot = time.monotonic() - t
    assert info["boot_id"] != first
    console = g.console_text(mark)
    assert "rapilog-rescue: done in" in console and ", rebooting" in console, console[-3000:]
    print(f"kexec -p {armed:.1f} s; panic -> report on the console {to_report:.1f} s; "
          f"panic -> guest up again {to_boot:.1f} s")
    print("\n".join(line for line in console.splitlines() if "rapilog-rescue" in line))

    # Every acknowledged record is on the disk, nothing else changed.
    assert (tmp_path / "log.img").read_bytes() == (image_dir / "expected.img").read_bytes()
    # The region survived the reboot and says who replayed it.
    sb = superblock(g.read_phys(REGION_START, 1024))
    assert sb["state"] == 1 and sb["replay_by"] == 2 and sb["replay_applied"] == expected["applied"], sb
    assert sb["durable_tail"] == expected["from_seq"] + REGION_SIZE // 4096, sb


@pytest.mark.slow
def test_panic_with_rapilog_loaded_replays_every_acknowledged_write(guest_factory, rescue_bin, krel, tmp_path):
    """The driver's own region: 200 numbered 4 KiB O_DIRECT writes to
    /dev/rapilog0 with writeback held back (60 s), a panic, and the crash
    kernel's rapilog-rescue alone brings them to the disk."""
    ko = build_module(krel)
    kexec = subprocess.run([str(REPO / "rapilog-rescue/fetch-kexec-tools.sh"), krel], check=True,
                           stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    kdir = fetch_kernel(krel)
    cpio = subprocess.run([str(REPO / "rapilog-rescue/build-initramfs.sh"), "-k", krel, "-r", str(kdir / "root"),
                           "-b", rescue_bin, "-o", str(tmp_path / "rescue.cpio.gz")],
                          check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    disk = tmp_path / "log.img"
    with open(disk, "wb") as f:
        f.truncate(64 * MiB)
    g = guest_factory(memmap=REGION, crashkernel="256M", ram_file=True,
                      disks=[Disk(disk, serial="rl-log")], overlays=[kexec],
                      files={"/boot/vmlinuz": kdir / "vmlinuz", "/boot/rescue.cpio.gz": cpio,
                             "/lib/modules/KREL/extra/rapilog.ko": ko})
    g.boot()
    insmod = ("insmod /lib/modules/$(uname -r)/extra/rapilog.ko region=" + REGION_PARAM +
              " backing=$(disk-by-serial rl-log) disk_id=serial:rl-log")
    g.check(insmod + " writeback_delay_ms=60000")
    g.check(f"kexec -p /boot/vmlinuz --initrd=/boot/rescue.cpio.gz --append='{crash_append('serial:rl-log')}'",
            timeout=scaled(60))
    blocks = 200
    g.check(f"for i in $(seq 0 {blocks - 1}); do printf 'block %08d ' $i | dd of=/tmp/b bs=4096 count=1 conv=sync "
            "2>/dev/null; cat /tmp/b; done > /tmp/all && "
            "dd if=/tmp/all of=/dev/rapilog0 bs=4096 oflag=direct conv=fsync", timeout=scaled(120))
    assert not open(disk, "rb").read(4096).startswith(b"block "), "written back before the panic"

    mark = g.console_mark()
    g.send("echo c > /proc/sysrq-trigger")
    m = g.wait_console(r"rapilog-rescue: report (applied=\S+ .* exit=\d+)", scaled(120), since=mark)
    r = dict(w.split("=", 1) for w in m.group(1).split())
    assert r["applied"] == str(blocks) and r["bytes"] == str(blocks * 4096) and r["exit"] == "0", m.group(0)
    g.wait_booted(scaled(120))
    data = open(disk, "rb").read(blocks * 4096)
    missing = [i for i in range(blocks) if not data[i * 4096:].startswith(b"block %08d " % i)]
    assert not missing, f"{len(missing)} acknowledged blocks missing, e.g. {missing[:5]}"
    # The driver loads again over the replayed region and disk.
    g.check(insmod)
    assert g.check("dd if=/dev/rapilog0 bs=4096 skip=199 count=1 2>/dev/null | head -c 14") == "block 00000199"
