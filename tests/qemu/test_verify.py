"""Writeback never writes a record it cannot verify (issue 16, item 1).

Guest RAM is a file shared with the host, so the host corrupts the region
from outside, as a flipped bit or a stray DMA would: numbered 4 KiB blocks
(tests/tools/rlio.rs, rapilog_harness/crashload.py `block`) are written to
/dev/rapilog0 and held in the region by writeback_delay_ms=60000, then the
host flips one byte of one record's payload in guest RAM
(`crashload.find_record_seq` locates it through the descriptor table).

- A drain (the control device's drain ioctl, through `rlio drain`, which
  does not depend on the status block's version) writes every other block
  and never the corrupted bytes: the host reads the log disk image. The
  drain fails with EIO; the kernel log names the record once (sequence
  number, sectors, the CRC-32C its descriptor says and the one found);
  `rapilogctl status` says AT RISK and names it; reads of its sectors fail
  with EIO; the region still holds it (`inspect --live`, and the host's
  view of guest RAM). `rapilogctl skip-bad-record` refuses another number,
  then drops it; writeback continues and later writes reach the disk.
- Ordinary writeback (started by the dirty threshold, not a drain) stops
  its batch just before the bad record: what precedes it is on the disk,
  the tail is at it, nothing after it is written, until it is skipped.
- An orderly power-off and the power-fail (NMI) drain each write every
  block but the bad one and name it, and the machine goes down.
- A corruption that comes and goes (the host toggles a byte of 24 records
  while a drain runs) never reaches the disk: each record is checked over
  the bytes its disk write carries, so a victim is either written intact or
  caught; with a check of the region before the copy it reached the disk
  flipped in 4 of 4 control runs.

Control run: with the module of a tree without the check
(`RAPILOG_KO=... pytest tests/qemu/test_verify.py`), both tests fail at
their disk check ("the corrupted record reached the log disk"), which comes
before anything that reads the status block: the drain, and ordinary
writeback, copy the corrupted block onto the disk.
"""
import hashlib
import json
import mmap
import re
import threading
import time

import pytest

from rapilog_harness import Disk, parse_memmap, scaled
from rapilog_harness.crashload import BLOCK, block, find_record_seq, rlio_binary

REGION = "64M$0x60000000"
REGION_START, REGION_SIZE = parse_memmap(REGION)
REGION_PARAM = "64M@0x60000000"
KO = "/lib/modules/KREL/extra/rapilog.ko"
INSMOD = "insmod /lib/modules/$(uname -r)/extra/rapilog.ko"
SERIAL = "rl-log"
SLOTS = 64     # 4 KiB slots the numbered writer wraps over
COUNT = 32     # blocks 0..31 in slots 0..31
VICTIM = 20    # the block whose record the host corrupts
FLIP_AT = 1000  # byte of its payload
# The race with writeback's copy (test_a_corruption_that_comes_and_goes_...):
RACE_BLOCKS = 1024                        # numbered blocks 0..1023 in slots 0..1023 (4 MiB)
RACE_WHOLE = range(7, RACE_BLOCKS, 64)    # 16 victims that are whole 4 KiB records
RACE_TRIPLES = 8                          # 12 KiB records at slots 1026 + 6k, their middle rewritten
RACE_SLOTS = 2048                         # block n goes to slot n % 2048
TRIPLES = "/usr/lib/rapilog-test/triples"  # the triples' data, in the guest


def triple_slot(k: int) -> int:
    """A multiple of 3, so that dd's bs=12 KiB seek reaches it."""
    return RACE_BLOCKS + 2 + 6 * k


def triple(k: int) -> bytes:
    """The 12 KiB record written at slot triple_slot(k): three numbered blocks."""
    return b"".join(block(triple_slot(k) + i) for i in range(3))


