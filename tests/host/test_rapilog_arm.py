"""kexec-tools-config/rapilog-arm: the one place the crash kernel's kexec
command is built (used by the systemd unit and by `rapilogctl arm`)."""
import os
import subprocess
from pathlib import Path

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
