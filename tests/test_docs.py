"""The documentation holds together: the README stays short (the rest lives in docs/), every
docs page is listed in docs/README.md, every relative link (and its #anchor) reaches its
target, and the README still holds the test command that .ci/run runs verbatim.
"""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = os.path.join(ROOT, "docs")
MAX_README_LINES = 220
MAX_LINE = 100
LINK = re.compile(r"\]\(([^)\s]+)\)")
EXTERNAL = ("http://", "https://", "mailto:")


def _pages():
    return sorted(glob.glob(os.path.join(DOCS, "*.md")))


def _prose(path):
    """(line number, line) of a Markdown file outside its fenced code blocks."""
    fenced = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced:
                yield number, line.rstrip("\n")


def _slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path):
    return {_slug(line.lstrip("#")) for _, line in _prose(path) if line.startswith("#")}


def _broken_links(path):
    broken = []
    for number, line in _prose(path):
        for target in LINK.findall(line):
            if target.startswith(EXTERNAL):
                continue
            file_part, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
                if file_part else path
            if not os.path.exists(resolved):
                broken.append(f"{os.path.relpath(path, ROOT)}:{number}: {target} (no such file)")
            elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
                broken.append(f"{os.path.relpath(path, ROOT)}:{number}: {target} (no heading)")
    return broken


def test_the_readme_is_short_with_lines_of_at_most_100_characters():
    with open(README, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) <= MAX_README_LINES
    long = [n for n, line in enumerate(lines, 1) if len(line) > MAX_LINE]
    assert not long, f"README.md lines over {MAX_LINE} characters: {long}"


def test_every_docs_page_is_linked_from_the_docs_index():
    index = os.path.join(DOCS, "README.md")
    linked = {os.path.normpath(os.path.join(DOCS, target.partition("#")[0]))
              for _, line in _prose(index) for target in LINK.findall(line)}
    missing = [os.path.basename(p) for p in _pages() if p != index and p not in linked]
    assert not missing, f"docs/README.md does not link: {missing}"


def test_every_relative_link_reaches_its_file_and_heading():
    broken = [b for path in [README] + _pages() for b in _broken_links(path)]
    assert not broken, "\n".join(broken)


def test_the_link_check_notices_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "page.md").write_text("# A page\n\n## Its part\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text("[ok](page.md#its-part) [gone](nothere.md) [wrong](page.md#no-part)\n"
                   "```\n[in code](ignored.md)\n```\n[web](https://example.com/x.md)\n",
                   encoding="utf-8")
    broken = _broken_links(str(doc))
    assert len(broken) == 2
    assert "nothere.md (no such file)" in broken[0]
    assert "page.md#no-part (no heading)" in broken[1]


def test_the_readme_holds_the_test_command_ci_runs_verbatim():
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        command = next(line.strip() for line in f if "pytest" in line)
    with open(README, encoding="utf-8") as f:
        assert command in f.read().splitlines()
