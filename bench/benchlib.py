"""Parsers, statistics and tables for `make bench` (Python stdlib only).

Everything here is pure: it turns the text the guest printed (fio JSON,
pgbench and pg_test_fsync output, /sys/block/*/stat lines) into numbers and
the numbers into tables and CSV rows. bench/run.py drives the guest;
tests/host/test_bench.py tests this module without QEMU.
"""
from __future__ import annotations

import csv
import io
import json
import re
import statistics
from dataclasses import dataclass, field

# Percentiles fio reports (at most 20; enough points for a latency CDF).
FIO_PERCENTILES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9)
FIO_PERCENTILE_ARG = ":".join(f"{p:g}" for p in FIO_PERCENTILES)


# --- fio ----------------------------------------------------------------------------------
@dataclass
class FioResult:
    """One fio job: write IOPS and latency percentiles in microseconds.

    write_lat: total latency of the writes (submission + completion: fio
    --lat_percentiles=1); sync_lat: latency of the fsync/fdatasync calls
    (empty when the job issued none)."""
    name: str
    iops: float
    ios: int
    write_lat: dict[float, float]
    sync_lat: dict[float, float] = field(default_factory=dict)
    sync_ios: int = 0

    def commit_lat(self, pct: float) -> float:
        """Latency of one write + its sync at this percentile: the sum of the
        two phases' percentiles (exact for a constant phase, an upper bound
        for the tail otherwise)."""
        return self.write_lat.get(pct, float("nan")) + self.sync_lat.get(pct, 0.0)


def _fio_json_text(text: str) -> str:
    """fio may print warnings before the JSON document; keep from the first '{'."""
    i = text.find("{")
    if i < 0:
        raise ValueError("no JSON object in fio output: " + text[:200])
    return text[i:]


def _percentiles_us(lat: dict) -> dict[float, float]:
    pct = lat.get("percentile") or {}
    return {float(k): v / 1000.0 for k, v in pct.items()}


def parse_fio_json(text: str) -> list[FioResult]:
    """All jobs of a fio --output-format=json run (one per job, in order)."""
    doc = json.loads(_fio_json_text(text))
    out = []
    for job in doc["jobs"]:
        w = job["write"]
        lat = w.get("lat_ns") or {}
        if not lat.get("percentile"):
            lat = w.get("clat_ns") or {}
        s = job.get("sync") or {}
        slat = s.get("lat_ns") or {}
        out.append(FioResult(
            name=job["jobname"], iops=float(w["iops"]), ios=int(w.get("total_ios", 0)),
            write_lat=_percentiles_us(lat), sync_lat=_percentiles_us(slat),
            sync_ios=int(s.get("total_ios") or slat.get("N") or 0)))
    return out


# --- pgbench and pg_test_fsync -------------------------------------------------------------
@dataclass
class PgbenchResult:
    tps: float
    transactions: int
    latency_ms: float | None
    failed: int = 0


