"""bench/benchlib.py: the parsers and tables of `make bench`, without QEMU."""
import math
from pathlib import Path

import pytest

import benchlib as bl  # bench/benchlib.py (tests/pytest.ini puts bench/ on sys.path)

DATA = Path(__file__).resolve().parent / "data"

PGBENCH_OUT = """\
pgbench (17.6 (Debian 17.6-0+deb13u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 4
query mode: prepared
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 253
number of failed transactions: 0 (0.000%)
latency average = 78.411 ms
initial connection time = 310.552 ms
tps = 51.013420 (without initial connection time)
"""

PG_TEST_FSYNC_OUT = """\
1 seconds per test
O_DIRECT supported on this platform for open_datasync and open_sync.

Compare file sync methods using one 8kB write:
(in "wal_sync_method" preference order, except fdatasync is Linux's default)
        open_datasync                       201.204 ops/sec    4970 usecs/op
        fdatasync                           200.112 ops/sec    4997 usecs/op
        fsync                               100.550 ops/sec    9945 usecs/op
        fsync_writethrough                              n/a
        open_sync                           198.931 ops/sec    5027 usecs/op

Compare file sync methods using two 8kB writes:
(in "wal_sync_method" preference order, except fdatasync is Linux's default)
        open_datasync                       100.000 ops/sec   10000 usecs/op
        fdatasync                           150.000 ops/sec    6667 usecs/op
"""


def test_fio_json_with_leading_warning():
    [r] = bl.parse_fio_json((DATA / "fio-qd1.json").read_text())
    assert r.name == "qd1"
    assert r.iops > 0 and r.ios > 0
    assert set(bl.FIO_PERCENTILES) <= set(r.write_lat)
    assert r.write_lat[50.0] == pytest.approx(156.672)  # ns -> µs, total latency (lat_ns)
    assert r.sync_lat[99.0] == pytest.approx(96.768)
    assert r.commit_lat(50.0) == pytest.approx(156.672 + 18.816)


def test_fio_falls_back_to_clat_and_no_sync():
    doc = ('{"jobs": [{"jobname": "qd32", "write": {"iops": 100.5, "total_ios": 7, '
           '"clat_ns": {"percentile": {"50.000000": 2000, "99.000000": 9000}}, "lat_ns": {"N": 0}}}]}')
    [r] = bl.parse_fio_json(doc)
    assert r.write_lat == {50.0: 2.0, 99.0: 9.0} and r.sync_lat == {} and r.commit_lat(99.0) == 9.0


def test_fio_without_json_is_an_error():
    with pytest.raises(ValueError):
        bl.parse_fio_json("fio: failed to open /dev/x")


def test_pgbench():
    r = bl.parse_pgbench(PGBENCH_OUT)
    assert (r.tps, r.transactions, r.latency_ms, r.failed) == (51.01342, 253, 78.411, 0)
    with pytest.raises(ValueError):
        bl.parse_pgbench("pgbench: error: connection to server failed")


def test_pg_test_fsync_reads_the_one_8kb_section_only():
    r = bl.parse_pg_test_fsync(PG_TEST_FSYNC_OUT)
    assert r["fdatasync"] == (200.112, 4997.0)
    assert r["open_sync"] == (198.931, 5027.0)
    assert "fsync_writethrough" not in r
    with pytest.raises(ValueError):
        bl.parse_pg_test_fsync("no such section")


def test_diskstat_and_writeback_efficiency():
    a = bl.parse_diskstat("  133 3 2074 677 10289 1023 868696 344220 0 34548 344899 0 0 0 0 40 5")
    b = bl.parse_diskstat("  133 3 2074 677 10389 1023 869496 344220 0 34548 344899 0 0 0 0 90 9")
    d = bl.diskstat_delta(a, b)
    assert (d.writes, d.sectors, d.flushes) == (100, 800, 50)
    e = bl.writeback_efficiency(d, 50)
    assert e["writes_per_txn"] == 2.0 and e["avg_write_kib"] == 4.0 and e["flushes_per_txn"] == 1.0
    assert math.isnan(bl.writeback_efficiency(bl.DiskStat(0, 0, 0), 0)["writes_per_txn"])
    # A kernel without the discard/flush fields.
    assert bl.parse_diskstat("1 2 3 4 5 6 7 8 9 10 11").flushes == 0


