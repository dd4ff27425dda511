"""kexec-tools-config/rapilog-arm: the one place the crash kernel's kexec
command is built (used by the systemd unit and by `rapilogctl arm`)."""
import os
import subprocess
from pathlib import Path

import pytest

ARM = Path(__file__).resolve().parents[2] / "kexec-tools-config" / "rapilog-arm"


def run(tmp_path, conf: str, *args,
        cmdline="BOOT_IMAGE=/vmlinuz root=/dev/sda console=tty0 console=ttyS0,115200 quiet"):
    cfg = tmp_path / "rapilog.conf"
    cfg.write_text(conf)
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    env = dict(os.environ, KERNEL_RELEASE="7.3.4+deb13-amd64", PROC_CMDLINE=str(tmp_path / "cmdline"))
    return subprocess.run([str(ARM), "-c", str(cfg), *args], capture_output=True, text=True, env=env)


EXAMPLE = (ARM.parent / "rapilog.conf").read_text()


def test_example_config_gives_the_documented_command(tmp_path):
    p = run(tmp_path, EXAMPLE, "command")
    assert p.returncode == 0, p.stderr
    assert p.stdout == (
        "kexec -p /boot/vmlinuz-7.3.4+deb13-amd64 "
        "--initrd=/var/lib/rapilog/rescue-initrd-7.3.4+deb13-amd64.img "
        '--append="console=tty0 console=ttyS0,115200 nr_cpus=1 irqpoll reset_devices panic=10 '
        'rapilog.region=64M@0x60000000 rapilog.disk=/dev/disk/by-id/nvme-EXAMPLE-SERIAL"\n')


def test_console_and_extra_arguments_from_config(tmp_path):
    conf = EXAMPLE.replace('CRASH_CONSOLE=""', 'CRASH_CONSOLE="console=ttyS1"').replace(
        'CRASH_APPEND=""', 'CRASH_APPEND="rapilog.wait=60"')
    p = run(tmp_path, conf, "command")
    assert p.returncode == 0, p.stderr
    assert '--append="console=ttyS1 nr_cpus=1 irqpoll reset_devices panic=10 ' \
           'rapilog.region=64M@0x60000000 rapilog.disk=/dev/disk/by-id/nvme-EXAMPLE-SERIAL rapilog.wait=60"' \
           in p.stdout


def test_bad_region_is_a_configuration_error(tmp_path):
    p = run(tmp_path, EXAMPLE.replace("REGION=64M@0x60000000", "REGION=64M"), "command")
    assert p.returncode == 2
    assert "REGION=64M is not SIZE@PHYS" in p.stderr


def test_missing_config_and_bad_usage(tmp_path):
    p = subprocess.run([str(ARM), "-c", str(tmp_path / "absent.conf"), "command"], capture_output=True, text=True)
    assert p.returncode == 2 and "cannot read" in p.stderr
    p = subprocess.run([str(ARM), "frobnicate"], capture_output=True, text=True)
    assert p.returncode == 2 and "usage:" in p.stderr


def test_arm_refuses_without_the_rescue_initramfs(tmp_path):
    conf = EXAMPLE.replace("CRASH_KERNEL=/boot/vmlinuz-%r", f"CRASH_KERNEL={ARM}").replace(
        "RESCUE_INITRD=/var/lib/rapilog/rescue-initrd-%r.img", f"RESCUE_INITRD={tmp_path}/none-%r.img")
    p = run(tmp_path, conf, "arm")
    assert p.returncode == 1
    assert f"rescue initramfs {tmp_path}/none-7.3.4+deb13-amd64.img not found" in p.stderr


