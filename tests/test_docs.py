"""The README's and docs' relative links point at files and headings that exist (GitHub's anchor rules)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "experiments").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """GitHub's heading slug: lower case, punctuation dropped (letters of any script, digits, ``_`` and ``-`` kept),
    spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache  # one parse per file, however many links point into it
def anchors(markdown: Path) -> set[str]:
    """Anchors of a Markdown file's headings (fenced code blocks skipped: their ``#`` lines are comments)."""
    found, fenced = set(), False
    for line in markdown.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            found.add(github_anchor(m.group(1)))
    return found


def test_github_anchor_follows_githubs_rules():
    assert github_anchor("Round 2: the segmentation net and the phantom's resolution") == (
        "round-2-the-segmentation-net-and-the-phantoms-resolution"
    )
    assert github_anchor("Performance: precision, memory format, benchmarks") == (
        "performance-precision-memory-format-benchmarks"
    )
    assert github_anchor("Round 3: the α study") == "round-3-the-α-study"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if ROOT in file.parents else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with that anchor in {file.name}")
    assert not broken, "\n".join(broken)


def test_the_readmes_code_map_matches_the_tree():
    """Every path the README's code map names exists, and every package and module of csmri/ is in it."""
    readme = (ROOT / "README.md").read_text()
    code_map = readme[readme.index("## Code map") :]
    named = set(re.findall(r"^(\S+/|\S+\.py)\s", code_map.split("```")[1], flags=re.M))
    missing = sorted(n for n in named if not (ROOT / n.rstrip("/")).exists())
    assert not missing, f"the code map names what the tree lacks: {missing}"
    tree = {
        f"csmri/{p.name}/" if p.is_dir() else f"csmri/{p.name}"
        for p in (ROOT / "csmri").iterdir()
        if p.name not in ("__init__.py", "__main__.py", "__pycache__")
    }
    assert not tree - named, f"not in the README's code map: {sorted(tree - named)}"