def _fio(iops, p50, p99, s50=0.0, s99=0.0):
    return bl.FioResult("x", iops, 1, {50.0: p50, 99.0: p99}, {50.0: s50, 99.0: s99} if s50 else {})


def test_fio_table_ratios_to_brd():
    res = {"brd": {"qd1": _fio(1000, 10, 20, 5, 10), "qd32": _fio(4000, 100, 200)},
           "rapilog window": {"qd1": _fio(500, 20, 60, 10, 20), "qd32": _fio(2000, 200, 400)},
           "raw 200 IOPS": {"qd1": _fio(200, 5000, 9000, 1, 2)}}
    table, rows = bl.fio_table(res, ["rapilog window", "brd", "raw 200 IOPS", "absent"])
    hdr, rap, brd, raw = rows
    assert hdr[0] == "device" and len(rows) == 4
    assert rap[1:6] == [30, 80, 500, 2.0, 0.5]  # write+fsync p50 30 µs = 2x brd's 15
    assert rap[6:] == [200, 400, 2000, 2.0, 0.5]
    assert brd[4] == 1.0
    assert all(math.isnan(x) for x in raw[6:])  # no QD32 run
    assert "| rapilog window |" in table and "2.00x" in table and table.count("\n") == 4


def test_pgbench_summary_is_a_median_and_table_ratios():
    runs = [{"profile": "200 IOPS", "config": c, "clients": n, "tps": t}
            for c, n, t in [("a", 1, 10), ("a", 1, 30), ("a", 1, 20), ("b", 1, 100), ("c", 1, 90),
                            ("a", 2, 40), ("b", 2, 200), ("c", 2, 220), ("e", 1, 150)]]
    s = bl.pgbench_summary(runs)
    assert s[("200 IOPS", "a", 1)] == 20
    # brd measured under another profile only: shared=.
    table, rows = bl.pgbench_table(s, "600 IOPS", ["a", "b", "c", "e"], [1, 2], shared={"e": "200 IOPS"})
    hdr = rows[0]
    assert hdr == ["profile", "clients", "(a) TPS", "(b) TPS", "(c) TPS", "(e) TPS", "c/a", "e/a", "c/b", "e/b"]
    assert all(math.isnan(x) for x in rows[1][2:5])  # no 600 IOPS runs of a, b, c
    assert rows[1][5] == 150
    table, rows = bl.pgbench_table(s, "200 IOPS", ["a", "b", "c"], [1, 2])
    assert rows[1] == ["200 IOPS", 1, 20, 100, 90, 4.5, 0.9]
    assert rows[2] == ["200 IOPS", 2, 40, 200, 220, 5.5, 1.1]
    assert "4.50x" in table and "0.90x" in table


def test_spread_is_the_largest_distance_from_the_median():
    s = bl.spread([100, 90, 112, float("nan")])
    assert (s["n"], s["min"], s["median"], s["max"]) == (3, 90, 100, 112)
    assert s["spread"] == pytest.approx(0.12)
    assert math.isnan(bl.spread([])["median"])


def _rank_runs(points):
    return [{"config": c, "clients": n, "tps": t} for c, n, tps in points for t in tps]


