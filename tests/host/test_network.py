"""rapilog_harness.network: the two ends of a loopback link point at each
other, on 127.0.0.1 only, and a Guest without nics= gets no network."""
from pathlib import Path

from rapilog_harness import Guest, loopback_link


def test_link_ends_point_at_each_other_on_loopback():
    a, b = loopback_link()
    assert (a.local_port, a.remote_port) == (b.remote_port, b.local_port)
    assert a.local_port != b.local_port and a.mac != b.mac
    netdev = a.qemu_args()[1]
    assert netdev.startswith("dgram,id=net0,")
    assert f"local.host=127.0.0.1,local.port={a.local_port}" in netdev
    assert f"remote.host=127.0.0.1,remote.port={b.local_port}" in netdev
    assert a.qemu_args(",iommu_platform=on")[3].endswith(f"mac={a.mac},iommu_platform=on")


def _cmdline(tmp_path, **kw) -> list[str]:
    g = Guest("nettest", log_dir=tmp_path / "g", **kw)
    g.kdir, g._run_dir, g.initramfs = Path("/k"), "/r", Path("/i")
    try:
        return g.qemu_cmdline()
    finally:
        g.close()


def test_nics_only_when_asked(tmp_path):
    assert "-netdev" not in _cmdline(tmp_path)
    a, _ = loopback_link((4000, 4001))
    cmd = _cmdline(tmp_path, nics=[a])
    assert cmd[cmd.index("-netdev") + 1].endswith("remote.port=4001")
    assert f"virtio-net-pci,netdev=net0,mac={a.mac}" in cmd
