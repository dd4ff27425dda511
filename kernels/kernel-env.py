#!/usr/bin/env python3
"""Which Debian kernels rapilog can be built for, and the build settings of each.

    kernels/kernel-env.py list              every Debian kernel (amd64 flavours) the
                                            archive offers in trixie, trixie-backports,
                                            forky and sid: Rust-enabled or not, its
                                            compiler set, whether that set can be installed
    kernels/kernel-env.py derive KREL       the settings of one kernel as KEY=VALUE lines
                                            (the format of kernels/<KREL>.env)
    kernels/kernel-env.py check KREL        derive, and compare with the committed pin
                                            kernels/<KREL>.env (exit 1 on a difference)
    kernels/kernel-env.py apt KREL          on a server with linux-headers-KREL installed:
                                            the exact packages the module's build needs,
                                            as this machine's apt offers them (used by
                                            rapilog-build-module, package rapilog-source)

An out-of-tree Rust module must be built with exactly the rustc, bindgen and
gcc the kernel was built with (the Rust metadata of the kernel crate is only
accepted by the rustc that made it). The kernel's own `.config`, shipped in
its `linux-headers-KREL` package, names them (CONFIG_RUSTC_VERSION_TEXT,
CONFIG_BINDGEN_VERSION_TEXT, CONFIG_CC_VERSION_TEXT); this program reads that
`.config` and finds those upstream versions in the Debian archive. So any
Rust-enabled Debian kernel works without editing files: `make KREL=...` uses
the committed pin if there is one (the default kernel keeps one, so its build
is reproducible) and otherwise derives the settings into
.cache/kernels/KREL.env (kernels/lib.sh, load_kernel_env).

Everything downloaded (Packages indices, headers packages) is kept under
$RAPILOG_CACHE/archive; indices older than six hours are fetched again.
Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import functools
import io
import lzma
import os
import re
import shlex
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("RAPILOG_CACHE") or TOP / ".cache")
ARCHIVE = CACHE / "archive"
INDEX_MAX_AGE_S = 6 * 3600

# Suites that serve kernels, and the suite whose compilers each one's kernels
# were built with (a backports kernel is built in its base release).
KERNEL_SUITES = {
    "trixie": "trixie",
    "trixie-backports": "trixie",
    "forky": "forky",
    "sid": "sid",
}
# elfutils must come from the kernel's backports suite when it serves them:
# the backports headers (linux-kbuild) depend on that newer libelf.
ELFUTILS = ["libelf-dev", "libelf1t64", "libdw1t64"]
FLAVOURS = ("amd64", "cloud-amd64", "rt-amd64")


class Refusal(Exception):
    """A kernel rapilog cannot be built for, with the reason in one line."""


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


@functools.cache
def mirror() -> str:
    """The Debian archive URI, as kernels/lib.sh finds it (asked once)."""
    out = subprocess.run(
        ["bash", "-c", f". {TOP}/kernels/lib.sh && debian_mirror"],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0 or not out.stdout.strip():
        raise Refusal(out.stderr.strip() or "cannot find a Debian mirror (set DEBIAN_MIRROR)")
    return out.stdout.strip()


def fetch(url: str, dest: Path, max_age_s: float | None) -> Path:
    """Downloads `url` to `dest` unless a fresh enough copy is there."""
    if dest.exists() and (max_age_s is None or time.time() - dest.stat().st_mtime < max_age_s):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".tmp.{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=120) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise Refusal(f"cannot download {url}: {e}") from e
    tmp.replace(dest)
    return dest


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    filename: str


@functools.cache
def packages(suite: str, part: str = "binary-amd64") -> dict[str, list[Package]]:
    """The suite's main/<part> index: package name -> every version offered."""
    path = fetch(
        f"{mirror()}/dists/{suite}/main/{part}/Packages.xz",
        ARCHIVE / f"{suite}-main-{part}.Packages.xz",
        INDEX_MAX_AGE_S,
    )
    out: dict[str, list[Package]] = {}
    text = lzma.decompress(path.read_bytes()).decode("utf-8", "replace")
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.M))
        if "Package" in fields:
            p = Package(fields["Package"], fields.get("Version", ""), fields.get("Filename", ""))
            out.setdefault(p.name, []).append(p)
    return out


