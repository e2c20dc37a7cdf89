"""The README and docs/ stand on their own in a clone: every relative link reaches a file (and heading) of the
repository, every repository path they name exists, and nothing points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("activations", "llm_client", "explainer", "simulator", "scorer", "storage", "autointerp", "benchmarks",
            "tests", "docs")

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(rf"^(?:{'|'.join(PACKAGES)})/[\w./-]*$")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped (but - and _), spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def links(page: Path) -> list[str]:
    return [t for t in LINK.findall(FENCE.sub("", page.read_text())) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_a_file_and_heading(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        name = file.relative_to(ROOT).as_posix() if file.is_relative_to(ROOT) else str(file)
        if not file.exists():
            broken.append(f"{target}: no file {name}")
        elif anchor and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_paths_exist(page: Path) -> None:
    named = {c.split()[0].rstrip(":,") for c in CODE.findall(page.read_text())}
    missing = sorted(p for p in named if REPO_PATH.match(p) and not (ROOT / p).exists())
    assert not missing, f"{page.name} names paths the repository lacks: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_outside_the_repository(page: Path) -> None:
    text = page.read_text()
    climbs = [p for p in re.findall(r"(?:\.\./)+[\w./-]*", text)
              if not (page.parent / p).resolve().is_relative_to(ROOT)]
    # Absolute paths of a development machine, and the design notes that live beside the repository, not in it.
    elsewhere = re.findall(r"(?<![\w.~])/(?:work|home|tmp/shared)/[\w./-]+|DESIGN\.md", text)
    assert not climbs + elsewhere, f"{page.name} points outside the repository: {climbs + elsewhere}"


def test_readme_is_a_quick_start() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) < 12_000, "README.md is the quick start; reference material belongs in docs/"
    first_block = readme.split("```")[1]
    assert first_block.split()[:2] == ["make", "demo"] and "make test" in first_block
