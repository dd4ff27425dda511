"""Fixtures for QEMU tests.

    def test_x(guest_factory):
        g = guest_factory(memmap="64M$0x60000000", disks=[Disk("log.img", "rl-log", size="64M")])
        g.boot()
        g.check("...")

guest_factory(**kwargs) makes Guest objects named after the test (logs in
.cache/test-logs/<test>[-N]/) and always kills them at teardown; the
console tail and the log directory are reported when the test fails.
Kernel: $RAPILOG_KREL (default 7.3.4+deb13-amd64).
"""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import rapilog_harness as harness


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.fixture(scope="session")
def krel() -> str:
    return harness.DEFAULT_KREL


@pytest.fixture(scope="session")
def module_path(krel) -> str:
    """rapilog.ko for this kernel (rapilog_harness.build_module)."""
    return str(harness.build_module(krel))


@pytest.fixture(scope="session")
def test_image_tool() -> str:
    """rapilog-rescue's make-test-image example: region images and disks
    written by the format crate's test helpers."""
    subprocess.run(["cargo", "build", "--quiet", "--locked", "-p", "rapilog-rescue",
                    "--example", "make-test-image"], cwd=harness.REPO, check=True)
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version=1", "--no-deps"],
                                     cwd=harness.REPO, check=True, stdout=subprocess.PIPE).stdout)
    return f"{meta['target_directory']}/debug/examples/make-test-image"


@pytest.fixture(scope="session")
def ctl_bin() -> str:
    """rapilogctl linked statically (the guest's initramfs has no libc), in
    its own target directory like rapilog-rescue/build-static.sh."""
    triple = "x86_64-unknown-linux-gnu"
    target_dir = harness.REPO / "target" / "static"
    env = dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols")
    subprocess.run(["cargo", "build", "--quiet", "--locked", "--release", "-p", "rapilogctl",
                    "--bin", "rapilogctl", "--target", triple, "--target-dir", str(target_dir)],
                   cwd=harness.REPO, check=True, env=env)
    return str(target_dir / triple / "release" / "rapilogctl")


def _test_name(node) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", node.name)


@pytest.fixture
def guest_factory(request):
    guests: list[harness.Guest] = []

    def make(**kwargs) -> harness.Guest:
        name = _test_name(request.node) + (f"-{len(guests)}" if guests else "")
        kwargs.setdefault("krel", harness.DEFAULT_KREL)
        g = harness.Guest(name, **kwargs)
        guests.append(g)
        return g

    yield make
    failed = any(getattr(request.node, "rep_" + w, None) is not None and getattr(request.node, "rep_" + w).failed
                 for w in ("setup", "call"))
    for g in guests:
        if failed:
            print(f"\n=== guest {g.name}: logs in {g.log_dir}\n{g.console_tail(30)}")
        g.close()


@pytest.fixture(scope="module")
def booted(request):
    """One default guest (memmap region, pvpanic) shared by a module's tests
    that leave it in a usable state."""
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(request.module.__file__).stem) + "-shared"
    g = harness.Guest(name, memmap="64M$0x60000000", pvpanic=True)
    try:
        g.boot()
        yield g
    finally:
        g.close()
