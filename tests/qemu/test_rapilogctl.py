"""rapilogctl in the stock Debian kernel.

Offline: `inspect --mem` decodes a region in guest RAM through /dev/mem
exactly as `inspect --image` decodes the same image on the host; `replay` of
a region dumped from /dev/mem onto the log disk, found in the real sysfs by
its virtio serial, gives the writer's disk; the wrong disk is refused;
`plan` reads the real memory map; the live commands say the module is not
loaded (exit 7). Region images are built on the host with the format
crate's test helpers (rapilog-rescue/examples/make-test-image.rs) and put
into guest RAM through the shared RAM file.

Live, with rapilog.ko loaded (the driver's control device /dev/rapilog-ctl):
`status --json` reports what was written (writes, bytes, dirty bytes held by
writeback_delay_ms=60000, records, protection, region, backing); `flush`
puts the data on the log disk (read back in the guest and on the host) and
dirty to 0; Ctrl-C stops a slow flush with exit 130 and loses nothing;
`dump` + `inspect --image` and `inspect --live` list the records written;
without CAP_SYS_ADMIN flush, dump and fence --check exit 77. The IOMMU
fence: without an IOMMU every PCI device is unfenced, named in the status
and in the kernel log, and iommu_fence=require refuses to load, leaving the
region and the disk byte for byte as they were; with intel-iommu it is
fenced, iommu_fence=require loads, and after `rapilogctl arm` (the crash
kernel via rapilog-arm) and powerfail=nmi the verdict is PROTECTED.
"""
import hashlib
import json
import shlex
import shutil
import subprocess

import pytest

from rapilog_harness import REPO, Disk, Guest, LOG_ROOT, parse_memmap, scaled
from rapilog_harness.crashload import artifacts, config, guest_files

REGION = "64M$0x60000000"
REGION_START, REGION_SIZE = parse_memmap(REGION)
REGION_PARAM = "64M@0x60000000"
MiB = 1 << 20
MODULE = "/lib/modules/$(uname -r)/extra/rapilog.ko"


@pytest.fixture(scope="module")
def host_ctl() -> str:
    subprocess.run(["cargo", "build", "--quiet", "--locked", "-p", "rapilogctl"], cwd=REPO, check=True)
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version=1", "--no-deps"],
                                     cwd=REPO, check=True, stdout=subprocess.PIPE).stdout)
    return f"{meta['target_directory']}/debug/rapilogctl"


