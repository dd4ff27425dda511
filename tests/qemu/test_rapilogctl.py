"""rapilogctl in the stock Debian kernel: `inspect --mem` decodes a region in
guest RAM through /dev/mem exactly as `inspect --image` decodes the same
image on the host; `replay` of a region dumped from /dev/mem onto the log
disk, found in the real sysfs by its virtio serial, gives the writer's disk;
the wrong disk is refused; `plan` reads the real memory map; the live
commands say the module is not loaded (exit 7).

Region images are built on the host with the format crate's test helpers
(rapilog-rescue/examples/make-test-image.rs) and put into guest RAM through
the shared RAM file.
"""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from guest import REPO, Disk, Guest, LOG_ROOT, parse_memmap

REGION = "64M$0x60000000"
REGION_START, REGION_SIZE = parse_memmap(REGION)
MiB = 1 << 20


@pytest.fixture(scope="module")
def ctl_bin() -> str:
    """rapilogctl linked statically (the guest's initramfs has no libc), in
    its own target directory like rapilog-rescue/build-static.sh."""
    triple = "x86_64-unknown-linux-gnu"
    target_dir = REPO / "target" / "static"
    env = dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols")
    subprocess.run(["cargo", "build", "--quiet", "--locked", "--release", "-p", "rapilogctl",
                    "--bin", "rapilogctl", "--target", triple, "--target-dir", str(target_dir)],
                   cwd=REPO, check=True, env=env)
    return str(target_dir / triple / "release" / "rapilogctl")


@pytest.fixture(scope="module")
def host_ctl() -> str:
    subprocess.run(["cargo", "build", "--quiet", "--locked", "-p", "rapilogctl"], cwd=REPO, check=True)
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version=1", "--no-deps"],
                                     cwd=REPO, check=True, stdout=subprocess.PIPE).stdout)
    return f"{meta['target_directory']}/debug/rapilogctl"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    subprocess.run(["cargo", "build", "--quiet", "--locked", "-p", "rapilog-rescue",
                    "--example", "make-test-image"], cwd=REPO, check=True)
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version=1", "--no-deps"],
                                     cwd=REPO, check=True, stdout=subprocess.PIPE).stdout)
    exe = f"{meta['target_directory']}/debug/examples/make-test-image"
    out = tmp_path_factory.mktemp("ctl-image")
    subprocess.run([exe, "--out", str(out), "--disk-id", "serial:rl-log", "--seed", "11"],
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
    # A dump by hand (dump needs the control interface): the region from /dev/mem.
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
