"""The reliability table: counted from the marked test cases, and docs/reliability.md in step with them."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "reliability_table.py"

SAMPLE_TESTS = """
import pytest

@pytest.mark.fault("bad input")
@pytest.mark.parametrize("x", [1, 2, 3])
def test_clear(x):
    with pytest.raises(ValueError):
        int("nope")

@pytest.mark.fault("bad input")
def test_silent():
    assert int("7") == 8  # the fault went unnoticed

@pytest.mark.fault("other class")
def test_other():
    pass

def test_not_a_fault_case():
    pass
"""

PAGE = "# page\n\nbefore\n\n<!-- reliability-table:begin -->\nold\n<!-- reliability-table:end -->\n\nafter\n"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_the_script_counts_each_case_by_class_and_outcome(tmp_path, load_benchmark):
    tests = tmp_path / "cases"
    tests.mkdir()
    (tests / "test_sample_faults.py").write_text(textwrap.dedent(SAMPLE_TESTS))
    doc, record = tmp_path / "page.md", tmp_path / "reliability.json"
    doc.write_text(PAGE)
    proc = run_script(str(tests), "--doc", str(doc), "--json", str(record))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a silent result fails the run
    rows = {r["class"]: r for r in json.loads(record.read_text())["rows"]}
    assert (rows["bad input"]["cases"], rows["bad input"]["clear"], rows["bad input"]["silent_or_wrong"]) == (
        4,
        3,
        1,
    )
    assert (rows["other class"]["cases"], rows["other class"]["clear"]) == (1, 1)
    text = doc.read_text()
    assert text.startswith("# page\n\nbefore\n") and text.endswith("\n\nafter\n") and "old" not in text
    assert "| bad input | 4 | 3 | 1 |" in text and "| **all** | **5** | **4** | **1** | |" in text
    reliability = load_benchmark("reliability_table")
    assert reliability.doc_counts(text) == {"bad input": 4, "other class": 1}
    # --check compares the page with the collected counts
    assert run_script(str(tests), "--check", "--doc", str(doc)).returncode == 0
    doc.write_text(text.replace("| bad input | 4 |", "| bad input | 3 |"))
    stale = run_script(str(tests), "--check", "--doc", str(doc))
    assert stale.returncode == 1 and "is stale" in stale.stderr


def _collected_the_whole_suite(config: pytest.Config) -> bool:
    """This run collected every test (no paths, no selection), so its items are the script's cases."""
    opt = config.option
    return (config.args_source == pytest.Config.ArgsSource.TESTPATHS and not opt.keyword
            and not opt.markexpr and not opt.deselect and not getattr(opt, "lf", False)
            and not getattr(opt, "failedfirst", False))


def test_docs_reliability_table_matches_the_marked_tests(request, load_benchmark):
    """Every fault class in the suite appears in the page with its case count. When this run collected
    the whole suite its items are counted in place (a second collection of every test module in a child
    process cost ~25 s of CPU); otherwise the script collects them itself."""
    if not _collected_the_whole_suite(request.config):
        proc = run_script("tests", "--check")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return
    reliability = load_benchmark("reliability_table")
    collector = reliability.Collector()
    collector.pytest_collection_modifyitems(request.session.items)
    assert not collector.problems, collector.problems
    want = {r["class"]: r["cases"] for r in reliability.summarise(collector, ran=False)}
    have = reliability.doc_counts(reliability.DOC.read_text())
    assert want == have, (f"{reliability.DOC} is stale: regenerate with "
                          f"`.venv/bin/python benchmarks/reliability_table.py`")