def crc32c(data: bytes) -> int:
    """Standard CRC-32C (Castagnoli), as FORMAT.md defines it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.fixture
def g(guest_factory, module_path, ctl_bin, tmp_path):
    disk = tmp_path / "log.img"
    triples = tmp_path / "triples"
    triples.write_bytes(b"".join(triple(k) for k in range(RACE_TRIPLES)))
    g = guest_factory(memmap=REGION, ram_file=True, disks=[Disk(disk, serial=SERIAL, size="64M")],
                      files={KO: module_path, "/usr/bin/rlio": rlio_binary(), "/bin/rapilogctl": ctl_bin,
                             TRIPLES: triples})
    g.boot()
    g.disk_file = disk
    g.dev = g.check(f"disk-by-serial {SERIAL}").strip()
    return g


def load(g) -> None:
    g.check("echo on > /proc/sys/kernel/printk_devkmsg && dmesg -c > /dev/null")
    rc, out = g.run(f"{INSMOD} region={REGION_PARAM} backing={g.dev} writeback_delay_ms=60000",
                    timeout=scaled(120))
    assert rc == 0, out + g.check("dmesg")


def status(g) -> dict:
    rc, out = g.run("rapilogctl status --json 2>/tmp/status.err")
    assert rc == 0, out + g.run("cat /tmp/status.err")[1]
    return json.loads(out)


def disk_slot(g, n: int) -> bytes:
    with open(g.disk_file, "rb") as f:
        f.seek(n * BLOCK)
        return f.read(BLOCK)


def corrupt_victim(g) -> tuple[int, int, int]:
    """Flips one payload byte of block VICTIM's record in guest RAM; returns
    (seq, CRC-32C the descriptor says, CRC-32C of what the region holds)."""
    seq, addr, length = find_record_seq(g, REGION_START, VICTIM * BLOCK // 512)
    assert length == BLOCK and g.read_phys(addr, length) == block(VICTIM)
    flip = addr + FLIP_AT
    g.write_phys(flip, bytes([g.read_phys(flip, 1)[0] ^ 0xFF]))
    corrupted = g.read_phys(addr, length)
    assert corrupted != block(VICTIM)
    g.corrupted, g.victim_addr = corrupted, addr
    return seq, crc32c(block(VICTIM)), crc32c(corrupted)


def bad_lines_in(text: str, seq: int) -> list[str]:
    return re.findall(rf"writeback: record seq {seq} \(sectors [^\n]*failed its check[^\n]*", text)


def bad_lines(g, seq: int) -> list[str]:
    return bad_lines_in(g.check("dmesg"), seq)


def wait_for(g, what: str, probe, pred, timeout: float = 120):
    """Polls probe() until pred(value) holds; returns the value."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = probe()
        if pred(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s: {value}\n{g.check('dmesg')}")
        time.sleep(0.5)


def wait_status(g, what: str, pred, timeout: float = 120) -> dict:
    return wait_for(g, what, lambda: status(g), pred, timeout)


def test_a_corrupted_record_is_never_written_reported_and_held_until_skipped(g):
    load(g)
    g.check(f"rlio numbered /dev/rapilog0 0 {SLOTS} {COUNT}", timeout=scaled(60))
    assert all(disk_slot(g, n) == bytes(BLOCK) for n in range(COUNT)), "written back before the test began"
    seq, expected, found = corrupt_victim(g)
    sector = VICTIM * BLOCK // 512

    # A drain: everything but the corrupted record reaches the disk.
    rc, out = g.run("rlio drain /dev/rapilog-ctl", timeout=scaled(120))
    print(out)
    for n in range(COUNT):
        got = disk_slot(g, n)
        if n == VICTIM:
            assert got != g.corrupted, "the corrupted record reached the log disk"
            assert got == bytes(BLOCK), f"slot {n}: something was written for the bad record"
        else:
            assert got == block(n), f"slot {n}: block {n} is not on the disk"
    assert disk_slot(g, COUNT) == bytes(BLOCK)
    assert (rc, out.strip()) == (1, "drain: Input/output error (os error 5)"), out

    # Logged once, with what an administrator needs.
    lines = bad_lines(g, seq)
    assert len(lines) == 1, g.check("dmesg")
    assert (f"(sectors {sector}..{sector + 8} of backing={g.dev}) failed its check: payload CRC-32C "
            f"{found:#010x}, its descriptor says {expected:#010x}") in lines[0], lines[0]
    assert f"`rapilogctl skip-bad-record {seq}` drops it" in lines[0], lines[0]

    # The status names it: AT RISK whatever else holds, the tail held at it.
    s = status(g)
    print(s["verdict"]["line"])
    assert s["verdict"]["level"] == "at_risk", s["verdict"]
    assert any(p.startswith(f"writeback held at bad record seq {seq} (sectors {sector}..{sector + 8}, "
                            "payload checksum mismatch)") for p in s["verdict"]["problems"]), s["verdict"]
    b = s["bad_record"]
    assert (b["seq"], b["sector"], b["length"], b["reason"]) == (seq, sector, BLOCK, "payload_checksum"), b
    assert (b["expected_crc"], b["found_crc"]) == (f"{expected:#010x}", f"{found:#010x}"), b
    assert s["flags"]["writeback_held"] and s["writeback"]["bad_records"] == 1, s
    ring = s["ring"]
    assert ring["tail_seq"] == ring["durable_tail"] == seq, ring
    # It and the records after it stay in the region (those are on the disk
    # too); only it is dirty.
    assert ring["live_records"] == COUNT - VICTIM and ring["dirty_bytes"] == BLOCK, ring
    rc, out = g.run("rapilogctl status")
    assert rc == 0 and out.startswith("AT RISK: ") and f"\nbad record    seq {seq}, sectors" in out, out
    rc, out = g.run("rapilogctl flush")
    assert rc == 1 and f"except bad record seq {seq} (sectors {sector}..{sector + 8}" in out, out

    # Reads of its sectors fail; the others are served.
    rc, out = g.run(f"dd if=/dev/rapilog0 of=/dev/null bs={BLOCK} skip={VICTIM} count=1 iflag=direct")
    assert rc != 0 and "Input/output error" in out, out
    for n in (VICTIM - 1, VICTIM + 1):
        got = g.check(f"dd if=/dev/rapilog0 bs={BLOCK} skip={n} count=1 iflag=direct 2>/dev/null | sha256sum")
        assert got.split()[0] == hashlib.sha256(block(n)).hexdigest(), n

    # The evidence is kept: in the region, and decoded by rapilogctl.
    assert g.read_phys(g.victim_addr, BLOCK) == g.corrupted
    rc, out = g.run("rapilogctl inspect --live --json")
    assert rc == 1, out  # a damaged record
    rec = [r for r in json.loads(out)["records"] if r["seq"] == seq]
    assert rec and (rec[0]["decision"], rec[0]["reason"]) == ("skip", "bad_payload_checksum"), rec

    # Skipping: the number must be the held record's.
    rc, out = g.run(f"rapilogctl skip-bad-record {seq + 1}")
    assert rc == 1 and f"holds at bad record seq {seq}, not {seq + 1}" in out, out
    assert status(g)["bad_record"]["seq"] == seq
    g.check("dmesg -c > /dev/null")
    rc, out = g.run(f"rapilogctl skip-bad-record {seq}")
    print(out)
    assert rc == 0 and f"skipped bad record seq {seq}" in out and "writeback continues" in out, out
    assert f"bad record seq {seq} (sectors {sector}..{sector + 8} of backing={g.dev}) skipped by an administrator" \
        in g.check("dmesg")
    # Writeback continues: the region empties without a drain.
    s = wait_status(g, "the tail passes the skipped record", lambda s: s["ring"]["live_records"] == 0)
    assert s["bad_record"] is None and not s["flags"]["writeback_held"], s
    assert s["verdict"]["level"] == "at_risk"  # no crash kernel in this guest, nothing else
    assert "region corruption: 1 record failed writeback's check since load (1 skipped)" in s["verdict"]["problems"]
    rc, out = g.run(f"rapilogctl skip-bad-record {seq}")
    assert rc == 1 and "holds at no bad record" in out, out
    # Its sectors read what the disk holds.
    got = g.check(f"dd if=/dev/rapilog0 bs={BLOCK} skip={VICTIM} count=1 iflag=direct 2>/dev/null | sha256sum")
    assert got.split()[0] == hashlib.sha256(bytes(BLOCK)).hexdigest()

    # Later writes reach the disk, the victim's slot included.
    g.check(f"rlio numbered /dev/rapilog0 {COUNT} {SLOTS} 8 && rlio numbered /dev/rapilog0 {VICTIM + SLOTS} {SLOTS} 1")
    rc, out = g.run("rapilogctl flush")
    assert rc == 0, out
    for n in range(COUNT, COUNT + 8):
        assert disk_slot(g, n) == block(n), f"block {n} not on the disk"
    assert disk_slot(g, VICTIM) == block(VICTIM + SLOTS)
    assert len(bad_lines(g, seq)) == 0  # not reported again
    g.check("dmesg -c > /dev/null && rmmod rapilog", timeout=scaled(120))
    log = g.check("dmesg")
    assert "not written back" not in log and "1 bad records (1 skipped)" in log, log


def test_ordinary_writeback_stops_just_before_a_bad_record_and_holds(g):
    load(g)
    g.check(f"rlio numbered /dev/rapilog0 0 {SLOTS} {COUNT}", timeout=scaled(60))
    seq, _, _ = corrupt_victim(g)
    # Dirty data past an eighth of the ring (7.9 MiB) starts ordinary
    # writeback, not a drain: 2048 more numbered blocks (8 MiB) in slots
    # 4096.. (16 MiB on), far from the first ones.
    more, first_more = 2048, 4096
    g.check(f"rlio numbered /dev/rapilog0 {first_more} {first_more + more} {more}", timeout=scaled(300))
    # Slots 0..31 are one contiguous run: without the check, block 20
    # (corrupted) would go to the disk in the same write as block 19.
    wait_for(g, "writeback writes what precedes the bad record", lambda: disk_slot(g, VICTIM - 1),
             lambda got: got == block(VICTIM - 1))
    assert disk_slot(g, VICTIM) != g.corrupted, "the corrupted record reached the log disk"
    s = wait_status(g, "writeback stops at the bad record", lambda s: s["ring"]["tail_seq"] == seq)
    assert s["bad_record"]["seq"] == seq and s["ring"]["durable_tail"] == seq, s
    assert not s["flags"]["draining"], s["flags"]
    # The batch stopped just before it: what precedes it is on the disk,
    # nothing from it on.
    for n in range(COUNT):
        want = block(n) if n < VICTIM else bytes(BLOCK)
        assert disk_slot(g, n) == want, f"slot {n}"
    # Held: however much is dirty, no further batch (writers would wait
    # once the ring is full).
    s = status(g)
    assert s["writeback"]["records"] == VICTIM, s["writeback"]
    assert s["ring"]["live_records"] == COUNT - VICTIM + more, s["ring"]
    assert s["ring"]["dirty_bytes"] == (COUNT - VICTIM + more) * BLOCK, s["ring"]
    assert all(disk_slot(g, n) == bytes(BLOCK) for n in range(first_more, first_more + more, 97))
    rc, out = g.run(f"rapilogctl skip-bad-record {seq}")
    assert rc == 0 and "writeback continues" in out, out
    s = wait_status(g, "writeback goes on after the skip", lambda s: s["ring"]["live_records"] == 0)
    for n in list(range(COUNT)) + list(range(first_more, first_more + more, 97)):
        want = bytes(BLOCK) if n == VICTIM else block(n)
        assert disk_slot(g, n) == want, f"slot {n}"
    assert s["writeback"]["records"] == COUNT - 1 + more, s["writeback"]


def held_stop_guest(g, options: str = "") -> tuple[int, int]:
    """Loads, acknowledges blocks 0..COUNT-1 (only in the region) and
    corrupts block VICTIM's record; returns (its seq, sector)."""
    g.check("echo on > /proc/sys/kernel/printk_devkmsg && dmesg -c > /dev/null")
    g.check(f"{INSMOD} region={REGION_PARAM} backing={g.dev} writeback_delay_ms=60000 {options}",
            timeout=scaled(120))
    g.check(f"rlio numbered /dev/rapilog0 0 {SLOTS} {COUNT}", timeout=scaled(60))
    assert all(disk_slot(g, n) == bytes(BLOCK) for n in range(COUNT)), "written back before the stop"
    seq, _, _ = corrupt_victim(g)
    return seq, VICTIM * BLOCK // 512


def every_block_but_the_victim(g) -> None:
    for n in range(COUNT):
        got = disk_slot(g, n)
        assert got != g.corrupted, "the corrupted record reached the log disk"
        assert got == (bytes(BLOCK) if n == VICTIM else block(n)), f"slot {n}"


def test_power_off_with_a_bad_record_writes_everything_else_and_names_it(g):
    """An orderly stop cannot finish while a record is bad: it writes every
    other record past it, says so, and the machine goes down."""
    seq, sector = held_stop_guest(g)
    mark = g.console_mark()
    g.send("poweroff -f")
    m = g.wait_console(r"rapilog: shutdown drain \(power-off\) done in [0-9.]+ ms except bad record seq (\d+) "
                       r"\(sectors (\d+)\.\.(\d+)\)[^\n]*not marked clean[^\n]*new writes are held",
                       scaled(60), since=mark)
    print(m.group(0))
    assert (int(m.group(1)), int(m.group(2)), int(m.group(3))) == (seq, sector, sector + 8), m.group(0)
    assert len(bad_lines_in(g.console_text(mark), seq)) == 1
    g.wait_exit(scaled(120))
    every_block_but_the_victim(g)


def test_power_fail_drain_writes_everything_else_and_completes(g):
    """The power-fail drain has milliseconds: it does not stop at a bad
    record (handing over to the crash kernel would lose every record after
    it); it writes the others, names the bad one and completes."""
    # A generous bandwidth, so that the dirty bound admits the blocks
    # without writeback (they must all be only in the region).
    seq, sector = held_stop_guest(g, "powerfail=nmi drain_kib_per_sec=1000000")
    mark = g.console_mark()
    g.inject_nmi()
    g.wait_console(r"power-fail drain complete: \d+ bytes written back", scaled(60), since=mark)
    console = g.console_text(mark)
    g.kill()  # the power is gone
    m = re.search(rf"power-fail drain: bad record seq {seq} \(sectors {sector}\.\.{sector + 8}\) failed its check "
                  rf"and is not on backing={g.dev}; every other acknowledged write is[^\n]*", console)
    assert m, console[-3000:]
    assert len(bad_lines_in(console, seq)) == 1, console[-3000:]
    every_block_but_the_victim(g)


def test_a_corruption_that_comes_and_goes_while_writeback_copies_never_reaches_the_disk(g):
    """Writeback checks each record against its descriptor's CRC-32C over
    the very bytes its disk write carries (the bounce copy), not over the
    region before or after copying: so a corruption can never slip in
    between a check and a copy. The host toggles one payload byte of 24
    records (16 whole 4 KiB records, 8 12 KiB records whose middle block a
    newer record rewrote: those are checked over their copied blocks and
    the region's rest) between its published and a flipped value, every
    ~0.2 ms, for as long as a drain of 4.2 MiB runs. Each of them must end
    either on the disk intact (its copy was clean) or not written and
    counted bad (its copy caught the flip); never flipped on the disk.
    Every other block must be on the disk.

    Control run: with the module of a tree that checked every record from
    the region before copying any (RAPILOG_KO=...), the check and the copy
    of a victim are tens of milliseconds apart and see the byte
    independently: about a quarter of the victims reach the disk flipped
    ("the corrupted copy of block N reached the log disk")."""
    load(g)
    g.check(f"rlio numbered /dev/rapilog0 0 {RACE_SLOTS} {RACE_BLOCKS}", timeout=scaled(300))
    # One 12 KiB write each (one record), then a newer record for its middle.
    g.check(" && ".join(f"dd if={TRIPLES} of=/dev/rapilog0 bs={3 * BLOCK} skip={k} seek={triple_slot(k) // 3} "
                        "count=1 oflag=direct 2>/dev/null" for k in range(RACE_TRIPLES)))
    g.check(" && ".join(f"rlio numbered /dev/rapilog0 {triple_slot(k) + 1 + RACE_SLOTS} {RACE_SLOTS} 1"
                        for k in range(RACE_TRIPLES)))
    expected = {n: block(n) for n in range(RACE_BLOCKS)}
    for k in range(RACE_TRIPLES):
        t = triple_slot(k)
        expected |= {t: block(t), t + 1: block(t + 1 + RACE_SLOTS), t + 2: block(t + 2)}
    assert all(disk_slot(g, n) == bytes(BLOCK) for n in (0, triple_slot(0))), "written back before the test began"

    # The victims: the record of each whole block, of each triple's first
    # block (the triple's record: 12 KiB, the byte in its first block).
    victims = {}
    for n in list(RACE_WHOLE) + [triple_slot(k) for k in range(RACE_TRIPLES)]:
        seq, addr, length = find_record_seq(g, REGION_START, n * BLOCK // 512)
        assert length == (BLOCK if n < RACE_BLOCKS else 3 * BLOCK), (n, length)
        assert g.read_phys(addr, BLOCK) == block(n), f"block {n} is not where its descriptor says"
        victims[n] = (seq, g.phys_offset(addr + FLIP_AT))

    stop = threading.Event()
    toggles = [0]

    def flicker():
        with open(g.ram_file, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
            original = {o: m[o] for _, o in victims.values()}
            while not stop.is_set():
                for o in original:
                    m[o] ^= 0xFF
                toggles[0] += 1
                time.sleep(0.0002)
            for o, b in original.items():
                m[o] = b

    t = threading.Thread(target=flicker, daemon=True)
    t.start()
    try:
        rc, out = g.run("rlio drain /dev/rapilog-ctl", timeout=scaled(300))
    finally:
        stop.set()
        t.join()
    print(out, f"({toggles[0]} toggles)")
    assert toggles[0] > 100, "the corruption did not come and go during the drain"

    # The slots of each victim's record: a whole block; a triple's first
    # and last block (a newer record holds its middle).
    slots_of = {n: [n] if n < RACE_BLOCKS else [n, n + 2] for n in victims}
    of_victim = {slot: n for n, slots in slots_of.items() for slot in slots}
    missing = []
    for n, want in sorted(expected.items()):
        got = disk_slot(g, n)
        if got == want:
            continue
        assert n in of_victim, f"slot {n}: block not on the disk"
        flipped = bytearray(want)
        flipped[FLIP_AT] ^= 0xFF
        assert got != bytes(flipped), f"the corrupted copy of block {n} reached the log disk"
        assert got == bytes(BLOCK), f"slot {n}: neither block {n} nor what the disk held"
        if n == of_victim[n]:
            missing.append(n)
    # A record not written is not written at all, never in part.
    for n in missing:
        assert all(disk_slot(g, slot) == bytes(BLOCK) for slot in slots_of[n]), f"record of slot {n} written in part"
    s = status(g)
    print(f"{len(missing)} of {len(victims)} victims caught in their copy, the others written intact")
    assert s["writeback"]["bad_records"] == len(missing), (missing, s["writeback"])
    if missing:
        assert (rc, out.strip()) == (1, "drain: Input/output error (os error 5)"), out
        assert s["bad_record"]["seq"] == min(victims[n][0] for n in missing), s["bad_record"]
        # Logged (rate limited: not necessarily one line each).
        assert any(bad_lines(g, victims[n][0]) for n in missing), g.check("dmesg")
    else:
        assert rc == 0, out
