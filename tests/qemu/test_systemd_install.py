"""Install to recovery in a real systemd guest (issue 20, items 3 and 4).

A Debian trixie rootfs with systemd as PID 1 and the stock backports kernel
installed as a Debian package (qemu-scripts/build-systemd-rootfs.sh; the
busybox initramfs mounts it and switch_roots to /sbin/init = systemd; the
command agent runs as rapilog-agent.service). In it, as an administrator
following docs/install.md:

1. `apt install ./rapilog-tools_*.deb ./rapilog-modules-KREL_*.deb` (the
   packages of `make deb`; every dependency is already in the rootfs, there
   is no network): the postinst builds the rescue initramfs, the units are
   enabled; `rapilogctl plan --apply` + `grub-mkconfig` give a kernel line
   with exactly the planned `memmap=` (GRUB's `\\$`) and `crashkernel=`;
   /etc/rapilog/rapilog.conf names the log disk by id; power off.
2. Boot with the planned parameters (QEMU -append: the guest has no
   bootloader): systemd runs rapilog.service before local-fs.target and
   rapilog-crash.service arms the crash kernel; PostgreSQL's pg_wal goes on
   ext4 on /dev/rapilog0, mounted from /etc/fstab.
3. Rows inserted with synchronous_commit=on and acknowledged, then
   `echo c > /proc/sysrq-trigger`: the crash kernel replays the region
   (rapilog-rescue's report on the console) and reboots; systemd brings
   rapilog, the mount and PostgreSQL back, and every acknowledged row is
   there. Then `systemctl reboot` and `systemctl poweroff` right after
   acknowledged commits: none lost (the orderly-stop drain).

No timing assertions: every wait is on a condition, with generous timeouts.
The guest's logs are in .cache/test-logs/test_systemd_install/.
"""
import glob
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from rapilog_harness import CACHE, DEFAULT_KREL, REPO, SCRIPTS, Disk, scaled

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap and make deb need root")

LOG_SERIAL = "rl-log"
LOG_BY_ID = f"/dev/disk/by-id/virtio-{LOG_SERIAL}"
WAL_MNT = "/var/lib/postgresql/wal"
ROWS = 300  # per phase
# systemd boot under TCG, measured 2026-12-06 (see tests/README.md): generous
SYSTEMD_BOOT_TIMEOUT = scaled(600)
PSQL = "runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -d postgres"


def systemd_image(*extra_krels: str) -> str:
    args = [str(SCRIPTS / "build-systemd-rootfs.sh"), "-k", DEFAULT_KREL]
    for k in extra_krels:
        args += ["--extra-krel", k]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=scaled(1800))
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout.strip().splitlines()[-1]


def make_debs(*krels: str) -> dict[str, str]:
    """`make deb [KREL=...]`'s packages: rapilog-tools and rapilog-modules-KREL
    for each krel ({guest path: host path})."""
    for k in krels:
        p = subprocess.run([str(REPO / "packaging/build-deb.sh"), k], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=scaled(1800))
        assert p.returncode == 0, p.stderr[-3000:]
    version = subprocess.run([str(REPO / "packaging/version.sh")], stdout=subprocess.PIPE, text=True,
                             check=True).stdout.strip()
    out = {}
    for name in ("rapilog-tools", *(f"rapilog-modules-{k}" for k in krels)):
        files = glob.glob(str(CACHE / "deb" / f"{name}_{version}_amd64.deb"))
        assert len(files) == 1, f"no {name}_{version}_amd64.deb in {CACHE / 'deb'}"
        out[f"/root/debs/{Path(files[0]).name}"] = files[0]
    return out


def install_debs(g, debs: dict[str, str]) -> None:
    names = " ".join(f"./{Path(p).name}" for p in debs)
    # apt, as docs/install.md says (apt-get --no-download refuses local files)
    rc, out = g.run(f"cd /root/debs && DEBIAN_FRONTEND=noninteractive apt install -y {names}", timeout=scaled(900))
    print(out[-1500:])
    assert rc == 0, out[-3000:]


def plan_and_configure(g) -> tuple[dict, str, str]:
    """rapilogctl plan's parameters; /etc/rapilog/rapilog.conf gets its
    region and the log disk by id. Returns (plan, memmap=..., crashkernel=...)."""
    plan = json.loads(g.check("rapilogctl plan --bandwidth 100 --json", timeout=scaled(60)))
    memmap = next(a for a in plan["add"] if a.startswith("memmap="))
    crash = next(a for a in plan["add"] if a.startswith("crashkernel="))
    region = plan["module_region"].removeprefix("region=")
    print(f"plan: {plan['add']} region={region}")
    g.check(f"sed -i -e 's|^REGION=.*|REGION={region}|' -e 's|^BACKING=.*|BACKING={LOG_BY_ID}|' "
            "/etc/rapilog/rapilog.conf")
    print(g.check("grep -E '^(REGION|BACKING)=' /etc/rapilog/rapilog.conf"))
    return plan, memmap, crash