def version_sort_key(v: str):
    """A total order close enough to dpkg's for choosing among one upstream
    version's Debian revisions (checked with dpkg where it matters)."""
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", v)]


def dpkg_newest(versions: list[str]) -> str:
    best = versions[0]
    for v in versions[1:]:
        if subprocess.run(["dpkg", "--compare-versions", v, "gt", best], check=False).returncode == 0:
            best = v
    return best


def upstream(debian_version: str) -> str:
    """`1.85.1+dfsg1-1+deb13u1` -> `1.85.1`; `0.71.1-6` -> `0.71.1`."""
    v = debian_version.split(":", 1)[-1].rsplit("-", 1)[0]
    return re.split(r"[+~]", v, maxsplit=1)[0]


def kernel_config(krel: str, ksuite: str, version: str) -> str:
    """The `.config` of kernel `krel` from its linux-headers package."""
    name = f"linux-headers-{krel}"
    [pkg] = [p for p in packages(ksuite)[name] if p.version == version]
    deb = fetch(f"{mirror()}/{pkg.filename}", ARCHIVE / "debs" / Path(pkg.filename).name, None)
    member = f"./usr/src/linux-headers-{krel}/.config"
    config_copy = ARCHIVE / "configs" / f"{krel}_{version}.config"
    if not config_copy.exists():
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=False)
        if tar.returncode != 0:
            raise Refusal(f"cannot read {deb}: {tar.stderr.decode(errors='replace').strip()}")
        with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
            f = t.extractfile(member)
            if f is None:
                raise Refusal(f"{deb.name} has no {member}")
            config_copy.parent.mkdir(parents=True, exist_ok=True)
            config_copy.write_bytes(f.read())
    return config_copy.read_text()


def config_value(config: str, key: str) -> str | None:
    m = re.search(rf"^{key}=(.*)$", config, re.M)
    return m.group(1).strip('"') if m else None


def find_kernel(krel: str) -> tuple[str, str]:
    """(suite serving linux-headers-KREL, its newest version there)."""
    for ksuite in KERNEL_SUITES:
        found = packages(ksuite).get(f"linux-headers-{krel}")
        if found:
            return ksuite, dpkg_newest([p.version for p in found])
    raise Refusal(
        f"no suite of {', '.join(KERNEL_SUITES)} offers linux-headers-{krel}; "
        "`kernels/kernel-env.py list` shows the kernels the archive has"
    )


def debian_version_of(name: str, want_upstream: str, suites: list[str]) -> str | None:
    """The newest Debian version of package `name` whose upstream version is
    `want_upstream`, from the first suite of `suites` that has one."""
    for suite in suites:
        versions = [p.version for p in packages(suite).get(name, []) if upstream(p.version) == want_upstream]
        if versions:
            return dpkg_newest(versions)
    return None


@dataclass(frozen=True)
class CompilerSet:
    """The compilers a kernel's `.config` names (the kernel was built with them)."""
    rustc_text: str      # CONFIG_RUSTC_VERSION_TEXT, e.g. "rustc 1.85.1 (4eb161250 2025-03-15) ..."
    bindgen_text: str    # CONFIG_BINDGEN_VERSION_TEXT, e.g. "bindgen 0.71.1"
    cc_text: str         # CONFIG_CC_VERSION_TEXT, e.g. "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"
    rustc_match: re.Match
    bindgen_match: re.Match
    gcc_match: re.Match

    @property
    def rustc(self) -> str:
        return self.rustc_match.group(1)

    @property
    def bindgen(self) -> str:
        return self.bindgen_match.group(1)

    @property
    def gcc(self) -> str:
        return f"gcc-{self.gcc_match.group(1)}"


