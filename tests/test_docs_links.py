"""Docs that lead somewhere: every relative link in README.md and docs/*.md, and every `docs/<page>.md` that code,
tests or docs name, is a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
NAMED_PAGE = re.compile(r"(?<![\w/.-])docs/[\w.-]+\.md\b")


def relative_links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link or image outside fenced code that is not a URL or a same-page anchor."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), page.read_text(encoding="utf-8"))
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for target in LINK.findall(line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("#"):
                found.append((number, target))
    return found


def test_every_relative_link_in_the_readme_and_docs_resolves():
    assert len(PAGES) > 5, "README.md and the docs were found"
    dead = [f"{page.relative_to(ROOT)}:{line}: {target}" for page in PAGES for line, target in relative_links(page)
            if not (page.parent / target.split("#", 1)[0]).exists()]
    assert not dead, "dead links:\n" + "\n".join(dead)


def test_every_docs_page_named_in_code_tests_or_docs_exists():
    sources = [*PAGES, *ROOT.glob("*.md"), *(p for folder in ("xft_core", "plugins", "tests", "benchmarks", "examples")
                                            for p in (ROOT / folder).rglob("*.py"))]
    missing = sorted({f"{path.relative_to(ROOT)}: {name}" for path in sources
                      for name in NAMED_PAGE.findall(path.read_text(encoding="utf-8")) if not (ROOT / name).is_file()})
    assert not missing, "pages named but not in docs/:\n" + "\n".join(missing)


def test_the_link_finder_sees_links_and_skips_urls_anchors_and_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See [a](guide/a.md#part) and ![b](b.png \"title\"), not [c](https://x.org) or [d](#here).\n"
                    "```\n[e](in-code.md)\n```\n[f](../f.md)\n", encoding="utf-8")
    assert relative_links(page) == [(1, "guide/a.md#part"), (1, "b.png"), (5, "../f.md")]
