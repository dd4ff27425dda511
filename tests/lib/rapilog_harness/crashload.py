"""Panic under load: the pieces tests/qemu/test_crash.py (and `make
crash-test`, through the same tests) put together.

- The host's copy of tests/tools/rlio.rs's numbered blocks (`block`) and
  files (`file_content`), and the parsing of the lines rlio logs to
  /dev/kmsg once a write is acknowledged (`rlack N CRC`, `rlfile N CRC`).
- `Model`: per 4 KiB slot of the log disk the newest acknowledged block
  number; `Model.check(disk)` reads the disk image and returns every slot
  whose content is not that block or a newer one (a loss).
- `CrashRig`: one guest with rapilog loaded and the crash kernel armed by
  kexec-tools-config/rapilog-arm; `panic_and_replay()` panics it, waits for
  rapilog-rescue's report and for the reboot, and measures the time.
- Several devices: `config_devices()` (rapilog.conf with REGION_1/BACKING_1/
  DISK_ID_1 ...), `rescue_words()` (the crash kernel's rapilog.region=/
  rapilog.disk= pairs), `rescue_reports()` and `SUMMARY` (rapilog-rescue's
  per-region report lines and its last line).
- `cycle_stats()`: a cycle's numbers, also appended to $RAPILOG_CRASH_STATS
  (JSON lines) for tests/crash/summary.py.

Only complete console lines are parsed, and a line counts only if its CRC
matches the block or file its number names, so a line that kernel output
interleaved with cannot add a false acknowledgement.
"""
from __future__ import annotations

import json
import os
import random
import re
import shlex
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .config import CACHE, REPO, scaled
from .guest import Guest
from .images import build_module, fetch_kernel

BLOCK = 4096
MASK = (1 << 64) - 1
CYCLES = int(os.environ.get("RAPILOG_CRASH_CYCLES", "3"))
STATS = os.environ.get("RAPILOG_CRASH_STATS")


# --- the blocks and files rlio writes ----------------------------------------------------

def _splitmix64(state: int) -> tuple[int, int]:
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def block(n: int) -> bytes:
    """Block n exactly as `rlio numbered` writes it."""
    state, sectors = n, []
    for _ in range(8):
        key = b""
        for _ in range(4):
            state, z = _splitmix64(state)
            key += z.to_bytes(8, "little")
        sectors.append(key * 16)
    body = b"".join(sectors)[32:]
    crc = zlib.crc32(body)
    return b"rlblk %016x %08x\n" % (n, crc) + body


def block_crc(n: int) -> int:
    return int(block(n)[23:31], 16)


def file_content(n: int) -> bytes:
    """File fN exactly as `rlio files` writes it."""
    return b"".join(block(n * 16 + k) for k in range(1 + n % 13))


HEADER = re.compile(rb"rlblk ([0-9a-f]{16}) ([0-9a-f]{8})\n")


def block_number(data: bytes) -> int | None:
    """The number block `data` claims to be, if it is exactly that block."""
    m = HEADER.match(data)
    if not m:
        return None
    n = int(m.group(1), 16)
    return n if data == block(n) else None


def acknowledged(console: str, kind: str = "rlack") -> dict[int, int]:
    """{number: crc} of every complete, intact `KIND N CRC` console line
    (the kernel log prefixes them with a timestamp)."""
    want = block_crc if kind == "rlack" else lambda n: zlib.crc32(file_content(n))
    out = {}
    for m in re.finditer(rf"^(?:\[ *\d+\.\d+\] )?{kind} (\d+) ([0-9a-f]{{8}})$", console, re.M):
        n, crc = int(m.group(1)), int(m.group(2), 16)
        if crc == want(n):
            out[n] = crc
    return out


@dataclass
class Model:
    """What the log disk must hold: per slot (4 KiB), the newest block
    number acknowledged there. A slot may also hold a newer block (written,
    not yet acknowledged when the guest panicked), never an older one."""
    slots: int
    newest: dict[int, int] = field(default_factory=dict)

    def acknowledge(self, numbers) -> None:
        for n in numbers:
            s = n % self.slots
            if n > self.newest.get(s, -1):
                self.newest[s] = n

    def check(self, disk: Path) -> list[str]:
        """Every acknowledged slot whose content is wrong, described."""
        lost = []
        with open(disk, "rb") as f:
            for s, n in sorted(self.newest.items()):
                data = os.pread(f.fileno(), BLOCK, s * BLOCK)
                got = block_number(data)
                if got is None or got % self.slots != s or got < n:
                    what = "not an intact block" if got is None else f"block {got}"
                    lost.append(f"slot {s}: acknowledged block {n}, found {what} ({data[:31]!r})")
        return lost