def test_rank_table_and_verdict_say_what_ranks_and_what_meets_the_targets():
    runs = _rank_runs([("c", 1, [1000, 1050, 980]), ("d", 1, [900, 950, 1000]), ("e", 1, [1000, 1000, 1000]),
                       ("c", 16, [2000, 2100, 1900]), ("d", 16, [2500, 1000, 2400]), ("e", 16, [2200, 2150, 2250])])
    s = bl.rank_summary(runs)
    assert s[("d", 16)]["median"] == 2400 and s[("d", 16)]["spread"] == pytest.approx(1400 / 2400)
    table, rows = bl.rank_table(s, ["c", "d", "e"], [1, 16], "c", ["e", "d"])
    assert rows[0][-2:] == ["c/e", "c/d"]
    assert rows[1][0] == 1 and rows[1][-2:] == [pytest.approx(1.0), pytest.approx(1000 / 950)]
    assert "1,000 [980-1,050] 5%" in table
    lines = bl.rank_verdict(s, [1, 16], "c", {"e": 0.95, "d": 1.0}, {"c": "rapilog", "d": "dm-wc", "e": "brd"})
    assert lines[0].startswith("Repetitions (3 per point) within +-10 % of their median: 5 of 6 points; wider: "
                               "(d) 16 clients +-58 %")
    assert lines[0].endswith("those points do not rank.")
    assert "rapilog / brd: 1: 1.00x, 16: 0.91x (target >= 0.95x at every client count: not met, lowest 0.91x at " \
        "16 clients)" in lines[1]
    assert lines[2].endswith("(target >= 1.00x at every client count: not met, lowest 0.83x at 16 clients)")
    ok = bl.rank_verdict(bl.rank_summary(_rank_runs([("c", 1, [10, 10]), ("e", 1, [10, 10.5])])), [1], "c",
                         {"e": 0.95}, {})
    assert ok[0] == "Repetitions (2 per point) within +-10 % of their median: 2 of 2 points: the table ranks."
    assert "met)" in ok[1] and "not met" not in ok[1]


def test_rank_paired_takes_each_ratio_within_one_round():
    # Round 2 is slow for everyone (host load): the medians' spreads are
    # wide, the within-round ratios are not.
    runs = [{"config": c, "clients": 1, "rep": rep, "tps": t}
            for rep, (c_tps, e_tps) in enumerate([(900, 1000), (880, 1010), (700, 800)])
            for c, t in (("c", c_tps), ("e", e_tps))]
    assert bl.rank_summary(runs)[("c", 1)]["spread"] > 0.2
    paired = bl.rank_paired(runs, "c", ["e", "d"])
    assert set(paired) == {("e", 1)}
    p = paired[("e", 1)]
    assert (p["n"], p["min"], p["median"], p["max"]) == (3, pytest.approx(880 / 1010), pytest.approx(0.875),
                                                         pytest.approx(0.9))
    lines = bl.rank_paired_lines(paired, [1, 16], "c", ["e", "d"], {"c": "rapilog", "e": "brd"})
    assert lines == ["rapilog / brd within each round, median [min-max]: 1: 0.88x [0.87x-0.90x] "
                     "(every point's ratios within +-10 % of their median)"]
    runs[0]["tps"] = 1200
    wide = bl.rank_paired_lines(bl.rank_paired(runs, "c", ["e"]), [1], "c", ["e"], {})
    assert wide[0].endswith("(wider than +-10 % at 1 clients)")


def test_parse_proc_stat_cpu_counts_iowait_as_idle():
    text = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 100 5 50 1000 20 3 2 0 0 0\n"
    assert bl.parse_proc_stat_cpu(text) == (160, 1020)
    with pytest.raises(ValueError):
        bl.parse_proc_stat_cpu("intr 1 2 3")


def test_icount_pg_table_takes_medians_and_ratios_of_instructions():
    runs = [{"device": d, "ns_per_tx": ns, "busy": b, "insns_per_tx": ns * b, "insns_per_tx_with_writeback": w}
            for d, ns, b, w in [("brd", 100000, 0.9, 90000), ("brd", 102000, 0.9, 91800),
                                ("brd", 98000, 0.9, 88200), ("rapilog window", 95000, 1.0, 99000),
                                ("dm-writecache", 120000, 0.75, 110000)]]
    table, rows = bl.icount_pg_table(runs, ["brd", "dm-writecache", "rapilog window", "rapilog off"])
    assert rows[0][5:] == ["/ brd", "/ dm-writecache", "with writeback", "/ brd", "/ dm-writecache"]
    assert [r[0] for r in rows[1:]] == ["brd", "dm-writecache", "rapilog window"]
    assert rows[1][1:5] == [3, 100000, 0.9, pytest.approx(90000)]
    assert rows[3][5:7] == [pytest.approx(95000 / 90000), pytest.approx(95000 / 90000)]
    assert rows[3][7:] == [99000, pytest.approx(1.1), pytest.approx(0.9)]
    assert bl.busy_share((100, 50), (190, 60)) == pytest.approx(0.9)
    assert math.isnan(bl.busy_share((1, 1), (1, 1)))
    assert "| rapilog window |    1 |                   95,000 |    100 |" in table


