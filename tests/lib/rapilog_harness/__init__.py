"""QEMU guest harness for rapilog tests (Python 3.11 stdlib only).

Boots the *unmodified* stock Debian kernel (fetched by
qemu-scripts/fetch-kernel.sh) with the busybox initramfs of
qemu-scripts/build-initramfs.sh under QEMU TCG (never KVM: nested KVM on this
machine kind crashes stock kernels), and drives it through a command agent on
a virtio-serial port that is separate from the kernel console.

    from rapilog_harness import Guest, Disk

    with Guest("smoke", memmap="64M$0x60000000",
               disks=[Disk("log.img", serial="rl-log", size=64 << 20)],
               files={"/lib/modules/KREL/extra/rapilog.ko": "rapilog-blk/rapilog.ko"},
               ) as g:
        g.boot()                              # start() + wait_booted()
        print(g.check("uname -r"))            # raises CommandFailed on rc != 0
        rc, out = g.run("false")              # (rc, stdout+stderr)
        g.send("echo c > /proc/sysrq-trigger")  # fire and forget
        g.wait_console(r"Kernel panic")       # regex over the captured console

Logs go to .cache/test-logs/NAME/ (console.log with host timestamps per
line, agent.log, qmp.log, qemu.log, qemu-cmdline.txt) and are kept.

Timeouts are multiples of boot times measured on this machine (see
config.BOOT_MEASURED_S) and scale with $RAPILOG_TIMEOUT_SCALE (e.g. 3 on a
slow CI).

Modules (everything public is also importable from the package itself):

    config     paths (REPO, CACHE, LOG_ROOT), DEFAULT_KREL, measured timeouts, scaled()
    errors     GuestError and its kinds (CommandFailed, CommandTimeout, GuestPanicked, ...)
    images     the kernel, initramfs, rootfs image and rapilog.ko a guest boots
    memory     sizes, memmap= specs, q35 RAM file offsets, read_phys/write_phys
    qemu       Disk, the QEMU command line and process lifecycle
    network    a private network between guests on the host's loopback (Nic, loopback_link)
    console    the kernel console: reader thread, wait_console()
    qmp        QMP commands and events
    agent      the guest agent protocol: run()/check()/send()/read_file()/write_file()
    guest      Guest, composed of the above
    crashload  panic under load (tests/qemu/test_crash.py and others; not re-exported)

Where it is imported from: tests/lib is on sys.path, through `pythonpath`
in tests/pytest.ini for pytest and one line at the top of each script
(qemu-scripts/demo.py, run-guest.py, measure-boot.py, bench/run.py).
"""

from .config import (BOOT_MEASURED_S, BOOT_TIMEOUT, CACHE, CMD_TIMEOUT, DEFAULT_KREL, EXIT_TIMEOUT, LOG_ROOT, QEMU,
                     QMP_TIMEOUT, REPO, ROOTFS_BOOT_MEASURED_S, ROOTFS_BOOT_TIMEOUT, ROOTFS_BUILD_MEASURED_S,
                     ROOTFS_BUILD_TIMEOUT, SCRIPTS, TIMEOUT_SCALE, scaled)
from .errors import CommandFailed, CommandTimeout, GuestDied, GuestError, GuestPanicked, GuestRebooted, QMPError
from .images import (ROOT_INIT, ROOTFS_SERIAL, build_initramfs, build_module, build_rootfs, fetch_kernel,
                     pinned_krels, rootfs_module_index)
from .memory import parse_memmap, parse_size, q35_phys_to_offset
from .agent import AGENT_PORT_NAME
from .qemu import Disk
from .network import Nic, configure_ipv4, free_udp_ports, loopback_link
from .guest import Guest

__all__ = [
    # config
    "BOOT_MEASURED_S", "BOOT_TIMEOUT", "CACHE", "CMD_TIMEOUT", "DEFAULT_KREL", "EXIT_TIMEOUT", "LOG_ROOT", "QEMU",
    "QMP_TIMEOUT", "REPO", "ROOTFS_BOOT_MEASURED_S", "ROOTFS_BOOT_TIMEOUT", "ROOTFS_BUILD_MEASURED_S",
    "ROOTFS_BUILD_TIMEOUT", "SCRIPTS", "TIMEOUT_SCALE", "scaled",
    # errors
    "CommandFailed", "CommandTimeout", "GuestDied", "GuestError", "GuestPanicked", "GuestRebooted", "QMPError",
    # images
    "ROOT_INIT", "ROOTFS_SERIAL", "build_initramfs", "build_module", "build_rootfs", "fetch_kernel",
    "pinned_krels", "rootfs_module_index",
    # memory
    "parse_memmap", "parse_size", "q35_phys_to_offset",
    # agent, qemu, network, guest
    "AGENT_PORT_NAME", "Disk", "Guest", "Nic", "configure_ipv4", "free_udp_ports", "loopback_link",
]