# --- host-side artifacts ---------------------------------------------------------------

def rlio_binary() -> Path:
    """tests/tools/rlio.rs as a static binary (built when the source is newer)."""
    src = REPO / "tests/tools/rlio.rs"
    out = CACHE / "tools/rlio"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"rlio.tmp{os.getpid()}")
        subprocess.run(["rustc", "--edition", "2021", "-O", "-C", "target-feature=+crt-static",
                        str(src), "-o", str(tmp)], check=True)
        tmp.replace(out)
    return out


def _last_line(args: list) -> str:
    return subprocess.run([str(a) for a in args], check=True, stdout=subprocess.PIPE,
                          text=True).stdout.strip().splitlines()[-1]


def artifacts(krel: str, tmp: Path) -> dict:
    """rapilog.ko, the static rapilog-rescue and its crash initramfs, the
    stock kernel, Debian's kexec-tools (overlay for the busybox guest), rlio.
    $RAPILOG_KO names a prebuilt rapilog.ko instead of building the tree's."""
    rescue = _last_line([REPO / "rapilog-rescue/build-static.sh"])
    kdir = fetch_kernel(krel)
    return {
        "ko": build_module(krel),
        "kexec": _last_line([REPO / "rapilog-rescue/fetch-kexec-tools.sh", krel]),
        "vmlinuz": kdir / "vmlinuz",
        "initrd": _last_line([REPO / "rapilog-rescue/build-initramfs.sh", "-k", krel, "-r", kdir / "root",
                              "-b", rescue, "-o", tmp / "rescue.cpio.gz"]),
        "rlio": rlio_binary(),
    }


# --- the region (rapilog-format/FORMAT.md) ------------------------------------------------

def find_record(g: Guest, region_start: int, sector: int) -> tuple[int, int]:
    """(guest-physical address, length) of the payload of the published
    record that writes `sector` (the newest, if several do)."""
    _, addr, length = find_record_seq(g, region_start, sector)
    return addr, length


def find_record_seq(g: Guest, region_start: int, sector: int) -> tuple[int, int, int]:
    """(sequence number, guest-physical address of the payload, length) of
    the published record that writes `sector` (the newest, if several do)."""
    u32 = lambda b, o: int.from_bytes(b[o:o + 4], "little")  # noqa: E731
    u64 = lambda b, o: int.from_bytes(b[o:o + 8], "little")  # noqa: E731
    sb = g.read_phys(region_start, 512)  # both copies share the geometry
    assert sb[:8] == b"RAPILOGS", sb[:16]
    desc_off, slots, ring_off = u64(sb, 56), u32(sb, 64), u64(sb, 72)
    table = g.read_phys(region_start + desc_off, slots * 64)
    found = [(u64(d, 8), u64(d, 32), u32(d, 40)) for d in (table[i:i + 64] for i in range(0, len(table), 64))
             if d[:4] == b"RLGD" and u64(d, 24) == sector]
    assert found, f"no record for sector {sector} in the region"
    seq, off, length = max(found)
    return seq, region_start + ring_off + off, length


# --- the guest ----------------------------------------------------------------------------

REPORT = r"rapilog-rescue: report (applied=\S+ .* exit=-?\d+)"
PANIC = r"Kernel panic - not syncing"


def guest_files(art: dict, krel: str) -> dict:
    """files= for a Guest that runs the crash tests (busybox or rootfs)."""
    return {"/lib/modules/KREL/extra/rapilog.ko": art["ko"], "/boot/vmlinuz": art["vmlinuz"],
            "/boot/rescue.cpio.gz": art["initrd"], "/usr/bin/rlio": art["rlio"],
            "/usr/sbin/rapilog-arm": REPO / "kexec-tools-config/rapilog-arm"}


def config(region: str, serial: str, module_options: str, crash_append: str = "") -> str:
    """/etc/rapilog/rapilog.conf for rapilog-arm (sourced by sh in the guest,
    so the backing path is looked up by serial at each load)."""
    return (f"REGION={region}\nBACKING=$(disk-by-serial {serial})\n"
            f'MODULE_OPTIONS="disk_id=serial:{serial} {module_options}"\n'
            "CRASH_KERNEL=/boot/vmlinuz\nRESCUE_INITRD=/boot/rescue.cpio.gz\n"
            f'CRASH_CONSOLE=""\nCRASH_APPEND="rapilog.disk=serial:{serial} {crash_append}"\n')