def compiler_set(krel: str, config: str, where: str = "") -> CompilerSet:
    """The compiler set of kernel `krel` from its `.config` text, or a Refusal
    (no CONFIG_RUST, or a set this program cannot read)."""
    if config_value(config, "CONFIG_RUST") != "y":
        raise Refusal(
            f"{krel}{where} is built without Rust (CONFIG_RUST is not set): rapilog needs a Rust-enabled kernel"
        )
    rustc_text = config_value(config, "CONFIG_RUSTC_VERSION_TEXT") or ""
    bindgen_text = config_value(config, "CONFIG_BINDGEN_VERSION_TEXT") or ""
    cc_text = config_value(config, "CONFIG_CC_VERSION_TEXT") or ""
    rustc_up = re.search(r"rustc (\d+\.\d+\.\d+)", rustc_text)
    bindgen_up = re.search(r"bindgen (\d+\.\d+\.\d+)", bindgen_text)
    gcc = re.search(r"\bgcc-(\d+)\b", cc_text)
    if not (rustc_up and bindgen_up and gcc):
        raise Refusal(
            f"{krel}: cannot read the compiler set from its .config ({rustc_text!r}, {bindgen_text!r}, {cc_text!r})"
        )
    return CompilerSet(rustc_text, bindgen_text, cc_text, rustc_up, bindgen_up, gcc)


def derive(krel: str) -> dict[str, str]:
    """The build settings of kernel `krel` (the keys of kernels/*.env)."""
    m = re.fullmatch(r"(\d+)\.(\d+)\.\d+\+deb\d+-(?:cloud-|rt-)?amd64", krel)
    if not m:
        raise Refusal(f"{krel!r} is not a Debian amd64 kernel release (e.g. 7.3.4+deb13-amd64)")
    ksuite, kversion = find_kernel(krel)
    suite = KERNEL_SUITES[ksuite]
    config = kernel_config(krel, ksuite, kversion)
    cs = compiler_set(krel, config, f" ({ksuite})")
    rustc_text, bindgen_text, cc_text = cs.rustc_text, cs.bindgen_text, cs.cc_text
    rustc_up, bindgen_up, gcc = cs.rustc_match, cs.bindgen_match, cs.gcc_match
    sources = [suite] if ksuite == suite else [suite, ksuite]
    rustc = debian_version_of("rustc", rustc_up.group(1), sources)
    # rust-src is built from the same source as rustc: it must have rustc's version.
    rust_src = rustc and any(p.version == rustc for s in sources for p in packages(s, "binary-all").get("rust-src", []))
    bindgen = debian_version_of("bindgen", bindgen_up.group(1), sources)
    missing = []
    if not rustc or not rust_src:
        offered = sorted({p.version for s in sources for p in packages(s).get("rustc", [])}, key=version_sort_key)
        where = "/".join(sources)
        missing.append(f"rustc {rustc_up.group(1)} (the archive's {where} offers {', '.join(offered) or 'none'})")
    if not bindgen:
        offered = sorted({p.version for s in sources for p in packages(s).get("bindgen", [])}, key=version_sort_key)
        missing.append(f"bindgen {bindgen_up.group(1)} (offered: {', '.join(offered) or 'none'})")
    if not any(f"gcc-{gcc.group(1)}" in packages(s) for s in sources):
        missing.append(f"gcc-{gcc.group(1)}")
    if missing:
        raise Refusal(
            f"{krel} was built with {rustc_text}, {bindgen_text}, {cc_text}; the archive no longer serves "
            f"{'; '.join(missing)}: a module for this kernel cannot be built (the Rust metadata must come from "
            "the same compiler); use a kernel whose compiler set the archive serves (`kernels/kernel-env.py list`)"
        )
    backports = ""
    if ksuite != suite and all(p in packages(ksuite) for p in ELFUTILS):
        backports = " ".join(ELFUTILS)
    return {
        "KREL": krel,
        "KPKG_VERSION": kversion,
        "SUITE": suite,
        "KSUITE": ksuite,
        "KSERIES": f"{m.group(1)}.{m.group(2)}",
        "RUSTC_VERSION": rustc or "",
        "BINDGEN_VERSION": bindgen or "",
        "GCC": f"gcc-{gcc.group(1)}",
        "BACKPORTS_PKGS": backports,
    }


