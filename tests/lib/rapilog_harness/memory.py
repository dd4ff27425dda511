"""Sizes, memmap= reservations, and guest RAM seen from the host.

parse_size/parse_memmap read the kernel's and QEMU's size notations;
q35_phys_to_offset maps a guest-physical address to its offset in the RAM
backend file, which GuestMemoryMixin reads and writes (Guest(ram_file=...)).
"""

from __future__ import annotations

import os
import re

from .errors import GuestError

_SIZE = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(s: str | int) -> int:
    """'2G' -> 2147483648 (QEMU/kernel suffixes, powers of two)."""
    if isinstance(s, int):
        return s
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", str(s), re.I)
    if not m:
        raise ValueError(f"bad size {s!r}")
    return int(m.group(1)) * _SIZE[m.group(2).upper()]


def parse_memmap(spec: str) -> tuple[int, int]:
    """'64M$0x60000000' -> (start, size) of a memmap=nn$ss reservation."""
    size, _, start = spec.partition("$")
    if not start:
        raise ValueError(f"memmap {spec!r}: expected SIZE$START")
    return int(start, 0), parse_size(size)


def q35_phys_to_offset(phys: int, ram_size: int) -> int:
    """Guest-physical address -> offset in the RAM backend file on q35.

    QEMU's pc_q35 puts all RAM below 4 GiB when ram_size < 0xb0000000 (2.75
    GiB); otherwise the first 2 GiB go below 4 GiB and the rest starts at
    4 GiB. The backend file holds below-4G RAM at offset 0 and the rest right
    after it. (Verified by tests/qemu/test_boot.py::test_ram_file_*.)
    """
    below = ram_size if ram_size < 0xB0000000 else 0x80000000
    if 0 <= phys < below:
        return phys
    if phys >= 1 << 32 and phys - (1 << 32) < ram_size - below:
        return phys - (1 << 32) + below
    raise ValueError(f"guest physical {phys:#x} is not RAM (ram {ram_size:#x}, below-4G {below:#x})")


class GuestMemoryMixin:
    """Guest physical memory through the shared RAM file. Part of Guest:
    needs self.mem (RAM bytes) and self.ram_file (None without ram_file=)."""

    def phys_offset(self, phys: int) -> int:
        return q35_phys_to_offset(phys, self.mem)

    def read_phys(self, phys: int, length: int) -> bytes:
        """Read guest-physical memory via the shared RAM file (ram_file=...)."""
        if not self.ram_file:
            raise GuestError("read_phys needs Guest(ram_file=True)")
        end = phys + length - 1
        if self.phys_offset(end) - self.phys_offset(phys) != length - 1:
            raise ValueError("range crosses a RAM hole")
        with open(self.ram_file, "rb") as f:
            return os.pread(f.fileno(), length, self.phys_offset(phys))

    def write_phys(self, phys: int, data: bytes) -> None:
        """Write guest-physical memory via the shared RAM file (ram_file=...)."""
        if not self.ram_file:
            raise GuestError("write_phys needs Guest(ram_file=True)")
        if data and self.phys_offset(phys + len(data) - 1) - self.phys_offset(phys) != len(data) - 1:
            raise ValueError("range crosses a RAM hole")
        with open(self.ram_file, "r+b") as f:
            os.pwrite(f.fileno(), data, self.phys_offset(phys))
