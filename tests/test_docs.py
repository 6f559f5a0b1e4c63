"""The documentation's shape and links: README.md stays a short overview, and every relative link in the
README, CONTRIBUTING.md, slurm/README.md and the MkDocs pages under docs/ points at a file that exists
and, for a `#anchor`, at a heading of that page — under both GitHub's and MkDocs' heading ids, so a link
works on the repository page and on the built site. (`mkdocs build --strict` in `make test` checks the
site's links too; this test needs no MkDocs and also covers the files outside docs/.)"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 150

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "slurm" / "README.md", *sorted(DOCS.rglob("*.md"))]


def without_code(text: str) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", text))


def heading_texts(text: str) -> list[str]:
    """The headings of a page as rendered text: code ticks, emphasis and link targets dropped."""
    out = []
    for _, raw in HEADING.findall(FENCE.sub("", text)):
        raw = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", raw)
        out.append(raw.replace("`", "").replace("*", ""))
    return out


def github_id(text: str) -> str:
    text = text.strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def mkdocs_id(text: str) -> str:
    """python-markdown's toc slugify (MkDocs' default)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path, slug, dup_sep: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for h in heading_texts(page.read_text(encoding="utf-8")):
        base = slug(h)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}{dup_sep}{n}")
    return out


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(without_code(page.read_text(encoding="utf-8")))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_readme_is_a_short_overview():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"
    text = "\n".join(lines)
    for kept in ("make demo", "make test", "grid plan", "grid launch", "grid status"):
        assert kept in text, f"README.md no longer shows `{kept}`"


def test_the_helpers_see_links_anchors_and_code():
    # the parsing below must find what a reader clicks and skip what is code, or the link test proves nothing
    sample = "see [a](x.md#b-c) and ![img](p.png) `[no](code.md)`\n```\n[no](fenced.md)\n# not a heading\n```\n"
    assert LINK.findall(without_code(sample)) == ["x.md#b-c", "p.png"]
    assert heading_texts("# The demo (`make demo`)\n```\n# comment\n```\n") == ["The demo (make demo)"]
    assert github_id("The validation split (dataset.val_fraction)") == "the-validation-split-datasetval_fraction"
    assert mkdocs_id("The validation split (dataset.val_fraction)") == "the-validation-split-datasetval_fraction"
    assert github_id("Profiles (slurm/profiles/*.yaml)") == mkdocs_id("Profiles (slurm/profiles/*.yaml)") == "profiles-slurmprofilesyaml"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    problems = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)} → {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file")
            continue
        if page.is_relative_to(DOCS) and not dest.is_relative_to(DOCS):
            problems.append(f"{where}: leaves docs/, so the built site cannot serve it")
        if anchor and dest.suffix == ".md":
            for style, slug, sep in (("GitHub", github_id, "-"), ("MkDocs", mkdocs_id, "_")):
                if anchor not in anchors(dest, slug, sep):
                    problems.append(f"{where}: no heading with the {style} id '{anchor}'")
    assert not problems, "\n".join(problems)


def test_readme_and_results_show_the_demo_table_as_generated():
    # the table the demo wrote (docs/demo/, `kdsuite table --source runs/demo`) is what the README and the
    # results page quote, caption included; an edit by hand or a new demo run without the copy fails here
    generated = (DOCS / "demo" / "table_methods_last.md").read_text(encoding="utf-8").strip()
    assert generated.startswith("| Method |") and "Cells: test top-1 at the last epoch" in generated
    for page in (ROOT / "README.md", DOCS / "results.md"):
        assert generated in page.read_text(encoding="utf-8"), f"{page.relative_to(ROOT)} differs from docs/demo/table_methods_last.md"


def test_the_site_lists_every_page_it_builds():
    # a page missing from mkdocs.yml's nav is built but unreachable; the demo's generated tables are the
    # exception, linked from results.md
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*([\w./-]+\.md)\s*$", nav, re.M))
    built = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if p.parent.name != "demo"}
    assert built - listed == set(), f"pages not in mkdocs.yml's nav: {sorted(built - listed)}"
    assert listed - built == set(), f"nav entries without a page: {sorted(listed - built)}"