def parse_pgbench(text: str) -> PgbenchResult:
    """pgbench's summary: tps (without initial connection time), number of
    transactions processed, average latency."""
    m = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", text, re.M)
    if not m:  # older pgbench: "tps = X (excluding connections establishing)"
        m = re.search(r"^tps = ([0-9.]+) \(excluding", text, re.M)
    if not m:
        raise ValueError("no tps line in pgbench output:\n" + text[-1000:])
    n = re.search(r"^number of transactions actually processed: (\d+)", text, re.M)
    lat = re.search(r"^latency average = ([0-9.]+) ms", text, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    return PgbenchResult(tps=float(m.group(1)), transactions=int(n.group(1)) if n else 0,
                         latency_ms=float(lat.group(1)) if lat else None,
                         failed=int(failed.group(1)) if failed else 0)


def parse_pg_test_fsync(text: str) -> dict[str, tuple[float, float]]:
    """Methods of pg_test_fsync's "one 8kB write" section:
    {method: (ops/sec, usecs/op)}. Methods the platform lacks ("n/a") are
    left out."""
    sec = re.search(r"Compare file sync methods using one 8kB write:(.*?)(?:\n\s*\n\S|\Z)", text, re.S)
    if not sec:
        raise ValueError("no 'one 8kB write' section in pg_test_fsync output:\n" + text[:1000])
    out = {}
    for m in re.finditer(r"^\s+(\S+)(?: \*)?\s+([0-9.]+) ops/sec\s+([0-9.]+) usecs/op", sec.group(1), re.M):
        out[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    if not out:
        raise ValueError("no method results in pg_test_fsync's 8kB section:\n" + sec.group(1))
    return out


# --- /sys/block/*/stat ---------------------------------------------------------------------
@dataclass
class DiskStat:
    writes: int  # write requests completed
    sectors: int  # 512-byte sectors written
    flushes: int  # flush requests completed (0 on kernels without the field)


def parse_diskstat(line: str) -> DiskStat:
    """One /sys/block/NAME/stat line (Documentation/block/stat.rst: field
    5 write I/Os, 7 sectors written, 16 flush requests)."""
    f = [int(x) for x in line.split()]
    if len(f) < 11:
        raise ValueError(f"short /sys/block stat line: {line!r}")
    return DiskStat(writes=f[4], sectors=f[6], flushes=f[15] if len(f) >= 16 else 0)


def diskstat_delta(before: DiskStat, after: DiskStat) -> DiskStat:
    return DiskStat(after.writes - before.writes, after.sectors - before.sectors,
                    after.flushes - before.flushes)


def writeback_efficiency(delta: DiskStat, transactions: int) -> dict[str, float]:
    """Disk writes per committed transaction and average write size (KiB)."""
    return {
        "writes_per_txn": delta.writes / transactions if transactions else float("nan"),
        "avg_write_kib": delta.sectors * 512 / 1024 / delta.writes if delta.writes else float("nan"),
        "kib_per_txn": delta.sectors * 512 / 1024 / transactions if transactions else float("nan"),
        "flushes_per_txn": delta.flushes / transactions if transactions else float("nan"),
    }


# --- disk image ------------------------------------------------------------------------------
def mbr(partitions: list[tuple[int, int]]) -> bytes:
    """A 512-byte MBR with primary Linux partitions [(start LBA, sectors)]
    (the log disk is cut on the host: the rootfs has no sfdisk)."""
    if len(partitions) > 4:
        raise ValueError("an MBR holds 4 primary partitions")
    sec = bytearray(512)
    for i, (start, count) in enumerate(partitions):
        e = 446 + 16 * i
        # No CHS addressing: 0xfe/0xff/0xff, as partitioners write beyond 8 GiB.
        sec[e:e + 16] = (bytes([0, 0xFE, 0xFF, 0xFF, 0x83, 0xFE, 0xFF, 0xFF]) +
                         start.to_bytes(4, "little") + count.to_bytes(4, "little"))
    sec[510:512] = b"\x55\xaa"
    return bytes(sec)


# --- statistics and tables -------------------------------------------------------------------
def median(xs) -> float:
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b and a == a and b == b else float("nan")


def fmt(x: float, digits: int = 3) -> str:
    """A number for a table: 3 significant digits, '-' for missing."""
    if x is None or x != x:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits - 1}g}"