def wait_systemd(g, what: str) -> str:
    """Wait until systemd finished booting; return its state (running or
    degraded: the failed units are printed, the test checks its own)."""
    state = g.run("systemctl is-system-running --wait", timeout=SYSTEMD_BOOT_TIMEOUT)[1].strip()
    failed = g.run("systemctl --failed --no-legend --plain", timeout=scaled(60))[1].strip()
    print(f"[{what}] systemd: {state}; failed units: {failed or 'none'}")
    assert state in ("running", "degraded"), state
    return state


def insert_rows(g, first: int, last: int) -> list[int]:
    """Insert rows first..last one transaction each (autocommit) and return
    the ids whose INSERT was acknowledged (psql printed INSERT 0 1)."""
    g.check(f"seq {first} {last} | sed 's/.*/INSERT INTO acked VALUES (&);/' >/tmp/ins.sql")
    rc, out = g.run(f"{PSQL} -c 'SHOW synchronous_commit' -c 'SHOW fsync' -f /tmp/ins.sql", timeout=scaled(600))
    assert rc == 0, out[-2000:]
    lines = out.split()
    assert lines.count("on") >= 2, out[:500]  # synchronous_commit, fsync
    n = out.count("INSERT 0 1")
    assert n == last - first + 1, out[-2000:]
    return list(range(first, last + 1))


def rows(g) -> list[int]:
    out = g.check(f"{PSQL} -At -c 'SELECT id FROM acked ORDER BY id'", timeout=scaled(120))
    return [int(x) for x in out.split()]


def check_stack_up(g, what: str, booted: bool = True) -> None:
    """rapilog, the fstab mount and PostgreSQL, brought up by systemd alone
    (booted: in this boot, so the mount is ordered between them)."""
    st = g.run("systemctl is-active rapilog.service rapilog-crash.service "
               "var-lib-postgresql-wal.mount postgresql@17-main.service", timeout=scaled(60))[1].split()
    print(f"[{what}] rapilog, crash, wal mount, postgresql: {st}")
    assert st == ["active"] * 4, st
    assert g.check("findmnt -n -o SOURCE,FSTYPE " + WAL_MNT).split() == ["/dev/rapilog0", "ext4"]
    assert g.check("cat /sys/kernel/kexec_crash_loaded").strip() == "1"
    if not booted:
        return
    # rapilog.service, then the mount, then local-fs.target (monotonic activation times)
    t = {}
    for u in ("rapilog.service", "local-fs.target", "var-lib-postgresql-wal.mount"):
        t[u] = int(g.check(f"systemctl show -P ActiveEnterTimestampMonotonic {u}").strip())
    assert 0 < t["rapilog.service"] < t["var-lib-postgresql-wal.mount"] < t["local-fs.target"], t


