"""Every ```python block in README.md and docs/*.md runs, in order, in one namespace per page.

A python block immediately followed by an ```output block must print exactly that text
(trailing whitespace ignored), so printed results in the docs cannot go stale either.

After an intended change, regenerate a page's output blocks with::

    HF_HUB_OFFLINE=1 .venv/bin/python tests/docs/test_docs_examples.py --update docs/guidance.md

and review the diff.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass
class Example:
    index: int  # position among the page's python blocks
    line: int  # 1-based line of the opening fence
    source: str
    expected: str | None  # the following ```output block, if any
    output_span: tuple[int, int] | None  # character span of that block's body in the page


def examples(text: str) -> list[Example]:
    """The python blocks of a markdown page, each with its expected output (if given)."""
    fences = list(FENCE.finditer(text))
    out: list[Example] = []
    for k, m in enumerate(fences):
        if m.group(1) != "python":
            continue
        expected = span = None
        nxt = fences[k + 1] if k + 1 < len(fences) else None
        if nxt is not None and nxt.group(1) == "output" and not text[m.end():nxt.start()].strip():
            expected, span = nxt.group(2), nxt.span(2)
        out.append(Example(len(out), text.count("\n", 0, m.start()) + 1, m.group(2), expected, span))
    return out


def _normalise(s: str) -> str:
    return "\n".join(line.rstrip() for line in s.strip("\n").splitlines())


def run_page(page: Path) -> list[tuple[Example, str]]:
    """Execute a page's examples in one fresh namespace; return each example's stdout.

    Raises ``AssertionError`` naming the page, block index and line, with the block's source.
    """
    namespace: dict = {"__name__": f"docs.{page.stem}"}
    results = []
    for ex in examples(page.read_text()):
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                exec(compile(ex.source, f"{page.name}[block {ex.index}, line {ex.line}]", "exec"),
                     namespace)
        except Exception as e:
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-3:])
            raise AssertionError(f"{page.name}, block {ex.index} (line {ex.line}) raised "
                                 f"{type(e).__name__}: {e}\n--- source ---\n{ex.source}"
                                 f"--- traceback (tail) ---\n{tb}") from None
        results.append((ex, buf.getvalue()))
    return results


PAGES = [p for p in DOCS if examples(p.read_text())]
assert PAGES, "no documentation page with python examples found"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_examples_run(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # relative paths in examples resolve against the repository root
    try:
        results = run_page(page)
    except AssertionError as e:
        pytest.fail(str(e), pytrace=False)
    for ex, printed in results:
        if ex.expected is not None and _normalise(printed) != _normalise(ex.expected):
            diff = "\n".join(difflib.unified_diff(
                _normalise(ex.expected).splitlines(), _normalise(printed).splitlines(),
                "documented output", "actual output", lineterm=""))
            pytest.fail(f"{page.name}, block {ex.index} (line {ex.line}) printed something other "
                        f"than its ```output block:\n{diff}\n--- source ---\n{ex.source}",
                        pytrace=False)


def test_output_blocks_follow_python_blocks() -> None:
    """An ```output block that follows no python block would silently never be checked."""
    for page in DOCS:
        text = page.read_text()
        checked = {ex.output_span for ex in examples(text) if ex.output_span is not None}
        for m in FENCE.finditer(text):
            if m.group(1) == "output":
                assert m.span(2) in checked, (f"{page.name}, line {text.count(chr(10), 0, m.start()) + 1}: "
                                              f"```output block not directly after a ```python block")


def test_fence_parser() -> None:
    page = "text\n```python\nprint(1)\n```\n\n```output\n1\n```\n```python\nx = 2\n```\n```bash\nls\n```\n"
    first, second = examples(page)
    assert (first.source, first.expected, first.line) == ("print(1)\n", "1\n", 2)
    assert (second.source, second.expected) == ("x = 2\n", None)


def _update(paths: list[str]) -> None:
    """Rewrite the ```output blocks of the given pages with what their examples print now."""
    for name in paths:
        page = Path(name).resolve()
        text = page.read_text()
        for ex, printed in reversed(run_page(page)):
            if ex.output_span is not None:
                a, b = ex.output_span
                text = text[:a] + _normalise(printed) + "\n" + text[b:]
        page.write_text(text)
        print(f"updated {page.relative_to(ROOT)}")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "--update":
        sys.exit(f"usage: {sys.argv[0]} --update PAGE.md [PAGE.md ...]")
    _update(sys.argv[2:])
