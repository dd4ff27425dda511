"""kernels/kernel-env.py: deriving a kernel's build settings (issue 20).

Offline: the archive's indices and the kernel's .config are replaced by
fixtures, so these check the derivation rules (which Debian version of the
compiler the .config names, which suite, the refusals), not the archive.
The `module-other` phase of `make test` runs the real thing against the
archive (`kernel-env.py check` of the pinned kernel, a build for another).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

spec = importlib.util.spec_from_file_location("kernel_env", REPO / "kernels" / "kernel-env.py")
kernel_env = importlib.util.module_from_spec(spec)
sys.modules["kernel_env"] = kernel_env  # dataclasses look their module up there
spec.loader.exec_module(kernel_env)
Package = kernel_env.Package

CONFIG_RUST = """\
CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"
CONFIG_RUST=y
CONFIG_RUSTC_VERSION_TEXT="rustc 1.85.1 (4eb161250 2025-03-15) (built from a source tarball)"
CONFIG_BINDGEN_VERSION_TEXT="bindgen 0.71.1"
"""
CONFIG_NO_RUST = """\
CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"
# CONFIG_RUST is not set
"""


def index(*pkgs: tuple[str, str]) -> dict[str, list]:
    out: dict[str, list] = {}
    for name, version in pkgs:
        out.setdefault(name, []).append(Package(name, version, f"pool/{name}_{version}.deb"))
    return out


@pytest.fixture
def archive(monkeypatch):
    """A small archive: trixie has the compilers, trixie-backports the kernels."""
    suites = {
        ("trixie", "binary-amd64"): index(
            ("rustc", "1.85.0+dfsg1-1"), ("rustc", "1.85.1+dfsg1-1+deb13u1"), ("rustc", "1.85.1+dfsg1-1"),
            ("bindgen", "0.71.1-6"), ("gcc-14", "14.2.0-19"),
        ),
        ("trixie", "binary-all"): index(("rust-src", "1.85.1+dfsg1-1+deb13u1"), ("rust-src", "1.85.1+dfsg1-1")),
        ("trixie-backports", "binary-amd64"): index(
            ("linux-headers-7.2.12+deb13-amd64", "7.2.12-1~bpo13+1"),
            ("linux-headers-7.9.1+deb13-amd64", "7.9.1-1~bpo13+1"),
            ("linux-headers-6.99.1+deb13-amd64", "6.99.1-1~bpo13+1"),
            ("libelf-dev", "0.193-1~bpo13+1"), ("libelf1t64", "0.193-1~bpo13+1"), ("libdw1t64", "0.193-1~bpo13+1"),
        ),
        ("trixie-backports", "binary-all"): index(),
    }
    configs = {
        "7.2.12+deb13-amd64": CONFIG_RUST,
        "7.9.1+deb13-amd64": CONFIG_RUST.replace("rustc 1.85.1", "rustc 1.99.0"),
        "6.99.1+deb13-amd64": CONFIG_NO_RUST,
    }
    monkeypatch.setattr(kernel_env, "packages", lambda suite, part="binary-amd64": suites.get((suite, part), {}))
    monkeypatch.setattr(kernel_env, "kernel_config", lambda krel, ksuite, version: configs[krel])
    return suites


@pytest.mark.parametrize(
    "debian, up",
    [
        ("1.85.1+dfsg1-1+deb13u1", "1.85.1"),
        ("0.71.1-6", "0.71.1"),
        ("1:2.3~rc1-2", "2.3"),
        ("7.2.12-1~bpo13+1", "7.2.12"),
    ],
)
def test_upstream_version(debian, up):
    assert kernel_env.upstream(debian) == up


def test_derives_the_exact_compiler_set(archive):
    s = kernel_env.derive("7.2.12+deb13-amd64")
    assert s == {
        "KREL": "7.2.12+deb13-amd64",
        "KPKG_VERSION": "7.2.12-1~bpo13+1",
        "SUITE": "trixie",
        "KSUITE": "trixie-backports",
        "KSERIES": "7.2",
        # The newest Debian revision of the upstream version the .config names.
        "RUSTC_VERSION": "1.85.1+dfsg1-1+deb13u1",
        "BINDGEN_VERSION": "0.71.1-6",
        "GCC": "gcc-14",
        "BACKPORTS_PKGS": "libelf-dev libelf1t64 libdw1t64",
    }


def test_env_text_round_trips(archive, tmp_path):
    s = kernel_env.derive("7.2.12+deb13-amd64")
    f = tmp_path / "k.env"
    f.write_text(kernel_env.env_text(s))
    assert kernel_env.read_env(f) == s


def test_the_committed_pins_parse_to_every_key():
    for pin in (REPO / "kernels").glob("*.env"):
        got = kernel_env.read_env(pin)
        keys = {"KREL", "KPKG_VERSION", "SUITE", "KSUITE", "KSERIES", "RUSTC_VERSION", "BINDGEN_VERSION", "GCC"}
        assert set(got) >= keys, pin
        assert got["KREL"] == pin.stem


def test_refuses_a_kernel_without_rust(archive):
    with pytest.raises(kernel_env.Refusal, match=r"without Rust \(CONFIG_RUST is not set\)"):
        kernel_env.derive("6.99.1+deb13-amd64")


def test_refuses_when_the_compiler_is_gone_naming_what_is_offered(archive):
    with pytest.raises(kernel_env.Refusal) as e:
        kernel_env.derive("7.9.1+deb13-amd64")
    msg = str(e.value)
    assert "rustc 1.99.0" in msg and "1.85.1+dfsg1-1+deb13u1" in msg and "cannot be built" in msg


def test_refuses_an_unknown_kernel(archive):
    with pytest.raises(kernel_env.Refusal, match="kernel-env.py list"):
        kernel_env.derive("7.2.99+deb13-amd64")


@pytest.mark.parametrize("bad", ["7.3.4", "7.3.4+deb13-arm64", "../etc/passwd"])
def test_refuses_a_malformed_release(archive, bad):
    with pytest.raises(kernel_env.Refusal, match="not a Debian amd64 kernel release"):
        kernel_env.derive(bad)


# kernel-env.py apt KREL: what rapilog-build-module (package rapilog-source)
# asks on a server. apt's view (apt-cache madison) and dpkg's are replaced by
# a fixture; the real thing runs in `make source-test`.
@pytest.fixture
def server(monkeypatch, tmp_path):
    offered = {
        "rustc": ["1.98.1+dfsg1-1~bpo13+1", "1.85.1+dfsg1-1+deb13u1"],
        "rust-src": ["1.98.1+dfsg1-1~bpo13+1", "1.85.1+dfsg1-1+deb13u1"],
        "bindgen": ["0.71.1-6"],
        "gcc-14": ["14.2.0-19"],
        "linux-source-7.2": ["7.2.12-1~bpo13+1"],
        "libelf-dev": ["0.196-1~bpo13+2", "0.192-4"],
    }
    installed = {"linux-headers-7.2.12+deb13-amd64": ("half-configured", "7.2.12-1~bpo13+1"),
                 "libelf1t64": ("installed", "0.196-1~bpo13+2")}
    monkeypatch.setattr(kernel_env, "apt_versions", lambda name: list(offered.get(name, [])))

    def installed_version(name, states=("installed",)):
        state, version = installed.get(name, ("not-installed", ""))
        return version if state in states else None

    monkeypatch.setattr(kernel_env, "installed_version", installed_version)
    monkeypatch.setattr(kernel_env, "dpkg_newest", lambda vs: max(vs, key=kernel_env.version_sort_key))
    hdr = tmp_path / "linux-headers-7.2.12+deb13-amd64"
    hdr.mkdir()
    (hdr / ".config").write_text(CONFIG_RUST)
    return offered, hdr


def test_apt_requirements_pick_the_exact_versions(server):
    _, hdr = server
    r = kernel_env.apt_requirements("7.2.12+deb13-amd64", hdr)
    assert r["RUSTC_VERSION"] == "1.85.1+dfsg1-1+deb13u1"  # not backports' newer 1.98.1
    assert r["BINDGEN_VERSION"] == "0.71.1-6"
    assert r["GCC"] == "gcc-14"
    # The headers are half-configured while their hook runs: still their version.
    assert r["KPKG_VERSION"] == "7.2.12-1~bpo13+1" and r["KSERIES"] == "7.2"
    assert r["LIBELF_VERSION"] == "0.196-1~bpo13+2"  # the libelf the backports headers pulled in


def test_apt_refusal_names_kernel_compilers_and_offer(server):
    _, hdr = server
    (hdr / ".config").write_text(CONFIG_RUST.replace("rustc 1.85.1", "rustc 1.97.1").replace("gcc-14", "gcc-16"))
    with pytest.raises(kernel_env.Refusal) as e:
        kernel_env.apt_requirements("7.2.12+deb13-amd64", hdr)
    msg = str(e.value)
    assert "\n" not in msg
    assert "kernel 7.2.12+deb13-amd64" in msg and "rustc 1.97.1" in msg
    assert "apt offers rustc 1.98.1+dfsg1-1~bpo13+1, 1.85.1+dfsg1-1+deb13u1" in msg
    assert "gcc-16 (apt offers none)" in msg


def test_apt_refuses_without_headers_or_source(server, tmp_path):
    offered, hdr = server
    with pytest.raises(kernel_env.Refusal, match="install linux-headers-7.2.11"):
        kernel_env.apt_requirements("7.2.11+deb13-amd64", tmp_path / "nothing")
    offered["linux-source-7.2"] = ["7.2.13-1~bpo13+1"]
    with pytest.raises(kernel_env.Refusal, match=r"linux-source-7.2 7.2.12-1~bpo13\+1.*apt offers 7.2.13"):
        kernel_env.apt_requirements("7.2.12+deb13-amd64", hdr)
