"""The README and the code's own references: one demo time, links that resolve, no comment or
docstring pointing at a file the repository does not have."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from tests.conftest import ROOT

README = ROOT / "README.md"
#: Where the repository's own text lives (the virtual environment and outputs are not in it).
CODE = ("geo_minzheng", "maps", "api", "tests", "benchmarks", "dev.py")
#: A file named in prose: a path under one of the repository's folders (``docs/api.md``), or a
#: Markdown file with an upper-case name; lower-case bare names (``summary.md``) are outputs the
#: code writes, paths under other folders (``pkg/__init__.py`` in a test) are examples.
_FILE_REF = re.compile(
    r"(?<![\w./-])((?:[\w.-]+/)+[\w.-]+\.(?:md|py|toml|yml|txt)|[A-Z][A-Z_]+\.md)\b"
)


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment and docstring of a Python file."""
    source = path.read_text(encoding="utf-8")
    out = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc and node.body:
                out.append((node.body[0].lineno, doc))
    return sorted(out)


def _exists(ref: str, where: Path) -> bool:
    ref = ref.rstrip(".")
    candidates = [ROOT / ref, where.parent / ref, ROOT / "docs" / ref]
    if ref.startswith("static/"):  # maps' own folder, named from inside maps/
        candidates.append(ROOT / "maps" / ref)
    return any(c.exists() for c in candidates)


def missing_references(files: list[Path]) -> list[str]:
    """``file:line: reference`` for every named file that is not in the repository."""
    missing = []
    for path in files:
        for line, text in _prose(path):
            for ref in _FILE_REF.findall(text):
                top = ref.split("/")[0]
                example = "/" in ref and not (
                    (ROOT / top).is_dir() or (path.parent / top).is_dir() or top == "shared"
                )
                if example or _exists(ref, path):
                    continue
                missing.append(f"{path.relative_to(ROOT)}:{line}: {ref}")
            if re.search(r"\bshared/", text):
                missing.append(f"{path.relative_to(ROOT)}:{line}: shared/ (not in the repository)")
    return missing


def _python_files() -> list[Path]:
    out = []
    for name in CODE:
        path = ROOT / name
        out += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [p for p in out if "__pycache__" not in p.parts]


def test_no_comment_names_a_file_outside_the_repository() -> None:
    assert missing_references(_python_files()) == []


def test_the_reference_check_finds_a_missing_file(tmp_path: Path) -> None:
    bad = ROOT / "tests" / ".test_docs_probe.tmp.py"  # tests/.*.tmp is ignored by git
    bad.write_text(
        '"""Style (STYLE.md #7), see docs/api.md and docs/nowhere.md."""\n'
        "# data from shared/data/README\n"
        'OUT = "summary.md"  # an output name, not a reference\n',
        encoding="utf-8",
    )
    try:
        found = missing_references([bad])
    finally:
        bad.unlink()
    assert found == [
        "tests/.test_docs_probe.tmp.py:1: STYLE.md",
        "tests/.test_docs_probe.tmp.py:1: docs/nowhere.md",
        "tests/.test_docs_probe.tmp.py:2: shared/ (not in the repository)",
    ]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_readme_links_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://", "#"))]
    assert "docs/install.md" in local and "docs/api.md#making-a-key-administrators" in local
    for link in local:
        file, _, anchor = link.partition("#")
        assert (ROOT / file).exists(), link
        if anchor:
            assert anchor in _anchors((ROOT / file).read_text(encoding="utf-8")), link


def test_readme_gives_one_demo_time_matching_its_transcript() -> None:
    text = README.read_text(encoding="utf-8")
    claims = re.findall(r"demo[^.\n]*?(?:takes|runs in) about (\d+(?:\.\d+)?) s", text, re.I)
    assert len(claims) == 1, claims
    (shown,) = re.findall(r"演示完成，用时 (\d+(?:\.\d+)?) 秒", text)
    assert round(float(shown)) == round(float(claims[0]))


def test_readme_shows_the_offline_installation_and_api_keys() -> None:
    text = README.read_text(encoding="utf-8")
    assert "python3 dev.py wheelhouse" in text
    assert "pip install --no-index --find-links wheelhouse geo-minzheng" in text
    assert "python -m geo_minzheng.settings new-key --name" in text
    assert "constraints.txt" in text and "python3 dev.py lock" in text