def test_systemd_install_to_recovery(guest_factory, krel):
    debs = make_debs(krel)
    t_start = time.monotonic()
    g = guest_factory(rootfs=systemd_image(), mem="2G", smp=2, files=debs, boot_timeout=SYSTEMD_BOOT_TIMEOUT,
                      append="rapilog.init=/sbin/init",
                      disks=[Disk("log.img", serial=LOG_SERIAL, size="256M", iops=200)])

    # --- 1. install -------------------------------------------------------------------------
    g.boot()
    wait_systemd(g, "install boot")
    assert g.check("readlink /proc/1/exe").strip() == "/usr/lib/systemd/systemd"
    assert g.check("uname -r").strip() == krel
    assert g.check(f"readlink -f {LOG_BY_ID}").strip().startswith("/dev/vd")
    assert g.check(f"dpkg-query -W -f '${{Status}}' linux-image-{krel}") == "install ok installed"
    install_debs(g, debs)
    assert g.check(f"test -s /var/lib/rapilog/rescue-initrd-{krel}.img && echo ok").strip() == "ok"
    assert g.check(f"test -e /usr/lib/modules/{krel}/updates/rapilog.ko && modinfo -F vermagic rapilog"
                   ).startswith(krel + " ")
    assert g.run("systemctl is-enabled rapilog.service rapilog-crash.service")[1].split() == ["enabled"] * 2

    # The boot parameters: the plan, its GRUB drop-in, grub-mkconfig's kernel line.
    plan, memmap, crash = plan_and_configure(g)
    g.check("rapilogctl plan --bandwidth 100 --apply", timeout=scaled(60))
    print(g.check("cat /etc/default/grub.d/rapilog.cfg"))
    rc, out = g.run("grub-mkconfig -o /tmp/grub.cfg", timeout=scaled(600))
    assert rc == 0, out[-3000:]
    klines = re.findall(rf"^\s*linux\s+/boot/vmlinuz-{re.escape(krel)}\s.*$",
                        g.check("cat /tmp/grub.cfg"), re.M)
    print("grub.cfg kernel lines:\n" + "\n".join(klines))
    assert klines, "no kernel line for the stock kernel in grub.cfg"
    want = memmap.replace("$", "\\$")  # GRUB's escaping: the kernel then gets memmap=...$...
    default = klines[0].split()
    assert want in default and crash in default, klines[0]
    assert default.count(want) == 1 and sum(w.startswith("memmap=") for w in default) == 1, klines[0]
    # the recovery entry boots without the region
    assert any("single" in k and "memmap=" not in k for k in klines), klines

    g.send("systemctl poweroff")
    assert g.wait_exit(SYSTEMD_BOOT_TIMEOUT) == 0

    # --- 2. boot with the region; PostgreSQL's WAL on /dev/rapilog0 ------------------------------
    g.append = f"rapilog.init=/sbin/init {memmap} {crash}"
    g.start()
    g.wait_booted()
    wait_systemd(g, "first boot with the region")
    cmdline = g.check("cat /proc/cmdline").split()
    assert memmap in cmdline and crash in cmdline, cmdline
    print(g.check("journalctl -b -u rapilog.service -u rapilog-crash.service --no-pager -o cat"))
    st = g.run("systemctl is-active rapilog.service rapilog-crash.service")[1].split()
    assert st == ["active", "active"], g.check("journalctl -b -u rapilog.service -u rapilog-crash.service --no-pager")
    assert g.check("rapilog-arm status").strip().startswith("armed")
    assert g.check("cat /sys/kernel/kexec_crash_loaded").strip() == "1"
    # rapilog-rescue compares rapilog.disk= with the id the module recorded
    assert f"rapilog.disk=serial:{LOG_SERIAL}" in g.check("rapilog-arm command")
    g.check(f"""set -e
        mkfs.ext4 -q -F /dev/rapilog0
        install -d -o postgres -g postgres {WAL_MNT}
        echo '/dev/rapilog0 {WAL_MNT} ext4 defaults 0 2' >>/etc/fstab
        systemctl daemon-reload
        mount {WAL_MNT}
        systemctl stop postgresql@17-main.service
        d=/var/lib/postgresql/17/main
        mv $d/pg_wal {WAL_MNT}/pg_wal
        ln -s {WAL_MNT}/pg_wal $d/pg_wal
        chown -R postgres:postgres {WAL_MNT}
        systemctl start postgresql@17-main.service
        sync  # the configuration on the root fs (fstab, the symlink) before any panic
    """, timeout=scaled(300))
    g.check(f"{PSQL} -c 'CREATE TABLE acked (id int PRIMARY KEY)'", timeout=scaled(120))
    check_stack_up(g, "configured", booted=False)

    # --- 3. panic: the crash kernel replays, systemd brings everything back --------------------------
    acked = insert_rows(g, 1, ROWS)
    mark = g.console_mark()
    g.send("echo c > /proc/sysrq-trigger")
    m = g.wait_console(r"rapilog-rescue: report (applied=\S+ .* exit=\d+)", scaled(300), since=mark)
    print(f"panic after {len(acked)} acknowledged rows; crash kernel: rapilog-rescue: report {m.group(1)}")
    assert m.group(1).endswith("exit=0"), m.group(1)
    g.wait_booted()
    wait_systemd(g, "after the panic")
    check_stack_up(g, "after the panic")
    found = rows(g)
    print(f"after the panic: {len(acked)} rows acknowledged, {len(found)} found, "
          f"{len(set(acked) - set(found))} lost")
    assert set(acked) <= set(found)
    kernel_log = g.check("journalctl -b -k --no-pager | grep -E 'rapilog: ' || true")
    print("\n".join(kernel_log.splitlines()[:20]))
    # The region survived the boot: the planned placement (from 1 GiB up)
    # is clear of the initrd the boot loader put at the top of low RAM, so
    # the module finds the superblock the crash kernel left, not an
    # overwritten region to format afresh.
    assert "last replay by rapilog-rescue (crash kernel)" in kernel_log, kernel_log
    assert "no rapilog superblock" not in kernel_log, kernel_log

    # --- 4. orderly stops right after acknowledged commits: reboot, then power-off ----------------
    acked += insert_rows(g, ROWS + 1, 2 * ROWS)
    mark = g.console_mark()
    g.send("systemctl reboot")
    g.wait_booted()
    drain = re.search(r"rapilog: shutdown drain[^\n]*", g.console_text(since=mark))
    print(f"systemctl reboot: {drain.group(0) if drain else 'no drain line on the console'}")
    wait_systemd(g, "after systemctl reboot")
    check_stack_up(g, "after systemctl reboot")
    found = rows(g)
    print(f"after systemctl reboot: {len(acked)} rows acknowledged, {len(found)} found")
    assert set(acked) <= set(found)

    acked += insert_rows(g, 2 * ROWS + 1, 3 * ROWS)
    mark = g.console_mark()
    g.send("systemctl poweroff")
    assert g.wait_exit(SYSTEMD_BOOT_TIMEOUT) == 0
    drain = re.search(r"rapilog: shutdown drain[^\n]*", g.console_text(since=mark))
    print(f"systemctl poweroff: {drain.group(0) if drain else 'no drain line on the console'}")
    g.start()
    g.wait_booted()
    wait_systemd(g, "after systemctl poweroff")
    check_stack_up(g, "after systemctl poweroff")
    found = rows(g)
    print(f"after systemctl poweroff: {len(acked)} rows acknowledged, {len(found)} found")
    assert set(acked) <= set(found)
    print(f"wall time of the test (image and packages cached): {time.monotonic() - t_start:.0f} s")


