"""The documentation's links: every relative link in every tracked *.md file
must resolve, and README.md must stay a front door.

A link resolves when its file or directory exists inside the repository
and, for `#anchor` into a markdown file (or into the same file), the anchor
is a heading's slug under GitHub's rules (or an explicit `<a name>`/`id`).
Links inside code (fenced blocks, `spans`) are not links and are skipped, as
are external ones (any `scheme:` or `//host`). Anchors into other files
(`file.rs#L10`) are not checked: GitHub makes those from line numbers.

Docs move (issue 19 moved most of the README into docs/); a link that
still points at the old place fails here, named by file, line and link.
"""
from __future__ import annotations

import os
import re
import subprocess
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]

# GitHub shows README.md as the repository's front page: beyond this it stops
# being a front door (issue 19). The rest belongs in docs/.
README_MAX_BYTES = 10_240

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# [text](dest "title"), ![alt](dest); text may hold one level of brackets
# and wrap across lines.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)", re.M)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<[a-z][^>]*?\b(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.I)
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")


def tracked_markdown(root: Path) -> list[Path]:
    """Every *.md file git tracks under `root` (a walk without .cache/ and
    target/ where git is not available, e.g. in an exported tarball)."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", "*.md"],
                             capture_output=True, text=True, check=True).stdout
        return sorted(root / p for p in out.split("\0") if p)
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".cache", "target", "node_modules"}
        found = []
        for d, dirs, files in os.walk(root):
            dirs[:] = [x for x in dirs if x not in skip]
            found += [Path(d) / f for f in files if f.endswith(".md")]
        return sorted(found)


def blank_code(text: str) -> str:
    """`text` with fenced code blocks and inline code spans replaced by
    spaces (newlines kept), so that offsets still give line numbers."""
    lines = text.split("\n")
    fence = None
    for i, line in enumerate(lines):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                lines[i] = ""
        else:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and not line.strip().strip(fence[0]):
                fence = None
            lines[i] = " " * len(line)
    text = "\n".join(lines)
    # A span opens and closes with backtick runs of the same length, within
    # a paragraph (never across a blank line).
    return re.sub(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)",
                  lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)


def heading_text(raw: str) -> str:
    """A heading's text as GitHub renders it: markup removed outside code
    spans, whose content is literal."""
    def plain(s: str) -> str:
        s = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", s)  # links and images: their text
        s = re.sub(r"<[^>]+>", "", s)  # HTML tags
        return re.sub(r"\*+|(?<!\w)_+|_+(?!\w)", "", s)  # emphasis markers
    parts = re.split(r"(`+)(.+?)\1", raw)
    # re.split yields text, then (backticks, code) pairs, then text again.
    return "".join(plain(p) if i % 3 == 0 else (p if i % 3 == 2 else "")
                   for i, p in enumerate(parts))


def github_slug(text: str) -> str:
    """GitHub's heading anchor (github-slugger): lower case; drop everything
    but letters, marks, numbers, connector punctuation (`_`), spaces and
    hyphens; each space becomes a hyphen."""
    kept = (c for c in text.lower()
            if c in " -" or unicodedata.category(c)[0] in "LMN" or unicodedata.category(c) == "Pc")
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub gives `path`: heading slugs (a repeated slug gets
    -1, -2, ...) and explicit `<a name>`/`id` attributes."""
    text = path.read_text(encoding="utf-8")
    original = text.split("\n")
    code_free = blank_code(text)
    found: set[str] = set(HTML_ANCHOR.findall(code_free))
    seen: dict[str, int] = {}
    lines = code_free.split("\n")
    for i, line in enumerate(lines):
        # Which lines are headings is decided without code (a `#` in a
        # fenced block is not one); their text comes from the original.
        if ATX_HEADING.match(line):
            raw = ATX_HEADING.match(original[i]).group(2) or ""
        elif (i + 1 < len(lines) and SETEXT_UNDERLINE.match(lines[i + 1]) and line.strip()
              and not line.lstrip().startswith(("|", "-", "*", ">"))
              and (i == 0 or not lines[i - 1].strip())):
            raw = original[i].strip()
        else:
            continue
        slug = github_slug(heading_text(raw))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line, destination) of every link in `path` outside code."""
    text = blank_code(path.read_text(encoding="utf-8"))
    out = []
    for pattern in (INLINE_LINK, REFERENCE_DEF, HTML_LINK):
        for m in pattern.finditer(text):
            dest = m.group(1)
            if dest.startswith("<") and dest.endswith(">"):
                dest = dest[1:-1]
            out.append((text.count("\n", 0, m.start(1)) + 1, dest))
    return sorted(out)


def broken_links(root: Path, files: list[Path]) -> list[str]:
    """One message per link of `files` that does not resolve inside `root`."""
    root = root.resolve()
    cache: dict[Path, set[str]] = {}
    problems = []
    for path in files:
        rel = path.relative_to(root)
        for line, dest in links(path):
            if EXTERNAL.match(dest):
                continue
            where, _, anchor = dest.partition("#")
            where, anchor = unquote(where), unquote(anchor)
            if not where:
                target = path
            elif where.startswith("/"):
                target = root / where.lstrip("/")
            else:
                target = path.parent / where
            target = Path(os.path.normpath(target))

            def fail(why: str) -> None:
                problems.append(f"{rel}:{line}: link '{dest}': {why}")

            if target != root and root not in target.parents:
                fail(f"points outside the repository ({target})")
            elif not target.exists():
                fail(f"{target.relative_to(root)} does not exist")
            elif anchor and target.suffix == ".md":
                if target not in cache:
                    cache[target] = anchors(target)
                if anchor not in cache[target]:
                    near = sorted(a for a in cache[target] if anchor[:6] in a)[:3]
                    hint = f" (similar: {', '.join(near)})" if near else ""
                    fail(f"no heading with anchor #{anchor} in {target.relative_to(root)}{hint}")
    return problems


def test_every_relative_link_in_the_docs_resolves():
    files = tracked_markdown(REPO)
    assert REPO / "README.md" in files, "README.md not found: is this the repository?"
    problems = broken_links(REPO, files)
    assert not problems, (f"{len(problems)} broken link(s) in the docs (GitHub slug rules for "
                          "#anchors):\n" + "\n".join(problems))


def test_readme_is_a_front_door():
    size = (REPO / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes, over its limit of {README_MAX_BYTES}: move detail into docs/ "
        "(design.md, configuration.md, ...) and link to it")


# The checker itself: it must catch what it claims to catch.

@pytest.mark.parametrize("heading, slug", [
    ("Quick start", "quick-start"),
    ("Panics under load (`tests/qemu/test_crash.py`, `make crash-test`)",
     "panics-under-load-testsqemutest_crashpy-make-crash-test"),
    ("The pins in `<KREL>.env`", "the-pins-in-krelenv"),
    ("2026-12-03-e755724: writeback coalescing", "2026-12-03-e755724-writeback-coalescing"),
    ("What `make test` runs", "what-make-test-runs"),
    ("**Bold** and _emphasis_ in snake_case", "bold-and-emphasis-in-snake_case"),
    ("Latency in µs", "latency-in-µs"),
])
def test_github_slug(heading, slug):
    assert github_slug(heading_text(heading)) == slug


def test_checker_reports_file_line_and_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "# A\n\n## Same\n\n## Same\n\nText.\n")
    (tmp_path / "README.md").write_text(
        "# Top\n\n"
        "[ok](docs/a.md) [ok](docs/a.md#same-1) [ok](#top) [ok](docs/)\n"
        "[ext](https://example.com/x) `[code](missing.md)`\n"
        "```\n[fenced](missing.md)\n```\n"
        "[gone](docs/b.md)\n"
        "[no anchor](docs/a.md#other)\n"
        "[wrapped\ntext](docs/a.md#nope)\n"
        "[out](../elsewhere.md)\n")
    problems = broken_links(tmp_path, [tmp_path / "README.md", tmp_path / "docs" / "a.md"])
    assert problems == [
        "README.md:8: link 'docs/b.md': docs/b.md does not exist",
        "README.md:9: link 'docs/a.md#other': no heading with anchor #other in docs/a.md",
        "README.md:11: link 'docs/a.md#nope': no heading with anchor #nope in docs/a.md",
        f"README.md:12: link '../elsewhere.md': points outside the repository "
        f"({tmp_path.parent / 'elsewhere.md'})",
    ], problems