@dataclass
class Device:
    """One rapilog device of a several-device configuration: its region
    (SIZE@PHYS), its log disk's virtio serial, and the BACKING= text (default:
    looked up by serial at each load; give a literal path for a disk that is
    deliberately absent, since a failing lookup would stop rapilog-arm)."""
    region: str
    serial: str
    backing: str | None = None


def config_devices(devices: list[Device], module_options: str = "", crash_append: str = "",
                   crash_console: str = "") -> str:
    """/etc/rapilog/rapilog.conf for several devices: devices[k] is
    /dev/rapilog<k>'s (REGION/BACKING/DISK_ID, then REGION_1/BACKING_1/
    DISK_ID_1, ...), each disk named by its serial."""
    lines = []
    for k, d in enumerate(devices):
        suffix = f"_{k}" if k else ""
        lines += [f"REGION{suffix}={d.region}",
                  f"BACKING{suffix}={d.backing or f'$(disk-by-serial {d.serial})'}",
                  f"DISK_ID{suffix}=serial:{d.serial}"]
    lines += [f'MODULE_OPTIONS="{module_options}"', "CRASH_KERNEL=/boot/vmlinuz",
              "RESCUE_INITRD=/boot/rescue.cpio.gz", f'CRASH_CONSOLE="{crash_console}"',
              f'CRASH_APPEND="{crash_append}"']
    return "\n".join(lines) + "\n"


def rescue_words(pairs: list[tuple[str, str | None]]) -> str:
    """The crash kernel's rapilog.* words for (region, disk id) pairs, as
    rapilog-arm builds them: in device order, the k-th rapilog.disk= for the
    k-th region (empty for None), or no rapilog.disk= at all if every id is None."""
    if all(disk is None for _, disk in pairs):
        return " ".join(f"rapilog.region={region}" for region, _ in pairs)
    return " ".join(f"rapilog.region={region} rapilog.disk={disk or ''}" for region, disk in pairs)


# rapilog-rescue's last line with several regions (rapilog-rescue/README.md,
# "Several regions"): how many replayed cleanly, then each other one's exit
# (Guest.wait_console matches whole lines, a partial one once it settled).
SUMMARY = r"rapilog-rescue: (\d+) of (\d+) regions replayed cleanly([^\r\n]*)$"


def rescue_reports(console: str) -> dict[int, dict[str, str]]:
    """rapilog-rescue's report lines of a several-region run, by region
    index (a region that failed has none; its FAILED line names it)."""
    reports = {}
    for m in re.finditer(r"^rapilog-rescue: report (applied=\S+ .* exit=-?\d+ index=\d+)\r?$", console, re.M):
        fields = dict(w.split("=", 1) for w in m.group(1).split())
        reports[int(fields["index"])] = fields
    return reports


