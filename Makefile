# rapilog: top-level build.
#
#   make                 module for the default stock kernel, userspace tools,
#                        and the crash kernel's rescue initramfs
#   make KREL=...        module for any Rust-enabled Debian kernel (settings
#                        pinned in kernels/*.env or derived from the archive)
#   make kernels         which kernels the archive offers, Rust-enabled or not
#   make deb [KREL=...]  Debian packages in .cache/deb/: rapilog-tools and
#                        rapilog-modules-KREL (debhelper in a trixie chroot,
#                        lintian-checked; docs/install.md installs them)
#   make source-test     rapilog-source on a pristine trixie system: the module
#                        built on the "server" for a kernel without a prebuilt
#                        package, and the refusal of an uninstallable compiler set
#   make KDIR=/lib/modules/$(uname -r)/build
#                        module against headers installed on this machine
#                        (after `make host-rust-artifacts`)
#   make test            every test: host unit/property tests, lint, the demo,
#                        module checks, QEMU tests
#   make lint            rustfmt, clippy -D warnings, ruff, shellcheck
#   make demo            boot the stock kernel in QEMU and show rapilog working
#   make crash-test N=20 N panics under load (N/5 with ext4, N/5 power cuts per
#                        power-fail signal), 0 losses or it fails
#   make bench           benchmarks (never part of `make test`; ONLY=icount: instruction cost)
#   make ha-test         two QEMU guests, DRBD over rapilog: commit latency, then
#                        the primary killed and the secondary promoted (not in `make test`)
#   make rust-analyzer   rapilog-blk/rust-project.json, so rust-analyzer
#                        follows the module into the kernel crate
#
# Everything downloaded or built lives under .cache/ (ignored by git), reused
# when present and rebuilt when absent.

KREL ?= 7.3.4+deb13-amd64
KDIR ?=
export KREL KDIR

CACHE := $(CURDIR)/.cache
MODULE := $(CACHE)/build/$(KREL)/rapilog.ko

# `kernels` names a directory too: phony, so make always runs it.
.PHONY: kernels all module userspace rescue deb source-test test host-test lint crash-test ha-test demo bench host-deps host-rust-artifacts rust-analyzer clean distclean help

all: module userspace rescue

help:
	@sed -n '2,/^$$/p' Makefile | sed -e 's/^# \{0,1\}//' -e '/^$$/d'

# Kbuild decides what to rebuild; the script builds the chroot once if needed.
module:
	kernels/build-module.sh $(KREL)

userspace:
	cargo build --release --workspace

# The kernel's `make M=... rust-analyzer` for the module, in the build chroot
# (kernels/rust-analyzer.sh); the result is git-ignored.
rust-analyzer:
	kernels/rust-analyzer.sh $(KREL)

# Every kernel the Debian archive offers (trixie, trixie-backports, forky,
# sid), whether it has CONFIG_RUST and whether its compiler set is still served.
kernels:
	python3 kernels/kernel-env.py list

# The crash kernel's initramfs (static rapilog-rescue + the stock disk drivers
# of KREL, taken from the Debian archive's linux-modules package).
rescue:
	rapilog-rescue/build-initramfs.sh -k $(KREL) -r "$$(qemu-scripts/fetch-kernel.sh $(KREL))/root" \
		-o $(CACHE)/build/$(KREL)/rescue-initramfs.cpio.gz

# Debian packages for KREL (packaging/build-deb.sh builds the module too).
deb:
	packaging/build-deb.sh $(KREL)

# rapilog-source (rapilog-build-module and its kernel hooks) on a fresh
# debootstrap of trixie, under an overlay: tests/source/test_rapilog_source.py.
source-test:
	tests/source/run.sh

test:
	tests/run-all.sh

# Host-only tests (no QEMU, no kernel build): quick feedback while editing.
host-test:
	cargo test --workspace

# rustfmt, clippy -D warnings, ruff (Python), shellcheck (a phase of `make test`).
lint:
	tests/lint.sh

# Many crash cycles (tests/qemu/test_crash.py; `make test` runs 3) and a summary.
N ?= 20
crash-test:
	tests/crash/run.sh $(N)

demo:
	qemu-scripts/demo.py

# Losing the whole machine (docs/two-nodes.md): DRBD protocol C over rapilog
# in two QEMU guests; commit latency against DRBD on the raw disk, then the
# primary's QEMU killed, the secondary promoted, every acknowledged commit
# checked. About 4 minutes once the module and the rootfs image exist; never
# part of `make test`.
ha-test:
	tests/ha/run.sh

# fio and PostgreSQL on rapilog vs the raw disk, dm-writecache and brd, in one
# QEMU guest; QUICK=1 for a short run; ONLY=icount (the instruction-cost
# section alone, ~5 min), ONLY=profile (its per-function profile, not part
# of a full run), ONLY=fio, ONLY=drain, ONLY=pg or ONLY=rank for one part.
# Results: .cache/bench/DATE/MODE[-ONLY]/.
bench:
	bench/run.py $(if $(ONLY),--only $(ONLY))

host-deps:
	qemu-scripts/host-deps.sh

# For a machine that itself runs a supported kernel: regenerate the Rust
# artifacts its headers lack (needs linux-source-X.Y and the exact rustc,
# rust-src and bindgen named in the headers' .config), then `make KDIR=...`.
host-rust-artifacts:
	kernels/rust-artifacts.sh /usr/src/linux-headers-$$(uname -r) \
		/usr/src/linux-source-$$(uname -r | cut -d. -f1,2).tar.xz $(CACHE)/host-rust-artifacts

clean:
	rm -f rapilog-blk/*.o rapilog-blk/sys/*.o rapilog-blk/*.ko rapilog-blk/*.mod rapilog-blk/*.mod.c \
		rapilog-blk/.*.cmd rapilog-blk/sys/.*.cmd rapilog-blk/modules.order .*.cmd Module.symvers modules.order
	rm -rf $(CACHE)/build
	cargo clean

# Also drops the build chroots and guest images (several GB; slow to rebuild).
distclean: clean
	rm -rf $(CACHE)