def test_fsync_table():
    res = {("200 IOPS", "raw"): {"fdatasync": (200.0, 5000.0)}, ("200 IOPS", "brd"): {"fdatasync": (10000.0, 100.0)},
           ("200 IOPS", "rapilog"): {"fdatasync": (5000.0, 200.0)}, ("600 IOPS", "writecache"): {"fsync": (1.0, 1.0)}}
    table, rows = bl.fsync_table(res, list(res), ("200 IOPS", "brd"))
    assert rows[1] == ["200 IOPS", "raw", 200.0, 5000.0, 50.0]
    assert rows[3] == ["200 IOPS", "rapilog", 5000.0, 200.0, 2.0]
    assert len(rows) == 4  # writecache has no fdatasync result


def test_formatting_and_csv():
    assert bl.fmt(float("nan")) == "-" and bl.fmt(12345.6) == "12,346" and bl.fmt(1.234) == "1.23"
    assert bl.fmt(0.01234) == "0.012" and bl.fmt(0) == "0"
    assert bl.fmt_ratio(2.345) == "2.35x" and bl.fmt_ratio(23.45) == "23.4x" and bl.fmt_ratio(234.5) == "234x"
    assert bl.to_csv(["a", "b"], [[1, float("nan")], ["x,y", 2.5]]) == 'a,b\n1,\n"x,y",2.5\n'
    assert bl.median([3, float("nan"), 1, 2]) == 2 and math.isnan(bl.median([]))
    assert math.isnan(bl.ratio(1, 0)) and bl.ratio(3, 2) == 1.5


def test_mbr_partitions():
    m = bl.mbr([(2048, 1 << 20), (2048 + (1 << 20), 1 << 20)])
    assert len(m) == 512 and m[510:] == b"\x55\xaa"
    assert m[446 + 4] == 0x83 and int.from_bytes(m[446 + 8:446 + 12], "little") == 2048
    assert int.from_bytes(m[462 + 8:462 + 12], "little") == 2048 + (1 << 20)
    assert int.from_bytes(m[462 + 12:462 + 16], "little") == 1 << 20
    assert m[478:510] == bytes(32)
    with pytest.raises(ValueError):
        bl.mbr([(1, 1)] * 5)


# --- instruction cost, scaling, drain ---------------------------------------------------------
def _fio_doc(jobs):
    import json
    return "fio: note\n" + json.dumps({"fio version": "fio-3.39", "jobs": jobs})


def _icount_job(name, bs, n, wmean, smean, wmin=1, smin=1, syncs=None):
    return {"jobname": name,
            "write": {"io_bytes": bs * n, "total_ios": n, "iops": 1.0,
                      "slat_ns": {"min": 0, "max": 0, "mean": 0.0, "N": 0},
                      "clat_ns": {"min": wmin, "max": 9, "mean": wmean - 50, "N": n},
                      "lat_ns": {"min": wmin, "max": 9, "mean": wmean, "N": n}},
            "sync": {"total_ios": n if syncs is None else syncs,
                     "lat_ns": {"min": smin, "max": 9, "mean": smean, "N": n if syncs is None else syncs}}}


def test_parse_fio_icount_means_are_instructions():
    [j] = bl.parse_fio_icount(_fio_doc([_icount_job("w4k", 4096, 3000, 6248.5, 3000.25, 6000, 2900)]))
    assert (j.name, j.bs, j.writes, j.syncs) == ("w4k", 4096, 3000, 3000)
    assert j.write_ns == 6248.5 and j.sync_ns == 3000.25  # lat_ns (total), not clat_ns
    assert j.per_write_ns == pytest.approx(9248.75)
    assert (j.write_min_ns, j.sync_min_ns) == (6000, 2900)
    # No fsync: the write alone; no write at all is an error.
    [k] = bl.parse_fio_icount(_fio_doc([_icount_job("w", 65536, 10, 100.0, 0.0, syncs=0)]))
    assert k.bs == 65536 and k.per_write_ns == 100.0
    bad = _icount_job("w", 4096, 1, 1, 1)
    bad["write"].update(total_ios=0, lat_ns={"N": 0}, clat_ns={"N": 0})
    with pytest.raises(ValueError):
        bl.parse_fio_icount(_fio_doc([bad]))


