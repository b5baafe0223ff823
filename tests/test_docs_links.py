"""Every relative link in the README and docs/ points to a file that exists and, with `#anchor`, to a heading of
that file (GitHub's anchor rule: lower case, punctuation other than `-` and `_` dropped, spaces to `-`, repeats
numbered `-1`, `-2`, ...)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def _prose(text: str) -> list[str]:
    """The lines of `text` outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return out


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a markdown text."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in _prose(text):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_github_anchors_follow_githubs_rule():
    text = "# The lab\n## Tasks (`hicra.lab.tasks`): lab v2\n## Speed (`benchmarks/lab_vs_trl.py`)\n## Tasks\n## Tasks\n"
    assert github_anchors(text) == {"the-lab", "tasks-hicralabtasks-lab-v2", "speed-benchmarkslab_vs_trlpy",
                                    "tasks", "tasks-1"}
    assert github_anchors("```\n# not a heading\n```\n# real\n") == {"real"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path):
    bad = []
    for line in _prose(doc.read_text()):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                bad.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors_of(dest):
                bad.append(f"{target}: no heading with anchor #{anchor}")
    assert not bad, f"{doc.relative_to(ROOT)}: " + "; ".join(bad)


@cache
def _anchors_of(path: Path) -> frozenset[str]:
    """`github_anchors` of a file, read once however many links point into it."""
    return frozenset(github_anchors(path.read_text()))
