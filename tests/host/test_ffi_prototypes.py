"""The module's C helpers and their Rust declarations agree.

rapilog-blk/sys/helpers.h declares the C functions of sys/helpers.c,
sys/powerfail_signals.c and sys/lifecycle_events.c (the .c files include it,
so the C compiler holds them to it); the Rust side declares the same
functions by hand in `extern "C"` blocks in rapilog-blk/sys/*.rs, which no
compiler compares with anything. This test does: every prototype of
helpers.h must have exactly one Rust declaration with the same name, the
same number of arguments and the same types (through the small mapping
below, which knows the typedefs the two sides spell differently), and
every Rust declaration must have a C prototype (kernel functions the Rust
side declares itself, such as crc32c(), are compared with their kernel
prototype, copied below). The #define and enum values that cross the
boundary are compared too.

The last tests feed altered copies of the sources to the same comparison,
to show that it catches each kind of mismatch.
"""
import re
from pathlib import Path

import pytest

SYS = Path(__file__).resolve().parents[2] / "rapilog-blk" / "sys"

# Kernel functions a Rust file declares itself (not in helpers.h), with
# their prototypes from the kernel's headers.
KERNEL_PROTOTYPES = {
    # include/linux/crc32.h
    "crc32c": "u32 crc32c(u32 crc, const void *p, size_t len);",
}

# C scalar types -> a common name; Rust's spelling of the same type -> the
# same name. Struct types map to their tag on both sides (`struct bio` and
# `bindings::bio` both become `bio`).
C_TYPES = {
    "void": "void",
    "bool": "bool",
    "char": "char",
    "int": "int",
    "unsigned int": "uint",
    "unsigned short": "ushort",
    "unsigned long": "ulong",
    "u32": "u32",
    "u64": "u64",
    "size_t": "usize",
    # typedefs of the x86-64 kernel
    "sector_t": "u64",
    "phys_addr_t": "u64",
    "pteval_t": "pteval_t",
    "blk_features_t": "blk_features_t",
    "pte_t": "pte_t",
}
RUST_TYPES = {
    "c_void": "void",
    "bool": "bool",
    "c_char": "char",
    "c_int": "int",
    "c_uint": "uint",
    "c_ushort": "ushort",
    "c_ulong": "ulong",
    "u32": "u32",
    "u64": "u64",
    "usize": "usize",
    "pteval_t": "pteval_t",
    "blk_features_t": "blk_features_t",
    "pte_t": "pte_t",
}
# Struct tags both sides may name (C `struct X`, Rust `X` from bindings).
STRUCTS = {"bio", "bio_set", "block_device", "file", "gendisk", "page", "pci_dev", "task_struct"}

# C constants the Rust side mirrors: C name -> (Rust file, Rust const name).
CONSTANTS = {
    "RAPILOG_POWERFAIL_BUTTON": ("powerfail_signals.rs", "BUTTON"),
    "RAPILOG_POWERFAIL_NMI": ("powerfail_signals.rs", "NMI"),
    "RAPILOG_STOP_RESTART": ("lifecycle_events.rs", "STOP_RESTART"),
    "RAPILOG_STOP_HALT": ("lifecycle_events.rs", "STOP_HALT"),
    "RAPILOG_PM_SUSPEND_PREPARE": ("lifecycle_events.rs", "PM_SUSPEND_PREPARE"),
    "RAPILOG_PM_HIBERNATE_PREPARE": ("lifecycle_events.rs", "PM_HIBERNATE_PREPARE"),
}
# C constants the Rust side handles in a `_ =>` arm instead of naming them.
DEFAULT_ARM = {"RAPILOG_STOP_POWER_OFF", "RAPILOG_PM_RESUMED"}
# enum rapilog_dma_path -> the DmaPath variant sys/iommu.rs maps it to.
DMA_PATHS = {
    "RAPILOG_DMA_TRANSLATED": "Translated",
    "RAPILOG_DMA_BLOCKED": "Blocked",
    "RAPILOG_DMA_IDENTITY": "Identity",
    "RAPILOG_DMA_NO_IOMMU": "NoIommu",
    "RAPILOG_DMA_UNKNOWN": "Unknown",
}