SECOND_KREL = "7.2.12+deb13-amd64"


def test_systemd_second_kernel(guest_factory, krel):
    """Item 4: a second stock kernel installed (linux-image-7.2.12+deb13-amd64,
    in the image before rapilog), its rapilog-modules package from
    `make deb KREL=7.2.12+deb13-amd64`; rebooted into it, systemd loads
    rapilog and arms the crash kernel with that kernel's rescue initramfs."""
    debs = make_debs(krel, SECOND_KREL)
    g = guest_factory(rootfs=systemd_image(SECOND_KREL), mem="2G", smp=2, files=debs,
                      boot_timeout=SYSTEMD_BOOT_TIMEOUT, append="rapilog.init=/sbin/init",
                      disks=[Disk("log.img", serial=LOG_SERIAL, size="256M")])
    g.boot()
    wait_systemd(g, "install boot")
    assert g.check(f"dpkg-query -W -f '${{Status}}' linux-image-{SECOND_KREL}") == "install ok installed"
    install_debs(g, debs)
    for k in (krel, SECOND_KREL):
        assert g.check(f"test -s /var/lib/rapilog/rescue-initrd-{k}.img && echo ok").strip() == "ok", k
    _, memmap, crash = plan_and_configure(g)
    g.send("systemctl poweroff")
    assert g.wait_exit(SYSTEMD_BOOT_TIMEOUT) == 0

    # The machine's next boot is the other kernel (the host's -kernel/-initrd).
    g.krel, g.kdir, g.initramfs = SECOND_KREL, None, None
    g.append = f"rapilog.init=/sbin/init {memmap} {crash}"
    g.start()
    g.wait_booted()
    wait_systemd(g, SECOND_KREL)
    assert g.check("uname -r").strip() == SECOND_KREL
    print(g.check("journalctl -b -u rapilog.service -u rapilog-crash.service --no-pager -o cat"))
    st = g.run("systemctl is-active rapilog.service rapilog-crash.service")[1].split()
    assert st == ["active", "active"], st
    assert g.check("modinfo -F vermagic rapilog").startswith(SECOND_KREL + " ")
    assert g.check("test -d /sys/module/rapilog && test -b /dev/rapilog0 && echo ok").strip() == "ok"
    assert g.check("rapilog-arm status").strip() == "armed"
    assert f"rescue-initrd-{SECOND_KREL}.img" in g.check("rapilog-arm command")
    # one block through /dev/rapilog0 and back
    g.check("head -c 4096 /dev/urandom >/tmp/b && "
            "dd if=/tmp/b of=/dev/rapilog0 bs=4096 oflag=direct,sync status=none && "
            "dd if=/dev/rapilog0 of=/tmp/c bs=4096 count=1 iflag=direct status=none && cmp /tmp/b /tmp/c")
    print(g.check("rapilogctl status"))