@pytest.fixture(scope="module")
def image(tmp_path_factory, test_image_tool):
    out = tmp_path_factory.mktemp("ctl-image")
    subprocess.run([test_image_tool, "--out", str(out), "--disk-id", "serial:rl-log", "--seed", "11"],
                   check=True, stdout=subprocess.DEVNULL)
    return out, json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def guest(request, ctl_bin, image, tmp_path_factory):
    image_dir, _ = image
    d = tmp_path_factory.mktemp("ctl-disks")
    shutil.copy(image_dir / "disk.img", d / "log.img")
    with open(d / "other.img", "wb") as f:
        f.write(bytes(range(256)) * (16 * MiB // 256))
    disks = [Disk(d / "log.img", serial="rl-log"), Disk(d / "other.img", serial="rl-other")]
    g = Guest("test_rapilogctl", memmap=REGION, ram_file=True, disks=disks,
              files={"/bin/rapilogctl": ctl_bin}, log_dir=LOG_ROOT / "test_rapilogctl")
    request.addfinalizer(g.close)
    g.boot()
    g.disk_files = {"rl-log": d / "log.img", "rl-other": d / "other.img"}
    region = (image_dir / "region.img").read_bytes()
    assert len(region) == REGION_SIZE
    g.write_phys(REGION_START, region)
    return g


def without_source(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "source"}


def test_inspect_mem_matches_the_image(guest, image, host_ctl):
    g = guest
    image_dir, manifest = image
    rc, out = g.run(f"rapilogctl inspect --mem {REGION_START:#x},64M --json")
    assert rc == 0, out
    in_guest = json.loads(out)
    on_host = json.loads(subprocess.run([host_ctl, "inspect", "--image", str(image_dir / "region.img"), "--json"],
                                        check=True, stdout=subprocess.PIPE).stdout)
    assert "via /dev/mem" in in_guest["source"], in_guest["source"]
    assert without_source(in_guest) == without_source(on_host)
    s = in_guest["summary"]
    assert s["apply"] == manifest["expect"]["applied"] and s["apply_bytes"] == manifest["expect"]["bytes"], s
    assert s["skipped"]["bad_descriptor_checksum"] == manifest["expect"]["bad_descriptor"], s
    assert s["damaged"] == 0 and s["planner_agrees"], s
    # Human form.
    rc, out = g.run(f"rapilogctl inspect --mem 64M@{REGION_START:#x}")
    assert rc == 0 and "disk        serial:rl-log" in out and "decision" in out, out
    # Not a region one page further: exit 3.
    rc, out = g.run(f"rapilogctl inspect --mem {REGION_START + 4096:#x},4K")
    assert rc == 3, out


def test_replay_dump_onto_the_disk_found_in_sysfs(guest, image):
    g = guest
    image_dir, manifest = image
    # A dump by hand (no module loaded, so no `rapilogctl dump`): the region from /dev/mem.
    g.check(f"dd if=/dev/mem of=/tmp/region.img bs=1M skip={REGION_START // MiB} count={REGION_SIZE // MiB}"
            " 2>/dev/null")
    log_dev = g.check("disk-by-serial rl-log").strip()
    other_dev = g.check("disk-by-serial rl-other").strip()
    before = hashlib.sha256(open(g.disk_files["rl-log"], "rb").read()).hexdigest()

    # The wrong disk: refused by identity, nothing written.
    rc, out = g.run(f"rapilogctl replay --image /tmp/region.img --disk {other_dev}")
    assert rc == 4 and "is not the region's disk" in out and "serial:rl-other" in out, out

    # Dry run: nothing written.
    rc, out = g.run(f"rapilogctl replay --image /tmp/region.img --disk {log_dev} --dry-run --json")
    assert rc == 0, out
    doc = json.loads(out)
    assert doc["report"]["applied"] == manifest["expect"]["applied"] and doc["region_update"] == "dry-run", doc
    assert hashlib.sha256(open(g.disk_files["rl-log"], "rb").read()).hexdigest() == before

    # The replay: the disk the writer promised, the report in the image.
    rc, out = g.run(f"rapilogctl replay --image /tmp/region.img --disk {log_dev}")
    print(out)
    assert rc == 0, out
    assert f"log disk {log_dev} (" in out and "serial:rl-log" in out, out
    assert "report applied=%d " % manifest["expect"]["applied"] in out, out
    want = (image_dir / "expected.img").read_bytes()
    assert g.check(f"sha256sum {log_dev}").split()[0] == hashlib.sha256(want).hexdigest()
    assert open(g.disk_files["rl-log"], "rb").read() == want
    rc, out = g.run("rapilogctl inspect --image /tmp/region.img --json")
    doc = json.loads(out)
    assert doc["superblock"]["state"] == "clean" and doc["superblock"]["last_replay"]["by"] == "tool", doc


def test_plan_reads_the_real_memory_map(guest):
    rc, out = guest.run("rapilogctl plan --bandwidth 200 --json")
    assert rc == 0, out
    doc = json.loads(out)
    # 200 MB/s x 25 ms = 5 MB: a 4 MiB region; the 64M memmap on the
    # command line is large enough and is kept.
    assert doc["sizing"]["region_bytes"] == 4 * MiB, doc["sizing"]
    assert doc["existing_memmap"]["phys"] == REGION_START, doc
    assert doc["module_region"] == "region=64M@0x60000000", doc
    assert "memmap=64M$0x60000000" not in doc["add"], doc
    assert not any("no Reserved range" in w for w in doc["warnings"]), doc["warnings"]
    assert any(d["name"].startswith("vd") and "serial:rl-log" in d["ids"] for d in doc["disks"]), doc["disks"]


def test_live_commands_without_the_module(guest):
    for cmd in ("status", "flush", "dump --out /tmp/x", "inspect --live"):
        rc, out = guest.run(f"rapilogctl {cmd}")
        assert rc == 7 and "rapilog module is not loaded" in out, (cmd, out)


# --- live: the driver's control interface ------------------------------------------------------

SERIAL = "rl-log"
BLOCK = 4096
WRITES = 16  # 4 KiB O_DIRECT writes at every other block (no two records adjacent)


@pytest.fixture(scope="module")
def art(krel, tmp_path_factory):
    """rapilog.ko, the crash kernel, the rescue initramfs, kexec-tools."""
    return artifacts(krel, tmp_path_factory.mktemp("ctl-artifacts"))


def live_files(art, krel, ctl_bin) -> dict:
    return {**guest_files(art, krel), "/bin/rapilogctl": ctl_bin}


def status(g, dev: str = "") -> dict:
    rc, out = g.run(f"rapilogctl status {dev} --json 2>/tmp/status.err")
    assert rc == 0, out + g.run("cat /tmp/status.err")[1]
    doc = json.loads(out)
    assert doc["schema"] == "rapilogctl.status" and doc["schema_version"] == 1, doc
    return doc


def loaded(g) -> bool:
    return g.run("grep -q '^rapilog ' /proc/modules")[0] == 0


def insmod(g, params: str) -> tuple[int, str, str]:
    """(rc, insmod's output, the kernel log lines it caused)."""
    g.check("dmesg -c > /dev/null")
    rc, out = g.run(f"insmod {MODULE} {params}", timeout=scaled(120))
    return rc, out, g.check("dmesg")


def write_blocks(g, first: int, count: int, src: str) -> list[tuple[int, int]]:
    """`count` 4 KiB O_DIRECT writes of /tmp/`src` blocks at blocks first,
    first+2, ...; returns their (sector, length)."""
    done = []
    for i in range(count):
        block = first + 2 * i
        g.check(f"dd if=/tmp/{src} of=/dev/rapilog0 bs={BLOCK} skip={i} seek={block} count=1 "
                "oflag=direct 2>/dev/null")
        done.append((block * BLOCK // 512, BLOCK))
    return done


def disk_blocks_sha(g, dev: str, first: int, count: int) -> str:
    """SHA-256 of blocks first, first+2, ... of dev, read with O_DIRECT."""
    return g.check(f"for i in $(seq 0 {count - 1}); do dd if={dev} bs={BLOCK} skip=$(({first} + 2 * i)) "
                   "count=1 iflag=direct 2>/dev/null; done | sha256sum").split()[0]


@pytest.fixture(scope="module")
def live(request, art, ctl_bin, krel, tmp_path_factory):
    """A busybox guest without an IOMMU, with rapilog.ko, a log disk and
    kexec-tools; the module is loaded by the first live test."""
    d = tmp_path_factory.mktemp("ctl-live")
    disk = Disk(d / "log.img", serial=SERIAL, size="64M")
    g = Guest("test_rapilogctl-live", krel=krel, memmap=REGION, crashkernel="256M", disks=[disk],
              overlays=[art["kexec"]], files=live_files(art, krel, ctl_bin),
              log_dir=LOG_ROOT / "test_rapilogctl-live")
    request.addfinalizer(g.close)
    g.boot()
    g.disk, g.disk_file = disk, d / "log.img"
    g.dev = g.check(f"disk-by-serial {SERIAL}").strip()
    g.check(f"dd if=/dev/urandom of=/tmp/a bs={BLOCK} count={WRITES} 2>/dev/null && "
            f"dd if=/dev/urandom of=/tmp/b bs={BLOCK} count={WRITES} 2>/dev/null && "
            f"dd if=/dev/urandom of=/tmp/c bs={BLOCK} count=64 2>/dev/null")
    return g


def test_status_reports_what_was_written(live):
    g = live
    rc, out, log = insmod(g, f"region={REGION_PARAM} backing={g.dev} writeback_delay_ms=60000")
    assert rc == 0, out + log
    before = status(g)
    assert before["io"]["writes"] == 0 and before["ring"]["dirty_bytes"] == 0, before
    g.written = write_blocks(g, 0, WRITES, "a")
    s = status(g)
    print(json.dumps(s, indent=1))
    assert s["device"] == "rapilog0" and s["control"] == "/dev/rapilog-ctl"
    assert s["backing"] == g.dev
    assert s["region"] == {"phys": REGION_START, "bytes": REGION_SIZE}
    assert s["protect"] == "window"
    assert s["io"]["writes"] == WRITES and s["io"]["write_bytes"] == WRITES * BLOCK, s["io"]
    # Nothing written back yet (writeback_delay_ms=60000): all of it dirty.
    assert s["ring"]["dirty_bytes"] == WRITES * BLOCK, s["ring"]
    assert s["ring"]["live_records"] == WRITES
    assert s["ring"]["head_seq"] - s["ring"]["tail_seq"] == WRITES
    assert s["ring"]["used_bytes"] >= WRITES * BLOCK
    assert s["writeback"]["bytes"] == 0 and s["writeback"]["delay_ms"] == 60000, s["writeback"]
    assert s["errors"] == {"disk_errors": 0, "last_disk_errno": 0, "last_disk_error": None, "write_errors": 0}
    assert s["superblock"]["disk"]["id"] == f"serial:{SERIAL}", s["superblock"]
    assert s["superblock"]["geometry"]["region_bytes"] == REGION_SIZE, s["superblock"]
    assert s["ring"]["durable_tail"] == s["ring"]["tail_seq"]
    # This guest: no crash kernel loaded, no IOMMU, power-fail path off.
    assert s["crash_kernel"] == {"state": "not_armed", "armed": False}
    assert s["power_fail"]["state"] == "off"
    assert s["verdict"]["level"] == "at_risk" and s["verdict"]["problems"][0] == "crash kernel not armed", s["verdict"]
    # The table: the verdict first, then one row per aspect.
    rc, out = g.run("rapilogctl status")
    print(out)
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("AT RISK: crash kernel not armed; ") and "64.0 KiB dirty" in lines[0], out
    assert "\x1b" not in out  # not a terminal: no colour
    for row in ("device", "backing", "region", "ring", "sequence", "writes", "writeback", "errors",
                "iommu fence", "power-fail", "crash kernel", "superblock", "last replay"):
        assert any(line.startswith(row + " ") for line in lines[1:]), (row, out)
    assert f"64.0 MiB at {REGION_START:#x}   protect window" in out, out
    assert f"{WRITES} (64.0 KiB)" in out, out
    # DEV given explicitly, and a device that does not exist.
    assert status(g, "/dev/rapilog0")["io"]["writes"] == WRITES
    rc, out = g.run("rapilogctl status rapilog9")
    assert rc == 7 and "no such rapilog device rapilog9" in out, out


def test_flush_makes_the_data_durable_on_the_disk(live):
    g = live
    want = g.check("sha256sum /tmp/a").split()[0]
    # Still only in the region.
    assert disk_blocks_sha(g, g.dev, 0, WRITES) != want
    rc, out = g.run("rapilogctl flush --json 2>/tmp/flush.err")
    assert rc == 0, out + g.run("cat /tmp/flush.err")[1]
    f = json.loads(out)
    print(json.dumps(f, indent=1))
    assert f["schema"] == "rapilogctl.flush" and f["device"] == "rapilog0"
    assert f["dirty_before"] == WRITES * BLOCK and f["dirty_after"] == 0, f
    assert f["written_back_bytes"] == WRITES * BLOCK and f["written_back_records"] == WRITES, f
    assert f["written_back_ios"] >= 1
    s = status(g)
    assert s["ring"]["dirty_bytes"] == 0 and s["ring"]["live_records"] == 0, s["ring"]
    assert s["ring"]["durable_tail"] == s["ring"]["head_seq"] == f["durable_tail"], (s["ring"], f)
    assert s["writeback"]["bytes"] == WRITES * BLOCK and s["writeback"]["busy_bytes_per_s"] > 0, s["writeback"]
    # On the disk: read in the guest past rapilog, and on the host.
    assert disk_blocks_sha(g, g.dev, 0, WRITES) == want
    on_host = open(g.disk_file, "rb").read()
    data = b"".join(on_host[(2 * i) * BLOCK:(2 * i + 1) * BLOCK] for i in range(WRITES))
    assert hashlib.sha256(data).hexdigest() == want
    # Human form: one final line (stderr is not a terminal: no bar).
    write_blocks(g, 100, 2, "b")
    rc, out = g.run("rapilogctl flush")
    print(out)
    assert rc == 0 and out.startswith("rapilogctl: flushed /dev/rapilog0: 8.0 KiB written back in "), out
    assert "dirty 8.0 KiB -> 0 B" in out and "\r" not in out, out


def test_ctrl_c_stops_a_slow_flush_and_loses_nothing(live):
    g = live
    written = write_blocks(g, 200, 64, "c")
    want = g.check("sha256sum /tmp/c").split()[0]
    g.set_throttle(g.disk, 4)  # 64 separate disk writes: ~16 s
    try:
        rc, out = g.run("rapilogctl flush > /tmp/f.out 2>&1 & p=$!; sleep 2; kill -INT $p; wait $p; "
                        "echo rc=$?; cat /tmp/f.out", timeout=scaled(60))
        print(out)
        assert "rc=130" in out, out
        assert "rapilogctl: error: flush: interrupted after" in out and "nothing is lost" in out, out
        assert status(g)["ring"]["dirty_bytes"] > 0
    finally:
        g.set_throttle(g.disk, 0)
    rc, out = g.run("rapilogctl flush", timeout=scaled(120))
    assert rc == 0, out
    assert disk_blocks_sha(g, g.dev, 200, len(written)) == want


def test_dump_and_inspect_list_the_records(live):
    g = live
    records = write_blocks(g, 300, 4, "b")  # live records (writeback waits 60 s)
    g.check("rm -f /tmp/r.img")
    rc, out = g.run("rapilogctl dump --out /tmp/r.img")
    print(out)
    assert rc == 0, out
    digest = g.check("sha256sum /tmp/r.img").split()[0]
    assert f"{REGION_SIZE} bytes" in out and f"sha256 {digest}  /tmp/r.img" in out, out
    assert int(g.check("stat -c %s /tmp/r.img")) == REGION_SIZE
    # Refuses to overwrite; --force does.
    rc, out = g.run("rapilogctl dump --out /tmp/r.img")
    assert rc == 2 and "pass --force" in out, out
    assert g.check("sha256sum /tmp/r.img").split()[0] == digest

    def applied(doc):
        return [(r["sector"], r["length"]) for r in doc["records"] if r["decision"] == "apply"]

    rc, out = g.run("rapilogctl inspect --image /tmp/r.img --json")
    assert rc == 0, out
    doc = json.loads(out)
    assert applied(doc) == records, doc["records"]
    assert doc["summary"]["damaged"] == 0 and doc["superblock"]["disk"]["id"] == f"serial:{SERIAL}", doc["summary"]
    rc, out = g.run("rapilogctl inspect --live --json")
    assert rc == 0, out
    live_doc = json.loads(out)
    assert live_doc["source"] == f"live /dev/rapilog0 via /dev/rapilog-ctl ({REGION_PARAM})"
    assert applied(live_doc) == records
    rc, out = g.run("rapilogctl dump --out /tmp/r.img --force --json")
    assert rc == 0 and json.loads(out)["bytes"] == REGION_SIZE, out
    rc, out = g.run("rapilogctl inspect --live")
    assert rc == 0 and "decision" in out and "summary     4 to apply (16.0 KiB)" in out, out
    g.check("rm -f /tmp/r.img")
    g.check("rapilogctl flush")


def test_privileged_commands_need_cap_sys_admin(live):
    g = live
    if g.run("command -v su")[0] != 0:
        pytest.skip("no su in this guest: cannot drop root")
    if g.run("grep -q '^nobody:' /etc/passwd")[0] != 0:
        g.check("echo 'nobody:x:65534:65534:nobody:/tmp:/bin/sh' >> /etc/passwd")

    def nobody(cmd: str) -> str:
        # From root to uid 65534: the kernel clears every capability.
        return f"su -s /bin/sh nobody -c {shlex.quote(cmd)}"

    assert g.check(nobody("id -u")).strip() == "65534"
    # The control device is root's (0600): nobody cannot even read the status.
    rc, out = g.run(nobody("/bin/rapilogctl status"))
    assert rc == 77 and "cannot open /dev/rapilog-ctl" in out, out
    # Opened up: the driver still checks CAP_SYS_ADMIN for everything,
    # the status included (it names the region's physical address).
    mode = g.check("stat -c %a /dev/rapilog-ctl").strip()
    g.check("chmod 666 /dev/rapilog-ctl && mkdir -p -m 777 /tmp/nobody")
    try:
        for cmd, what in (("status", "status of /dev/rapilog-ctl needs root"),
                          ("status --json", "status of /dev/rapilog-ctl needs root"),
                          ("flush", "needs root"), ("dump --out /tmp/nobody/r.img", "needs root"),
                          ("inspect --live", "needs root"), ("fence --check", "needs root")):
            rc, out = g.run(nobody(f"/bin/rapilogctl {cmd}"))
            print(f"as uid 65534: rapilogctl {cmd}: exit {rc}: {out.strip()}")
            assert rc == 77 and what in out and "CAP_SYS_ADMIN" in out, (cmd, out)
        assert g.run("test -e /tmp/nobody/r.img")[0] != 0, "a failed dump leaves no file"
    finally:
        g.check(f"chmod {mode} /dev/rapilog-ctl")


def pci_devices(g) -> list[str]:
    return g.check("ls /sys/bus/pci/devices").split()


def test_fence_names_every_unfenced_device_without_an_iommu(live):
    g = live
    s = status(g)
    devices = pci_devices(g)
    fence = s["fence"]
    print(json.dumps(fence, indent=1))
    assert fence["state"] == "unfenced" and fence["policy"] == "warn", fence
    assert fence["devices"] == len(devices) > 0 and fence["unfenced"] == len(devices), (fence, devices)
    assert any(p.startswith(f"{len(devices)} of {len(devices)} PCI devices unfenced") for p in s["verdict"]["problems"])
    # The list is cut at 128 bytes (a cut list ends in "..."): every whole name is a device.
    names = fence["unfenced_devices"]
    whole = [n for n in names if not n.endswith("...")]
    assert whole and set(whole) <= set(devices), (names, devices)
    assert len(whole) == len(devices) or names[-1].endswith("..."), names
    # Checked again now: the kernel log names each device.
    g.check("dmesg -c > /dev/null")
    rc, out = g.run("rapilogctl fence --check")
    print(out)
    assert rc == 1 and f"UNFENCED: {len(devices)} of {len(devices)} PCI devices" in out, out
    log = g.check("dmesg")
    for dev in devices:
        assert f"IOMMU fence: PCI {dev}: not behind an IOMMU: its DMA can reach the region" in log, (dev, log)
    rc, out = g.run("rapilogctl fence --json")
    assert rc == 1 and json.loads(out)["unfenced"] == len(devices), out


def region_sha(g) -> str:
    return g.check(f"dd if=/dev/mem bs=1M skip={REGION_START // MiB} count={REGION_SIZE // MiB} "
                   "2>/dev/null | sha256sum").split()[0]


def test_iommu_fence_require_refuses_without_an_iommu(live):
    g = live
    if loaded(g):
        g.check("rmmod rapilog")
    assert not loaded(g)
    rc, out = g.run("rapilogctl status")
    assert rc == 7 and "rapilog module is not loaded" in out, out
    before = (region_sha(g), g.check(f"sha256sum {g.dev}").split()[0])
    rc, out, log = insmod(g, f"region={REGION_PARAM} backing={g.dev} iommu_fence=require")
    print(out + "\n" + log)
    assert rc != 0 and "Operation not permitted" in out, out
    # One refusal line per load attempt (busybox insmod tries finit_module,
    # then init_module: the module's init runs twice).
    refusals = [line for line in log.splitlines() if "iommu_fence=require refused:" in line]
    assert refusals and len(refusals) == log.count("rapilog: configured:"), log
    assert "PCI devices can DMA into the region" in refusals[0] and "intel_iommu=on" in refusals[0], refusals
    assert not loaded(g) and g.run("test -e /dev/rapilog-ctl")[0] != 0
    assert (region_sha(g), g.check(f"sha256sum {g.dev}").split()[0]) == before, \
        "a refused load changed the region or the disk"
    # The default (warn) loads the same region and disk.
    rc, out, log = insmod(g, f"region={REGION_PARAM} backing={g.dev}")
    assert rc == 0 and "IOMMU fence: UNFENCED:" in log, out + log
    g.check("rmmod rapilog")


@pytest.fixture(scope="module")
def fenced(request, art, ctl_bin, krel, tmp_path_factory):
    """A guest whose PCI devices sit behind intel-iommu (translated, strict)."""
    d = tmp_path_factory.mktemp("ctl-iommu")
    disk = Disk(d / "log.img", serial=SERIAL, size="64M")
    g = Guest("test_rapilogctl-iommu", krel=krel, iommu=True, memmap=REGION, crashkernel="256M", disks=[disk],
              overlays=[art["kexec"]], files=live_files(art, krel, ctl_bin),
              log_dir=LOG_ROOT / "test_rapilogctl-iommu")
    request.addfinalizer(g.close)
    g.boot()
    g.dev = g.check(f"disk-by-serial {SERIAL}").strip()
    return g


def test_fenced_with_an_iommu_armed_protected(fenced):
    g = fenced
    devices = pci_devices(g)
    rc, out, log = insmod(g, f"region={REGION_PARAM} backing={g.dev} iommu_fence=require powerfail=nmi "
                             "drain_kib_per_sec=102400 writeback_delay_ms=60000")
    print(log)
    assert rc == 0, out + log
    assert f"IOMMU fence: fenced: an IOMMU translates the DMA of all {len(devices)} PCI devices" in log, log
    assert "its DMA can reach the region" not in log, log
    s = status(g)
    assert s["fence"] == {"state": "fenced", "policy": "require", "devices": len(devices), "unfenced": 0,
                          "unfenced_devices": []}, s["fence"]
    assert s["crash_kernel"]["armed"] is False and s["verdict"]["level"] == "at_risk", s["verdict"]
    rc, out = g.run("rapilogctl fence --check")
    assert rc == 0 and f"fenced: an IOMMU translates the DMA of all {len(devices)} PCI devices" in out, out
    # Arm the crash kernel the way the systemd unit does (rapilog-arm).
    g.check("mkdir -p /etc/rapilog && cat > /etc/rapilog/rapilog.conf <<'EOF'\n"
            + config(REGION_PARAM, SERIAL, "") + "EOF\n")
    rc, out = g.run("rapilogctl arm", timeout=scaled(60))
    print(out)
    assert rc == 0 and "rapilogctl: arm: done" in out, out
    g.check(f"dd if=/dev/urandom of=/dev/rapilog0 bs={BLOCK} count=8 oflag=direct 2>/dev/null")
    s = status(g)
    print(json.dumps(s, indent=1))
    assert s["crash_kernel"] == {"state": "armed", "armed": True}
    assert s["power_fail"]["state"] == "armed" and s["power_fail"]["signals"] == ["nmi"], s["power_fail"]
    assert s["ring"]["dirty_bytes"] == 8 * BLOCK
    assert s["verdict"]["level"] == "protected" and s["verdict"]["problems"] == [], s["verdict"]
    rc, out = g.run("rapilogctl status")
    print(out)
    assert rc == 0, out
    assert out.startswith("PROTECTED: crash kernel armed, IOMMU fenced, power-fail armed, 32.0 KiB dirty"), out
    # Writeback's DMA goes through the IOMMU: flush works.
    rc, out = g.run("rapilogctl flush --json")
    assert rc == 0 and json.loads(out)["dirty_after"] == 0, out
    # A device with some history (the example in docs/configuration.md).
    g.check("dmesg -c >/dev/null; dd if=/dev/urandom of=/dev/rapilog0 bs=64k count=32 conv=fsync 2>/dev/null && "
            f"dd if=/dev/urandom of=/dev/rapilog0 bs={BLOCK} count=40 seek=1000 oflag=direct conv=fsync 2>/dev/null")
    g.check("rapilogctl flush")
    g.check(f"dd if=/dev/urandom of=/dev/rapilog0 bs={BLOCK} count=24 seek=2000 oflag=direct conv=fsync 2>/dev/null")
    rc, out = g.run("rapilogctl status")
    print(out)
    assert rc == 0 and out.startswith("PROTECTED: "), out
    rc, out = g.run("rapilogctl disarm")
    assert rc == 0, out
    assert status(g)["crash_kernel"]["armed"] is False