class Mismatch(Exception):
    pass


def split_top(text, sep=","):
    """Splits at `sep` outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts]


# --- C ----------------------------------------------------------------------


def c_strip(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return text


def c_type(decl, named=False):
    """Canonical form of a C type; `named`: a parameter, whose last word is
    its name (every parameter in helpers.h has one): `const char *path` ->
    `*const char`."""
    decl = " ".join(decl.split())
    m = re.fullmatch(r"(.*?)\(\s*\*\s*\w*\s*\)\s*\((.*)\)", decl)
    if m:  # function pointer
        ret, params = m.groups()
        return "fn(" + ", ".join(c_params(params)) + ") -> " + c_type(ret)
    stars = decl.count("*")
    base = decl.replace("*", " ").split()
    if named:
        if len(base) < 2:
            raise Mismatch(f"C parameter {decl!r} has no name")
        base = base[:-1]
    const = "const" in base[:1]
    base = [w for w in base if w != "const"]
    name = " ".join(base)
    if name.startswith("struct "):
        tag = name.split()[1]
        if tag not in STRUCTS:
            raise Mismatch(f"C type {decl!r}: struct {tag} is not in the mapping table")
        t = tag
    elif name in C_TYPES:
        t = C_TYPES[name]
    else:
        raise Mismatch(f"C type {decl!r}: {name!r} is not in the mapping table")
    for i in range(stars):
        # `const` before the base type qualifies the innermost pointee.
        t = ("*const " if (const and i == 0) else "*mut ") + t
    return t


def c_params(text):
    params = split_top(text)
    if params in ([], ["void"]):
        return []
    return [c_type(p, named=True) for p in params]


def c_prototypes(header_text):
    """name -> (return type, [parameter types]) for every function prototype."""
    text = c_strip(header_text)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    text = re.sub(r"\benum\s+\w+\s*\{.*?\}\s*;", " ", text, flags=re.S)
    protos = {}
    for stmt in text.split(";"):
        stmt = " ".join(stmt.split())
        m = re.fullmatch(r"(.+?)\b(\w+)\s*\((.*)\)", stmt)
        if not m:
            continue
        ret, name, params = m.groups()
        if name in protos:
            raise Mismatch(f"C: {name} is declared twice")
        protos[name] = (c_type(ret), c_params(params))
    return protos


def c_defines(header_text):
    return {m[1]: int(m[2]) for m in re.finditer(r"#define\s+(RAPILOG_\w+)\s+(\d+)u?\b", header_text)}


def c_enum(header_text, name):
    m = re.search(r"enum\s+" + name + r"\s*\{(.*?)\}", c_strip(header_text), re.S)
    assert m, f"enum {name} not in helpers.h"
    return {k: int(v) for k, v in re.findall(r"(\w+)\s*=\s*(\d+)", m[1])}


# --- Rust -------------------------------------------------------------------


def rust_type(text):
    text = " ".join(text.split())
    m = re.fullmatch(r"(?:unsafe\s+)?extern\s+\"C\"\s+fn\s*\((.*)\)(?:\s*->\s*(.+))?", text)
    if m:
        params, ret = m.groups()
        return "fn(" + ", ".join(rust_params(params)) + ") -> " + (rust_type(ret) if ret else "void")
    m = re.fullmatch(r"\*\s*(mut|const)\s+(.+)", text)
    if m:
        return f"*{m[1]} " + rust_type(m[2])
    name = text.split("::")[-1]
    if name in RUST_TYPES:
        return RUST_TYPES[name]
    if name in STRUCTS:
        return name
    raise Mismatch(f"Rust type {text!r} is not in the mapping table")


def rust_params(text):
    out = []
    for p in split_top(text):
        _, _, ty = p.partition(":")
        out.append(rust_type(ty))
    return out


def rust_externs(sources):
    """name -> (return type, [parameter types], file) over every `extern "C"`
    block of `sources` ({file name: text})."""
    decls = {}
    for fname, text in sources.items():
        text = re.sub(r"//[^\n]*", " ", text)
        for block in re.finditer(r"extern\s+\"C\"\s*\{(.*?)\n\}", text, re.S):
            for stmt in block[1].split(";"):
                stmt = " ".join(stmt.split())
                if not stmt:
                    continue
                m = re.fullmatch(r"(?:#\[[^\]]*\]\s*)*(?:pub(?:\([\w:]+\))?\s+)?"
                                 r"fn\s+(\w+)\s*\((.*)\)(?:\s*->\s*(.+))?", stmt)
                if not m:
                    raise Mismatch(f"{fname}: cannot read the declaration {stmt!r}")
                name, params, ret = m.groups()
                if name in decls:
                    raise Mismatch(f"Rust: {name} is declared in {decls[name][2]} and in {fname}")
                decls[name] = (rust_type(ret) if ret else "void", rust_params(params), fname)
    return decls


def rust_const(text, name):
    m = re.search(r"const\s+" + name + r"\s*:\s*\w+\s*=\s*(\d+)\s*;", text)
    return int(m[1]) if m else None


# --- comparison -------------------------------------------------------------


def compare(header_text, rust_sources):
    """Every mismatch between helpers.h and the Rust declarations, as lines."""
    problems = []
    try:
        c = c_prototypes(header_text)
        c.update({n: p for k in KERNEL_PROTOTYPES.values() for n, p in c_prototypes(k).items()})
        rust = rust_externs(rust_sources)
    except Mismatch as e:
        return [str(e)]
    for name, (ret, params) in sorted(c.items()):
        if name not in rust:
            if name not in KERNEL_PROTOTYPES:
                problems.append(f"{name}: in helpers.h, declared in no extern \"C\" block of sys/*.rs")
            continue
        rret, rparams, fname = rust[name]
        if len(params) != len(rparams):
            problems.append(f"{name}: {len(params)} arguments in C, {len(rparams)} in {fname}")
            continue
        for i, (a, b) in enumerate(zip(params, rparams)):
            if a != b:
                problems.append(f"{name}: argument {i + 1} is {a} in C, {b} in {fname}")
        if ret != rret:
            problems.append(f"{name}: returns {ret} in C, {rret} in {fname}")
    for name, (_, _, fname) in sorted(rust.items()):
        if name not in c:
            problems.append(f"{name}: declared in {fname}, no prototype in helpers.h "
                            "(or KERNEL_PROTOTYPES of this test)")
    defines = c_defines(header_text)
    for cname, value in sorted(defines.items()):
        if cname in DEFAULT_ARM:
            continue
        if cname not in CONSTANTS:
            problems.append(f"{cname}: #define in helpers.h that this test does not map to Rust")
            continue
        fname, rname = CONSTANTS[cname]
        rvalue = rust_const(rust_sources.get(fname, ""), rname)
        if rvalue != value:
            problems.append(f"{cname} = {value} in helpers.h, {rname} = {rvalue} in {fname}")
    for cname in CONSTANTS:
        if cname not in defines:
            problems.append(f"{cname}: not #defined in helpers.h any more")
    enum = c_enum(header_text, "rapilog_dma_path")
    arms = dict(re.findall(r"(\d+)\s*=>\s*Self::(\w+)", rust_sources.get("iommu.rs", "")))
    for cname, value in sorted(enum.items()):
        variant = DMA_PATHS.get(cname)
        if variant is None:
            problems.append(f"{cname}: value of enum rapilog_dma_path this test does not map")
        elif variant != "Unknown" and arms.get(str(value)) != variant:
            problems.append(f"{cname} = {value} in helpers.h, but iommu.rs maps {value} to "
                            f"{arms.get(str(value), 'nothing')}")
    return problems


def sources():
    header = (SYS / "helpers.h").read_text()
    rust = {p.name: p.read_text() for p in sorted(SYS.glob("*.rs"))}
    return header, rust


def test_helpers_h_and_the_rust_declarations_agree():
    header, rust = sources()
    problems = compare(header, rust)
    assert not problems, "helpers.h and the Rust extern blocks disagree:\n  " + "\n  ".join(problems)


def test_every_declaration_is_seen():
    """The parsers find what is there (a parser that found nothing would
    find no mismatch either)."""
    header, rust = sources()
    c, r = c_prototypes(header), rust_externs(rust)
    assert len(c) >= 40 and set(c) <= set(r)
    assert r["crc32c"] == ("u32", ["u32", "*const void", "usize"], "crc32c.rs")
    assert c["rapilog_vmap_ro"] == ("*mut void", ["*mut *mut page", "uint"])
    assert c["rapilog_powerfail_arm"] == (
        "int", ["uint", "fn(*mut void, uint) -> void", "*mut void"])
    assert r["rapilog_bdev_open"][:2] == ("*mut file", ["*const char", "*mut void"])


# Each alteration of the sources must be reported: (file, old, new, what the
# report must mention).
ALTERATIONS = [
    ("helpers.rs", "pub(super) fn rapilog_bdev_partno(bdev: *mut block_device) -> c_uint;",
     "pub(super) fn rapilog_bdev_partno(bdev: *mut block_device) -> c_int;",
     "rapilog_bdev_partno: returns uint in C, int"),
    ("helpers.rs", "pub(super) fn rapilog_pte_clear(ptep: *mut pte_t);",
     "pub(super) fn rapilog_pte_clear(ptep: *const pte_t);",
     "rapilog_pte_clear: argument 1 is *mut pte_t in C, *const pte_t"),
    ("helpers.rs", "pub(super) fn rapilog_bio_end(bio: *mut bio, status: c_uint);",
     "pub(super) fn rapilog_bio_end(bio: *mut bio);",
     "rapilog_bio_end: 2 arguments in C, 1"),
    ("helpers.rs", "pub(super) fn rapilog_this_cpu() -> c_uint;",
     "pub(super) fn rapilog_this_cpu_id() -> c_uint;",
     "rapilog_this_cpu_id: declared in helpers.rs, no prototype"),
    ("helpers.h", "void rapilog_bioset_destroy(struct bio_set *bs);\n", "",
     "rapilog_bioset_destroy: declared in helpers.rs, no prototype"),
    ("helpers.h", "unsigned int rapilog_bdev_logical_block_size(struct block_device *bdev);",
     "unsigned long rapilog_bdev_logical_block_size(struct block_device *bdev);",
     "rapilog_bdev_logical_block_size: returns ulong in C, uint"),
    ("powerfail_signals.rs", "signalled: unsafe extern \"C\" fn(ctx: *mut c_void, sources: c_uint),",
     "signalled: unsafe extern \"C\" fn(ctx: *mut c_void, sources: c_int),",
     "rapilog_powerfail_arm: argument 2 is fn(*mut void, uint) -> void in C, fn(*mut void, int) -> void"),
    ("crc32c.rs", "fn crc32c(crc: u32, p: *const c_void, len: usize) -> u32;",
     "fn crc32c(crc: u32, p: *const c_void, len: u32) -> u32;",
     "crc32c: argument 3 is usize in C, u32"),
    ("lifecycle_events.rs", "const STOP_HALT: c_uint = 2;", "const STOP_HALT: c_uint = 3;",
     "RAPILOG_STOP_HALT = 2 in helpers.h, STOP_HALT = 3"),
    ("iommu.rs", "2 => Self::Blocked,", "2 => Self::Identity,",
     "RAPILOG_DMA_BLOCKED = 2 in helpers.h, but iommu.rs maps 2 to Identity"),
]


@pytest.mark.parametrize("fname,old,new,expected", ALTERATIONS, ids=[a[3].split(":")[0] for a in ALTERATIONS])
def test_a_mismatch_is_caught(fname, old, new, expected):
    header, rust = sources()
    if fname == "helpers.h":
        assert old in header
        header = header.replace(old, new)
    else:
        assert old in rust[fname]
        rust = dict(rust, **{fname: rust[fname].replace(old, new)})
    problems = compare(header, rust)
    assert any(expected in p for p in problems), problems