def test_parse_fio_icount_real_output():
    """fio 3.39 under -icount shift=0 in the bench guest: rapilog protect=window,
    4 KiB write + fsync, 3,000 writes (fio prints one fsync fewer)."""
    [j] = bl.parse_fio_icount((DATA / "fio-icount-rapilog-w4k.json").read_text())
    assert (j.name, j.bs, j.writes, j.syncs) == ("w4k", 4096, 3000, 2999)
    assert j.write_ns == pytest.approx(10533.284333) and j.write_clat_ns == pytest.approx(10207.912)
    assert j.sync_ns == pytest.approx(1789.243414)
    assert j.per_write_ns == pytest.approx(12322.527747)
    assert (j.write_min_ns, j.sync_min_ns) == (10321, 1785)


def test_icount_table_runs_and_ratios():
    runs = []
    for dev, w4, w64 in (("brd", 9000, 50000), ("dm-writecache", 12000, 60000), ("rapilog window", 30000, 250000)):
        for rep, d in ((1, 0), (2, 2)):
            runs.append({"device": dev, "job": "w4k", "rep": rep, "write_ns": w4 - 3000 + d, "sync_ns": 3000,
                         "write_clat_ns": w4 - 3300 + d})
            runs.append({"device": dev, "job": "w64k", "rep": rep, "write_ns": w64 - 3000, "sync_ns": 3000})
    table, rows = bl.icount_table(runs, ["brd", "dm-writecache", "rapilog window", "absent"],
                                  [("w4k", "4 KiB"), ("w64k", "64 KiB")])
    hdr = rows[0]
    assert hdr == ["device", "job", "write", "fsync", "write+fsync run 1", "write+fsync run 2",
                   "/ brd", "/ dm-writecache", "clat+fsync"]
    assert len(rows) == 7  # 3 devices x 2 jobs
    rap4 = rows[3]
    assert rap4[:2] == ["rapilog window", "4 KiB"] and rap4[4:6] == [30000, 30002]
    assert rap4[6] == pytest.approx(30001 / 9001) and rap4[7] == pytest.approx(30001 / 12001)
    assert rap4[8] == 29701  # clat (300 below lat) + fsync
    rap64 = rows[6]
    assert math.isnan(rap64[8])  # no clat recorded (older results.json)
    assert rap64[6] == pytest.approx(5.0) and rap64[7] == pytest.approx(250000 / 60000)
    assert "| rapilog window | 64 KiB |" in table and "30,002" in table and "5.00x" in table
    assert bl.icount_spread(runs) == pytest.approx(2 / 9000)
    assert bl.fmt_int(float("nan")) == "-" and bl.fmt_int(9248.6) == "9,249"


def test_scaling_ratios_and_line():
    fio = {"rapilog window": {"qd1": {"iops": 1000.0}, "qd32": {"iops": 3000.0}},
           "dm-writecache": {"qd1": _fio(2000, 1, 1), "qd32": _fio(8000, 1, 1)},
           "brd": {"qd1": {"iops": 5000.0}, "qd32": {"iops": 10000.0}},
           "raw 200 IOPS": {"qd1": {"iops": 200.0}}}
    r = bl.scaling_ratios(fio, ["rapilog window", "dm-writecache", "brd", "raw 200 IOPS"])
    assert r == {"rapilog window": 3.0, "dm-writecache": 4.0, "brd": 2.0}
    line = bl.scaling_line(r)
    assert "emulated" in line and "rapilog window 3.00x" in line
    assert "rapilog window / dm-writecache: 0.75" in line and "rapilog window / brd: 1.5" in line