def _unit(name: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in (ARM.parent / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def test_the_crash_kernel_stays_armed_through_shutdown():
    # Stopping a unit runs its ExecStop early in shutdown, before filesystems
    # are unmounted and before the kernel drains the region: a panic then
    # would find no crash kernel. Neither unit may undo itself at stop.
    for name in ("rapilog-crash.service", "rapilog.service"):
        unit = _unit(name)
        assert "ExecStop" not in unit, f"{name} undoes itself at shutdown: {unit['ExecStop']}"
        assert unit.get("RemainAfterExit") == ["yes"], name


def test_the_crash_kernel_is_told_the_disk_identity_the_module_records(tmp_path):
    # rapilog-rescue's rapilog.disk= lets it check a wiped region against the
    # disk's loss marker; a kernel name (/dev/sdb) cannot be found again.
    with_id = EXAMPLE.replace('MODULE_OPTIONS=""', 'MODULE_OPTIONS="iommu_fence=require disk_id=serial:S3EV"')
    assert " rapilog.disk=serial:S3EV" in run(tmp_path, with_id, "command").stdout
    kernel_name = EXAMPLE.replace("BACKING=/dev/disk/by-id/nvme-EXAMPLE-SERIAL", "BACKING=/dev/sdb")
    p = run(tmp_path, kernel_name, "command")
    assert p.returncode == 0, p.stderr
    assert "rapilog.disk=" not in p.stdout


# --- several devices: REGION_1/BACKING_1/DISK_ID_1 ... ------------------------------------

THREE = EXAMPLE.replace('DISK_ID=""', 'DISK_ID="serial:db"') + (
    "REGION_1=32M@0x64000000\nBACKING_1=/dev/disk/by-id/nvme-MQ\nDISK_ID_1=serial:mq\n"
    "REGION_2=16M@0x66000000\nBACKING_2=/dev/disk/by-id/nvme-QQ\n")


def test_several_devices_give_one_crash_line_with_every_region_and_disk_in_pairs(tmp_path):
    p = run(tmp_path, THREE, "command")
    assert p.returncode == 0, p.stderr
    assert ('--append="console=tty0 console=ttyS0,115200 nr_cpus=1 irqpoll reset_devices panic=10 '
            "rapilog.region=64M@0x60000000 rapilog.disk=serial:db "
            "rapilog.region=32M@0x64000000 rapilog.disk=serial:mq "
            'rapilog.region=16M@0x66000000 rapilog.disk=/dev/disk/by-id/nvme-QQ"\n') in p.stdout
    # A device whose disk cannot be named (a kernel name) keeps its place
    # with an empty rapilog.disk=; none nameable: no rapilog.disk= at all.
    kernel_name = THREE.replace("BACKING_2=/dev/disk/by-id/nvme-QQ", "BACKING_2=/dev/sdd")
    assert "rapilog.region=16M@0x66000000 rapilog.disk=\"" in run(tmp_path, kernel_name, "command").stdout
    bare = ("REGION=64M@0x60000000\nBACKING=/dev/sdb\nREGION_1=32M@0x64000000\nBACKING_1=/dev/sdc\n"
            "CRASH_KERNEL=/boot/vmlinuz-%r\nRESCUE_INITRD=/boot/r-%r.img\n")
    p = run(tmp_path, bare, "command")
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith('panic=10 rapilog.region=64M@0x60000000 rapilog.region=32M@0x64000000"\n'), p.stdout


def test_several_devices_take_each_disk_id_from_the_loaded_module(tmp_path):
    # Without DISK_ID, the id the module recorded, per device, from
    # `rapilogctl status` (the backing row after each device row).
    fake = tmp_path / "rapilogctl"
    fake.write_text("#!/bin/sh\ncat <<'EOF'\nPROTECTED: every device\n"
                    "device    /dev/rapilog0 (/dev/rapilog-ctl), up 3 s\n"
                    "backing   /dev/vdb   disk id serial:rl-a, 64 MiB (512-byte blocks)\n"
                    "device    /dev/rapilog1 (/dev/rapilog-ctl), up 3 s\n"
                    "backing   /dev/vdc   disk id serial:rl-b, 64 MiB (4096-byte blocks)\n"
                    "EOF\n")
    fake.chmod(0o755)
    conf = ("REGION=64M@0x60000000\nBACKING=/dev/vdb\nREGION_1=32M@0x64000000\nBACKING_1=/dev/vdc\n"
            "CRASH_KERNEL=/boot/vmlinuz-%r\nRESCUE_INITRD=/boot/r-%r.img\n")
    cfg = tmp_path / "rapilog.conf"
    cfg.write_text(conf)
    (tmp_path / "cmdline").write_text("console=ttyS0\n")
    env = dict(os.environ, KERNEL_RELEASE="7.3.4+deb13-amd64", PROC_CMDLINE=str(tmp_path / "cmdline"),
               RAPILOGCTL=str(fake))
    p = subprocess.run([str(ARM), "-c", str(cfg), "command"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert ("rapilog.region=64M@0x60000000 rapilog.disk=serial:rl-a "
            'rapilog.region=32M@0x64000000 rapilog.disk=serial:rl-b"') in p.stdout


def test_load_module_loads_once_with_comma_joined_lists_after_every_disk_appeared(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "modprobe").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/modprobe.args\n')
    (bin_dir / "modprobe").chmod(0o755)
    disks = [tmp_path / f"disk{k}" for k in range(3)]
    for d in disks:
        d.write_bytes(b"")
    conf = (f"REGION=64M@0x60000000\nBACKING={disks[0]}\nDISK_ID=serial:db\n"
            f"REGION_1=32M@0x64000000\nBACKING_1={disks[1]}\n"
            f"REGION_2=16M@0x66000000\nBACKING_2={disks[2]}\nDISK_ID_2=serial:qq\n"
            'MODULE_OPTIONS="powerfail=button holdup_ms=30"\n')
    cfg = tmp_path / "rapilog.conf"
    cfg.write_text(conf)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    p = subprocess.run([str(ARM), "-c", str(cfg), "load-module"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "modprobe.args").read_text().splitlines() == [
        "rapilog", "region=64M@0x60000000,32M@0x64000000,16M@0x66000000",
        f"backing={disks[0]},{disks[1]},{disks[2]}", "disk_id=serial:db,,serial:qq",
        "powerfail=button", "holdup_ms=30"]
    # One device: the load it always was (no disk_id= unless configured).
    cfg.write_text(f"REGION=64M@0x60000000\nBACKING={disks[0]}\nMODULE_OPTIONS=\"disk_id=serial:x\"\n")
    p = subprocess.run([str(ARM), "-c", str(cfg), "load-module"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "modprobe.args").read_text().splitlines() == [
        "rapilog", "region=64M@0x60000000", f"backing={disks[0]}", "disk_id=serial:x"]
    # A missing disk is waited for (BACKING_WAIT), then modprobe says what is missing.
    cfg.write_text(f"REGION=64M@0x60000000\nBACKING={disks[0]}\nREGION_1=32M@0x64000000\n"
                   f"BACKING_1={tmp_path}/absent\nBACKING_WAIT=0\n")
    p = subprocess.run([str(ARM), "-c", str(cfg), "load-module"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert f"backing={disks[0]},{tmp_path}/absent" in (tmp_path / "modprobe.args").read_text()
    # BACKING_1 missing altogether: refused before any load.
    cfg.write_text(f"REGION=64M@0x60000000\nBACKING={disks[0]}\nREGION_1=32M@0x64000000\n")
    p = subprocess.run([str(ARM), "-c", str(cfg), "load-module"], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "BACKING_1 is empty (the log disk of REGION_1" in p.stderr, p.stderr


@pytest.mark.parametrize("extra, needle", [
    ("REGION_2=16M@0x66000000\nBACKING_2=/dev/sdd\n",
     "device 2 is configured but device 1 is not (REGION_1 is empty): number the devices without a gap"),
    ("REGION_1=16M\n", "REGION_1=16M is not SIZE@PHYS"),
    ("BACKING_1=/dev/sdd\n", "REGION_1 is empty"),
    ("REGION_1=16M@0x66000000\nBACKING_1=/dev/a,b\n", "BACKING_1 contains a comma"),
    ("REGION_8=16M@0x66000000\n", "at most 8 devices"),
    ('REGION_1=16M@0x66000000\nMODULE_OPTIONS="disk_id=serial:a"\n',
     "disk_id= in MODULE_OPTIONS with 2 devices: give each device's as DISK_ID, DISK_ID_1"),
    ('REGION_1=16M@0x66000000\nCRASH_APPEND="rapilog.disk=serial:a"\n',
     "CRASH_APPEND has rapilog.disk=serial:a: with several devices"),
    ('DISK_ID=serial:a\nMODULE_OPTIONS="disk_id=serial:a"\n', "DISK_ID and disk_id= in MODULE_OPTIONS both set"),
])
def test_several_devices_configuration_errors(tmp_path, extra, needle):
    p = run(tmp_path, EXAMPLE + extra, "command")
    assert p.returncode == 2, p.stdout
    assert needle in p.stderr, p.stderr


def test_a_config_in_the_current_directory_is_read(tmp_path):
    # `-c rapilog.conf`: sourced from the current directory, not looked up in PATH.
    (tmp_path / "rapilog.conf").write_text(EXAMPLE)
    (tmp_path / "cmdline").write_text("console=ttyS0\n")
    env = dict(os.environ, KERNEL_RELEASE="7.3.4+deb13-amd64", PROC_CMDLINE=str(tmp_path / "cmdline"))
    p = subprocess.run([str(ARM), "-c", "rapilog.conf", "command"], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "rapilog.region=64M@0x60000000" in p.stdout