def apt_versions(name: str) -> list[str]:
    """Every version of package `name` this machine's apt can install, and the
    installed one (rapilog-build-module on a server: apt's own view of the
    archive, its pins and suites, not the mirror's indices)."""
    versions = []
    out = subprocess.run(["apt-cache", "madison", name], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 3 and cells[0] == name and cells[1] not in versions:
            versions.append(cells[1])
    inst = installed_version(name)
    if inst and inst not in versions:
        versions.append(inst)
    return versions


def installed_version(name: str, states: tuple[str, ...] = ("installed",)) -> str | None:
    """The version of `name` dpkg has in one of `states` (a kernel hook runs
    while its linux-headers package is half-configured)."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", name],
                         capture_output=True, text=True, check=False)
    state, _, version = out.stdout.partition(" ")
    return version if out.returncode == 0 and state in states else None


def pick(name: str, want_upstream: str, versions: list[str]) -> str | None:
    """The installed version of `name` if its upstream version is the wanted
    one, else the newest such version apt offers."""
    good = [v for v in versions if upstream(v) == want_upstream]
    inst = installed_version(name)
    if inst in good:
        return inst
    return dpkg_newest(good) if good else None


def apt_requirements(krel: str, headers: Path) -> dict[str, str]:
    """What building the module for `krel` on this machine needs, as exact
    package versions apt can install: the compiler set the headers' .config
    names, and the kernel's own linux-source. A Refusal in one line when apt
    cannot install that set (naming the kernel, the compilers it needs and
    what apt offers)."""
    m = re.fullmatch(r"(\d+)\.(\d+)\.\d+.*", krel)
    config_path = headers / ".config"
    if not m or not config_path.is_file():
        raise Refusal(f"{config_path} not found: install linux-headers-{krel} first")
    cs = compiler_set(krel, config_path.read_text())
    kseries = f"{m.group(1)}.{m.group(2)}"
    offered = {n: apt_versions(n) for n in ("rustc", "rust-src", "bindgen", cs.gcc)}
    rustc = pick("rustc", cs.rustc, offered["rustc"])
    rust_src = rustc if rustc in offered["rust-src"] else None
    bindgen = pick("bindgen", cs.bindgen, offered["bindgen"])
    missing = []
    if not rustc or not rust_src:
        missing.append(f"rustc and rust-src {cs.rustc} (apt offers rustc {', '.join(offered['rustc']) or 'none'}; "
                       f"rust-src {', '.join(offered['rust-src']) or 'none'})")
    if not bindgen:
        missing.append(f"bindgen {cs.bindgen} (apt offers {', '.join(offered['bindgen']) or 'none'})")
    if not offered[cs.gcc]:
        missing.append(f"{cs.gcc} (apt offers none)")
    if missing:
        raise Refusal(
            f"cannot build rapilog for kernel {krel}: it was built with {cs.rustc_text}, {cs.bindgen_text} and "
            f"{cs.cc_text}, and apt here cannot install {'; '.join(missing)}. The module's Rust metadata can only "
            f"come from that exact compiler set. Add the Debian suite that serves it to apt's sources and run "
            f"'apt update', or install the prebuilt package rapilog-modules-{krel} if there is one, or boot a "
            f"kernel whose compiler set apt offers"
        )
    kversion = installed_version(f"linux-headers-{krel}", ("installed", "half-configured", "unpacked")) or ""
    source = f"linux-source-{kseries}"
    if not kversion:
        raise Refusal(f"linux-headers-{krel} is not installed by dpkg ({headers} alone does not say which "
                      f"{source} it needs): apt install linux-headers-{krel}")
    if kversion not in apt_versions(source):
        raise Refusal(
            f"cannot build rapilog for kernel {krel}: its Rust artifacts are made from {source} {kversion} "
            f"(the headers' version), and apt offers {', '.join(apt_versions(source)) or 'none'}; "
            f"run 'apt update', or install the prebuilt package rapilog-modules-{krel} if there is one"
        )
    # libelf-dev must match the libelf the kernel's headers pulled in (a
    # backports kernel's linux-kbuild depends on backports' libelf1t64).
    libelf = installed_version("libelf1t64")
    if libelf not in apt_versions("libelf-dev"):
        libelf = ""
    return {
        "KREL": krel,
        "KSERIES": kseries,
        "KPKG_VERSION": kversion,
        "RUSTC_VERSION": rustc or "",
        "BINDGEN_VERSION": bindgen or "",
        "GCC": cs.gcc,
        "LIBELF_VERSION": libelf or "",
        "RUSTC_TEXT": cs.rustc_text,
    }


def env_text(settings: dict[str, str]) -> str:
    lines = [
        f"# Derived by kernels/kernel-env.py from the Debian archive and {settings['KREL']}'s .config",
        f"# (linux-headers-{settings['KREL']} {settings['KPKG_VERSION']}, {settings['KSUITE']}).",
    ]
    for k, v in settings.items():
        lines.append(f'{k}="{v}"' if " " in v or not v else f"{k}={v}")
    return "\n".join(lines) + "\n"


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"([A-Z_]+)=\"?(.*?)\"?", line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def cmd_list(_args) -> int:
    rows = []
    for ksuite in KERNEL_SUITES:
        for name, pkgs in packages(ksuite).items():
            m = re.fullmatch(r"linux-headers-(\d+\.\d+\.\d+\+deb\d+-(?:[a-z]+-)?amd64)", name)
            if not m or not m.group(1).endswith(FLAVOURS):
                continue
            krel = m.group(1)
            version = dpkg_newest([p.version for p in pkgs])
            pinned = (TOP / "kernels" / f"{krel}.env").exists()
            try:
                s = derive(krel)
                compilers = f"rustc {upstream(s['RUSTC_VERSION'])}, {s['GCC']}"
                rows.append((krel, ksuite, version, "yes", compilers, "yes", pinned))
            except Refusal as e:
                rust = "no" if "without Rust" in str(e) else "yes"
                why = "" if rust == "no" else str(e).split("the archive no longer serves ", 1)[-1].split(":", 1)[0]
                rows.append((krel, ksuite, version, rust, "-" if rust == "no" else why, "no", pinned))
    rows.sort(key=lambda r: (list(KERNEL_SUITES).index(r[1]), version_sort_key(r[0])))
    head = ("kernel (KREL)", "suite", "version", "Rust", "compiler set", "buildable", "pinned")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        cells = [("pin" if c else "derived") if isinstance(c, bool) else str(c) for c in r]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    print("\nbuildable: `make KREL=<kernel>` builds the module for it (settings derived unless pinned in kernels/).")
    return 0


def cmd_derive(args) -> int:
    sys.stdout.write(env_text(derive(args.krel)))
    return 0


def cmd_check(args) -> int:
    pin = TOP / "kernels" / f"{args.krel}.env"
    if not pin.exists():
        die(f"no committed pin {pin}")
    derived, pinned = derive(args.krel), read_env(pin)
    diff = [(k, pinned.get(k, ""), v) for k, v in derived.items() if pinned.get(k, "") != v]
    for k, p, d in diff:
        print(f"{pin.name}: {k}={p!r} but the archive and the kernel's .config give {d!r}")
    if diff:
        print(f"update {pin} (kernels/README.md, 'Bumping a kernel'), or delete it to use the derived settings")
        return 1
    print(f"{pin.name}: matches what the archive and {args.krel}'s .config give")
    return 0


def cmd_apt(args) -> int:
    headers = Path(args.headers or f"/usr/src/linux-headers-{args.krel}")
    # KEY='VALUE' lines that a shell sources (rapilog-build-module).
    for k, v in apt_requirements(args.krel, headers).items():
        print(f"{k}={shlex.quote(v)}")
    return 0


def main() -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `list | head` ends quietly
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the kernels the archive offers, Rust-enabled or not").set_defaults(func=cmd_list)
    for name, func, what in [("derive", cmd_derive, "print KREL's settings (kernels/*.env format)"),
                             ("check", cmd_check, "compare the committed pin of KREL with the derived settings")]:
        p = sub.add_parser(name, help=what)
        p.add_argument("krel", metavar="KREL", help="a kernel release, e.g. 7.2.12+deb13-amd64")
        p.set_defaults(func=func)
    p = sub.add_parser("apt", help="on a server: the exact packages KREL's module build needs, as apt offers them")
    p.add_argument("krel", metavar="KREL", help="a kernel release whose linux-headers package is installed")
    p.add_argument("--headers", metavar="DIR", help="its headers (default /usr/src/linux-headers-KREL)")
    p.set_defaults(func=cmd_apt)
    args = ap.parse_args()
    try:
        return args.func(args)
    except Refusal as e:
        die(str(e))
    return 1


if __name__ == "__main__":
    sys.exit(main())
