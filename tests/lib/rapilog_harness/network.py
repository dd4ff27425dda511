"""A private network between guests that stays on the host's loopback.

    a_nic, b_nic = loopback_link()            # two free UDP ports on 127.0.0.1
    a = Guest("a", nics=[a_nic], ...)
    b = Guest("b", nics=[b_nic], ...)
    a.boot(); b.boot()
    a.check("modprobe virtio_net && ip addr add 10.99.0.1/24 dev eth0 && ip link set eth0 up")

Each end is a QEMU `-netdev dgram` (QEMU >= 7.2) bound to 127.0.0.1:LOCAL
that sends its frames to 127.0.0.1:REMOTE, plus a virtio-net-pci device:
a point-to-point Ethernet cable made of two UDP sockets. Nothing listens
on another interface, no tap device or bridge is needed (no root network
setup on the host), the two guests start in any order, and either one can
be killed and started again while the other keeps its end (frames sent
while the peer is down are lost, like on a cable whose far end is
unplugged). The guest has no udev: load virtio_net and set the address
with iproute2 (configure_ipv4).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass
class Nic:
    """One guest's end of a loopback link (Guest(nics=[...]))."""

    local_port: int
    remote_port: int
    mac: str
    id: str = "net0"
    host: str = "127.0.0.1"

    def qemu_args(self, vdev: str = "") -> list[str]:
        """-netdev/-device arguments (vdev: extra virtio-pci options)."""
        netdev = (f"dgram,id={self.id},local.type=inet,local.host={self.host},local.port={self.local_port},"
                  f"remote.type=inet,remote.host={self.host},remote.port={self.remote_port}")
        return ["-netdev", netdev, "-device", f"virtio-net-pci,netdev={self.id},mac={self.mac}{vdev}"]


def free_udp_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n UDP ports free on host right now (the kernel picks them; another
    process could still take one before QEMU binds it, which then fails to
    start with "Address already in use")."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def loopback_link(ports: tuple[int, int] | None = None, mac_prefix: str = "52:54:00:72:6c") -> tuple[Nic, Nic]:
    """The two ends of one point-to-point link on 127.0.0.1 (free ports
    unless given); MACs MAC_PREFIX:01 and :02."""
    pa, pb = ports or free_udp_ports(2)
    return (Nic(local_port=pa, remote_port=pb, mac=f"{mac_prefix}:01"),
            Nic(local_port=pb, remote_port=pa, mac=f"{mac_prefix}:02"))


def configure_ipv4(guest, address: str, dev: str = "eth0", module: str = "virtio_net") -> None:
    """Load the NIC's driver, bring dev up with ADDRESS (CIDR) and lo too."""
    guest.check(f"modprobe {module} && for i in $(seq 100); do [ -e /sys/class/net/{dev} ] && break; sleep 0.1; done"
                f" && ip link set lo up && ip addr add {address} dev {dev} && ip link set {dev} up")