def test_scaling_over_rounds_takes_medians_and_shows_the_range():
    def rnd(rw1, rw32, wc1, wc32):
        return {"rapilog window": {"qd1": {"iops": rw1}, "qd32": {"iops": rw32}},
                "dm-writecache": {"qd1": {"iops": wc1}, "qd32": {"iops": wc32}}}
    rounds = [rnd(100, 90, 100, 120), rnd(100, 120, 100, 100), rnd(110, 110, 90, 99)]
    s = bl.scaling_rounds(rounds, ["rapilog window", "dm-writecache", "brd"])
    assert set(s) == {"rapilog window", "dm-writecache"}
    assert s["rapilog window"]["median"] == pytest.approx(1.0) and s["rapilog window"]["min"] == pytest.approx(0.9)
    assert s["dm-writecache"]["median"] == pytest.approx(1.1)
    line = bl.scaling_line(s)
    assert line.startswith("QD32/QD1 IOPS scaling (emulated: QEMU TCG wall clock, same boot, median [min-max] of "
                           "3 rounds): rapilog window 1.00x [0.90x-1.20x], dm-writecache 1.10x [1.00x-1.20x]")
    assert line.endswith("rapilog window / dm-writecache: 0.91.")
    # The table's round: the median by QD1 IOPS (the lower middle one of an even count).
    assert bl.median_round(rounds, "rapilog window")["qd32"]["iops"] == 120  # 100, 100, 110: the second
    assert bl.median_round(rounds[:2] + [rnd(50, 1, 1, 1)], "rapilog window")["qd1"]["iops"] == 100
    assert bl.median_round(rounds, "brd") is None


def test_drain_summary_and_line():
    doc = _fio_doc([{"jobname": "seq", "write": {"bw_bytes": 250_000_000, "bw": 244140}}])
    assert bl.fio_write_bw(doc) == 250e6
    assert bl.fio_write_bw(_fio_doc([{"jobname": "seq", "write": {"bw": 1000}}])) == 1024000
    flush = bl.json_doc('warning\n{"schema": "rapilogctl.flush", "dirty_before": 15728640, '
                        '"written_back_bytes": 15728640, "duration_us": 157286, "written_back_ios": 16}')
    s = bl.drain_summary({1: 100e6, 4: 300e6, 16: 250e6}, flush, wall_s=0.2)
    assert s["raw_best_qd"] == 4 and s["raw_best_bytes_per_s"] == 300e6
    assert s["drain_bytes_per_s"] == pytest.approx(100e6, rel=1e-5)
    assert s["ratio"] == pytest.approx(1 / 3, rel=1e-5)
    assert s["drain_wall_bytes_per_s"] == pytest.approx(15728640 / 0.2)
    # After a JSON round trip the depths are strings.
    import json
    s2 = json.loads(json.dumps(s))
    line = bl.drain_line(s2, {"dirty_bound_bytes": 2621440, "writeback_bandwidth": 104857600, "holdup_ms": 50})
    assert "best 300 MB/s at QD4" in line and "QD1 100, QD4 300, QD16 250 MB/s" in line
    assert "drain / raw best: 0.33." in line and "15 MiB" in line
    assert "Dirty bound" in line and "2.5 MiB" in line and "holdup_ms=50" in line
    with pytest.raises(ValueError):
        bl.json_doc("rapilogctl: error: no module")


def test_insn_profile_names_and_per_write_difference():
    import insn_profile as ip  # bench/insn_profile.py
    sym = ("_RNvXs_NtCsexUQerXZ7cr_11rapilog_blk6deviceNtB4_6DeviceNtNtNtB6_3sys7gendisk"
           "10BioHandler10submit_bio [rapilog]")
    assert ip.short_name(sym) == "device::Device::sys::gendisk::BioHandler::submit_bio [rapilog]"
    assert ip.short_name("_RNvNtNtCsexUQerXZ7cr_11rapilog_blk3sys3bio12copy_segment [rapilog]") == \
        "sys::bio::copy_segment [rapilog]"
    assert ip.short_name("memcpy") == "memcpy"
    syms = ip.Symbols("ffffffff81000000 T memcpy\nffffffff81000100 t other\nffffffffc0000000 t f [m]\n")
    assert syms.name(0xFFFFFFFF81000010) == "memcpy"
    assert syms.name(0xFFFFFFFFC0000004) == "f [m]"
    assert syms.name(0x401000) == "[user]"
    short = {0xFFFFFFFF81000000: 1000, 0x401000: 500}
    long = {0xFFFFFFFF81000000: 5000, 0x401000: 900, 0xFFFFFFFF81000100: 40}
    per = ip.per_function(short, long, syms, 4)
    assert per == {"memcpy": 1000, "[user]": 100, "other": 10}
