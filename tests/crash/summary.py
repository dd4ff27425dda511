#!/usr/bin/env python3
"""Summary of `make crash-test`: reads the JSON lines the crash tests append
to $RAPILOG_CRASH_STATS (one per panic cycle, cycle_stats of
tests/lib/rapilog_harness/crashload.py) and prints cycles, acknowledged
writes checked, losses and the panic -> report times.

    tests/crash/summary.py STATS_FILE WANTED_CYCLES ELAPSED_SECONDS

Exit status: 0 when at least WANTED_CYCLES cycles ran and none lost
anything, 1 otherwise.
"""
import json
import statistics
import sys


def spread(values) -> str:
    if not values:
        return "-"
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f} s"


def main() -> int:
    path, wanted, elapsed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    try:
        with open(path) as f:
            cycles = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        cycles = []
    lost = sum(c["lost"] for c in cycles)
    print("=== make crash-test summary")
    for test in sorted({c["test"] for c in cycles}):
        cs = [c for c in cycles if c["test"] == test]
        print(f"  {test}: {len(cs)} cycles (seed {cs[0]['seed']}), "
              f"{sum(c['acknowledged'] for c in cs)} acknowledged writes, "
              f"{sum(c['checked'] for c in cs)} checked on the disk (every cycle re-checks all), "
              f"{sum(c['replayed'] for c in cs)} records replayed by the crash kernel, "
              f"{sum(c['lost'] for c in cs)} lost")
    print(f"  cycles:               {len(cycles)} (wanted at least {wanted})")
    print(f"  acknowledged writes:  {sum(c['acknowledged'] for c in cycles)} "
          f"(checked {sum(c['checked'] for c in cycles)} times in all)")
    print(f"  losses:               {lost}")
    panics = [c for c in cycles if "panic_to_report" in c]
    drains = [c for c in cycles if "drain_ms" in c]
    print(f"  panic -> report:      {spread([c['panic_to_report'] for c in panics])} (min / median / max)")
    print(f"  panic -> guest up:    {spread([c['panic_to_up'] for c in panics])} (min / median / max)")
    if drains:
        ms = [c["drain_ms"] for c in drains]
        mib = sum(c["drained_bytes"] for c in drains) / (1 << 20)
        print(f"  power-fail drain:     {min(ms):.1f} / {statistics.median(ms):.1f} / {max(ms):.1f} ms "
              f"(min / median / max) for {mib * 1024:.0f} KiB in all"
              + (f", {sum(ms) / mib:.0f} ms per MiB" if mib else ""))
        bounded = [c for c in drains if "bound_bytes" in c]
        if bounded:
            print(f"  power-fail cut at:    {bounded[0]['holdup_ms']} ms (holdup_ms); drained / dirty bound "
                  + ", ".join(f"{c['drained_bytes'] // 1024}/{c['bound_bytes'] // 1024}" for c in bounded)
                  + " KiB")
    if elapsed > 0:
        print(f"  rate:                 {len(cycles) / (elapsed / 60):.2f} cycles/min "
              f"({elapsed:.0f} s in all, boots included)")
    good = sum(1 for c in cycles if c["lost"] == 0)
    bad = len(cycles) - good + max(0, wanted - len(cycles))  # cycles that lost data or never ran
    print(f"crash-test cycles: {good} passed, {bad} failed")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