def fmt_ratio(x: float) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table; text columns left-aligned, numbers right."""
    cells = [header] + rows
    w = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    num = [i > 0 and all(re.match(r"^[-0-9.,]+x?$", str(r[i])) for r in rows) for i in range(len(header))]
    def line(r):
        return "| " + " | ".join(str(c).rjust(w[i]) if num[i] else str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"
    sep = "|" + "|".join(("-" * (w[i] + 1) + ":") if num[i] else ("-" * (w[i] + 2)) for i in range(len(header))) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def to_csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(header)
    for r in rows:
        wr.writerow(["" if (isinstance(x, float) and x != x) else x for x in r])
    return buf.getvalue()


def fio_table(results: dict[str, dict[str, FioResult]], devices: list[str], ref: str = "brd") -> tuple[str, list[list]]:
    """results[device]["qd1"|"qd32"] -> (markdown table, CSV rows).

    QD1: write+fsync latency (sum of the phases' percentiles, see
    FioResult.commit_lat) and commits/s. QD32: write latency and IOPS.
    Ratios are to `ref` (latency: device/ref, so >1 is slower; IOPS:
    device/ref)."""
    header = ["device", "QD1 p50 µs", "QD1 p99 µs", "QD1 IOPS", "QD1 p50 / brd", "QD1 IOPS / brd",
              "QD32 p50 µs", "QD32 p99 µs", "QD32 IOPS", "QD32 p50 / brd", "QD32 IOPS / brd"]
    rows, csv_rows = [], []
    r = results.get(ref, {})
    for dev in devices:
        if dev not in results:
            continue
        d = results[dev]
        cells, raw = [dev], [dev]
        for qd in ("qd1", "qd32"):
            x, b = d.get(qd), r.get(qd)
            if x is None:
                cells += ["-"] * 5
                raw += [float("nan")] * 5
                continue
            lat = x.commit_lat if qd == "qd1" else (lambda p, x=x: x.write_lat.get(p, float("nan")))
            blat = (b.commit_lat if qd == "qd1" else (lambda p, b=b: b.write_lat.get(p, float("nan")))) if b else None
            p50, p99 = lat(50.0), lat(99.0)
            r50 = ratio(p50, blat(50.0)) if blat else float("nan")
            riops = ratio(x.iops, b.iops) if b else float("nan")
            cells += [fmt(p50), fmt(p99), fmt(x.iops), fmt_ratio(r50), fmt_ratio(riops)]
            raw += [p50, p99, x.iops, r50, riops]
        rows.append(cells)
        csv_rows.append(raw)
    return markdown_table(header, rows), [header] + csv_rows


def pgbench_summary(runs: list[dict]) -> dict[tuple[str, str, int], float]:
    """Median TPS per (profile, config, clients) over repetitions.
    runs: dicts with keys profile, config, clients, tps."""
    groups: dict[tuple[str, str, int], list[float]] = {}
    for r in runs:
        groups.setdefault((r["profile"], r["config"], int(r["clients"])), []).append(float(r["tps"]))
    return {k: median(v) for k, v in groups.items()}


def pgbench_table(summary: dict[tuple[str, str, int], float], profile: str, configs: list[str],
                  clients: list[int], sync: str = "a", async_: str = "b",
                  shared: dict[str, str] | None = None) -> tuple[str, list[list]]:
    """TPS per client count for each configuration, with the ratios of every
    other configuration to `sync` (a) and to `async_` (b).
    shared: {config: profile} for configurations measured once for every
    profile (brd does not depend on the disk)."""
    shared = shared or {}
    def tps(c, n):
        return summary.get((shared.get(c, profile), c, n), float("nan"))
    others = [c for c in configs if c not in (sync, async_)]
    header = ["clients"] + [f"({c}) TPS" for c in configs] + \
        [f"{c}/{sync}" for c in others] + [f"{c}/{async_}" for c in others]
    rows, csv_rows = [], []
    for n in clients:
        vals = [tps(c, n) for c in configs]
        ra = [ratio(tps(c, n), tps(sync, n)) for c in others]
        rb = [ratio(tps(c, n), tps(async_, n)) for c in others]
        rows.append([str(n)] + [fmt(v) for v in vals] + [fmt_ratio(x) for x in ra + rb])
        csv_rows.append([profile, n] + vals + ra + rb)
    return markdown_table(header, rows), [["profile"] + header] + csv_rows


def fsync_table(results: dict[tuple[str, str], dict[str, tuple[float, float]]], order: list[tuple[str, str]],
                ref: tuple[str, str], method: str = "fdatasync") -> tuple[str, list[list]]:
    """pg_test_fsync's `method` (8 kB write + fdatasync) per (profile, device),
    latency ratio to `ref` (brd)."""
    header = ["profile", "device", f"{method} ops/s", "µs/op", "latency / brd"]
    base = results.get(ref, {}).get(method)
    rows, csv_rows = [], []
    for key in order:
        m = results.get(key, {}).get(method)
        if not m:
            continue
        r = ratio(m[1], base[1]) if base else float("nan")
        rows.append([key[0], key[1], fmt(m[0]), fmt(m[1]), fmt_ratio(r)])
        csv_rows.append([key[0], key[1], m[0], m[1], r])
    return markdown_table(header, rows), [header] + csv_rows