class CrashRig:
    """A booted guest (busybox or rootfs) with its log disk `disk` (host path,
    serial `serial`), rapilog-arm's configuration installed (`conf`, if
    given, instead of the one-device one: e.g. `config_devices()`)."""

    def __init__(self, g: Guest, disk: Path, serial: str, region: str, module_options: str,
                 crash_append: str = "", conf: str | None = None):
        self.g, self.disk, self.serial = g, disk, serial
        self.config = conf if conf is not None else config(region, serial, module_options, crash_append)

    def load_and_arm(self) -> str:
        """Loads rapilog (replaying whatever the region holds) and arms the
        crash kernel, both through rapilog-arm; returns the kernel log of the load."""
        g = self.g
        # Each boot: the busybox guest's root is a tmpfs; rlio's lines must
        # not be rate-limited.
        g.check("mkdir -p /etc/rapilog && cat > /etc/rapilog/rapilog.conf <<'EOF'\n" + self.config + "EOF\n"
                "echo on > /proc/sys/kernel/printk_devkmsg && dmesg -c > /dev/null")
        g.check("rapilog-arm load-module", timeout=scaled(120))
        log = g.check("dmesg")
        assert "/dev/rapilog0:" in log, log
        out = g.check("rapilog-arm arm", timeout=scaled(60))
        assert "crash kernel armed: kexec -p /boot/vmlinuz --initrd=/boot/rescue.cpio.gz" in out, out
        assert g.check("rapilog-arm status").strip() == "armed"
        return log

    def start(self, cmd: str) -> None:
        """Runs cmd in the background (the agent runs one command at a time
        and must stay free for the panic)."""
        self.g.check(f"setsid sh -c {shlex.quote(cmd)} </dev/null >/tmp/load.out 2>&1 &")

    def wait_acks(self, kind: str, since: int, timeout: float) -> None:
        """Waits for the first intact `KIND N CRC` line after `since`."""
        deadline = time.monotonic() + timeout
        while not acknowledged(self.g.console_text(since), kind):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} line within {timeout:.0f} s; "
                                     f"writer: {self.g.run('cat /tmp/load.out')[1]}\n{self.g.console_tail()}")
            time.sleep(0.2)

    def panic_and_replay(self, pause=None, trigger=None) -> dict:
        """Panics the guest; waits for rapilog-rescue's report in the crash
        kernel and for the guest to come up again. `pause(g)`, if given,
        runs with the guest stopped (QMP stop) right after the panic message.
        `trigger(g)`, if given, causes the panic instead of sysrq-c (e.g. a
        machine check injected through QEMU's monitor: test_mce.py).
        Returns {report (the first), reports (several regions: by index,
        rescue_reports), console (from the panic request on), times}."""
        g = self.g
        mark = g.console_mark()
        t0 = time.monotonic()
        if trigger is None:
            g.send("echo c > /proc/sysrq-trigger")
        else:
            trigger(g)
        g.wait_console(PANIC, scaled(60), since=mark)
        t_panic = time.monotonic()
        if pause is not None:
            g.qmp("stop")
            try:
                pause(g)
            finally:
                g.qmp("cont")
        m = g.wait_console(REPORT, scaled(180), since=mark)
        t_report = time.monotonic()
        report = dict(w.split("=", 1) for w in m.group(1).split())
        info = g.wait_booted(scaled(180))
        t_up = time.monotonic()
        console = g.console_text(mark)
        assert "rapilog-rescue: done in" in console and ", rebooting" in console, console[-3000:]
        return {"report": report, "reports": rescue_reports(console), "console": console, "boot": info,
                "panic_to_report": t_report - t_panic, "panic_to_up": t_up - t_panic,
                "request_to_panic": t_panic - t0}


    def run_until_panic(self, cmd: str, kind: str, first: int, delay: float, region: str = "written",
                        trigger=None) -> dict:
        """Starts the writer `cmd` (whose lines are `KIND N CRC`, N from
        `first` on), panics `delay` seconds after its first acknowledgement,
        lets the crash kernel replay and the guest reboot (panic_and_replay);
        adds `acks`: the numbers acknowledged before the panic, and `garbled`.
        `region`: what the report must say of the region ("dry-run" when
        the crash kernel is told rapilog.dry_run=1). `trigger`: as for
        panic_and_replay.

        The writer is sequential: N is acknowledged only after every number
        before it, so the newest intact line vouches for all of them (the
        serial console under TCG now and then loses characters)."""
        mark = self.g.console_mark()
        self.start(cmd)
        self.wait_acks(kind, mark, scaled(60))
        time.sleep(delay)
        r = self.panic_and_replay(trigger=trigger)
        rep = r["report"]
        assert rep["exit"] == "0" and rep["region"] == region, rep
        assert int(rep["bad_payload"]) == 0 and int(rep["malformed"]) == 0, rep
        lines = acknowledged(self.g.console_text(mark), kind)
        assert lines and min(lines) == first, sorted(lines)[:3]
        r["acks"] = range(first, max(lines) + 1)
        r["garbled"] = len(r["acks"]) - len(lines)
        r["delay"] = delay
        return r


def cycle_stats(test: str, seed: int, cycle: int, r: dict, checked: int, lost: int, t0: float) -> dict:
    """One cycle's numbers (printed, and appended to $RAPILOG_CRASH_STATS as a
    JSON line for tests/crash/summary.py)."""
    stats = dict(test=test, seed=seed, cycle=cycle, delay=r["delay"], acknowledged=len(r["acks"]),
                 garbled_lines=r["garbled"], checked=checked, replayed=int(r["report"]["applied"]), lost=lost,
                 panic_to_report=r["panic_to_report"], panic_to_up=r["panic_to_up"],
                 cycle_s=time.monotonic() - t0)
    print("cycle: " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in stats.items()))
    if STATS:
        with open(STATS, "a") as f:
            f.write(json.dumps(stats) + "\n")
    return stats


def rng(name: str) -> tuple[random.Random, int]:
    """A seeded random generator; the seed comes from $RAPILOG_CRASH_SEED or
    the clock and is printed, so a failure can be replayed."""
    seed = int(os.environ.get("RAPILOG_CRASH_SEED") or time.time_ns() % 1_000_000_007)
    print(f"{name}: seed {seed} (RAPILOG_CRASH_SEED={seed} replays the same panic delays)")
    return random.Random(seed), seed
