"""The reliability table: every bad-input and fault test case, counted per class, from the suite.

Test cases that feed polyguide a fault or bad input carry ``@pytest.mark.fault("<class>")``.
This script runs ``pytest -m fault`` with a small plugin that records each case's class and
outcome, then writes ``docs/results/reliability.json`` and the table between the markers in
``docs/reliability.md``::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/reliability_table.py            # run + write
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/reliability_table.py --check    # is the doc current?

A passing case is a fault that got a clear error (or, for fault-injection cases such as a kill
during a save, the promised outcome); a failing one is counted as a silent or wrong result. The
table is written even when cases fail, so a regression is visible in it, and the exit code is 1.
``--collect-only`` (used by ``--check`` and the test that keeps the doc in step) counts the cases
without running them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
JSON = ROOT / "docs" / "results" / "reliability.json"
BEGIN, END = "<!-- reliability-table:begin -->", "<!-- reliability-table:end -->"
MARKER = "fault"


class Collector:
    """A pytest plugin: the fault class of every selected case and how it ended."""

    def __init__(self) -> None:
        self.classes: dict[str, str] = {}  # node id → class
        self.files: dict[str, str] = {}
        self.outcomes: dict[str, str] = {}  # node id → passed | failed | skipped | error
        self.problems: list[str] = []

    def pytest_collection_modifyitems(self, items) -> None:
        for item in items:
            mark = item.get_closest_marker(MARKER)
            if mark is None:
                continue
            if len(mark.args) != 1 or not isinstance(mark.args[0], str) or not mark.args[0].strip():
                self.problems.append(f"{item.nodeid}: @pytest.mark.fault needs one class name, got "
                                     f"{mark.args!r}")
                continue
            self.classes[item.nodeid] = mark.args[0].strip()
            self.files[item.nodeid] = item.nodeid.split("::", 1)[0]

    def pytest_runtest_logreport(self, report) -> None:
        if report.nodeid not in self.classes:
            return
        if report.when == "call" or report.outcome != "passed":
            if report.outcome == "failed":
                outcome = "failed" if report.when == "call" else "error"
            else:
                outcome = report.outcome
            if self.outcomes.get(report.nodeid) in (None, "passed"):  # the first problem sticks
                self.outcomes[report.nodeid] = outcome


def summarise(collector: Collector, ran: bool) -> list[dict]:
    """One row per class: cases tried, clear errors, silent or wrong results, skipped, files."""
    rows: dict[str, dict] = {}
    for node, cls in sorted(collector.classes.items()):
        r = rows.setdefault(cls, {"class": cls, "cases": 0, "clear": 0, "silent_or_wrong": 0,
                                  "skipped": 0, "not_run": 0, "files": set()})
        r["cases"] += 1
        r["files"].add(collector.files[node])
        outcome = collector.outcomes.get(node) if ran else None
        key = {"passed": "clear", "failed": "silent_or_wrong", "error": "silent_or_wrong",
               "skipped": "skipped"}.get(outcome, "not_run")
        r[key] += 1
    out = []
    for cls in sorted(rows, key=str.lower):
        r = rows[cls]
        r["files"] = sorted(r["files"])
        out.append(r)
    return out


def collect(paths: list[str], run: bool, extra: list[str] | None = None) -> tuple[list[dict], Collector, int]:
    """Run (or only collect) the fault cases under ``paths`` in this process."""
    import pytest

    collector = Collector()
    # one process: pytest-xdist would collect in workers, out of this plugin's sight
    args = ["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-m", MARKER, *(extra or []), *paths]
    if not run:
        args.insert(0, "--collect-only")
    code = pytest.main(args, plugins=[collector])
    return summarise(collector, run), collector, int(code)


def table(rows: list[dict]) -> str:
    """The markdown table of :func:`summarise` rows, with a total line."""
    lines = ["| fault or bad-input class | cases tried | clear errors | silent or wrong results | tests |",
             "|---|---|---|---|---|"]
    for r in rows:
        files = ", ".join(f"`{f}`" for f in r["files"])
        lines.append(f"| {r['class']} | {r['cases']} | {r['clear']} | {r['silent_or_wrong']} | {files} |")
    total = {k: sum(r[k] for r in rows) for k in ("cases", "clear", "silent_or_wrong")}
    lines.append(f"| **all** | **{total['cases']}** | **{total['clear']}** | "
                 f"**{total['silent_or_wrong']}** | |")
    return "\n".join(lines)


def doc_counts(text: str) -> dict[str, int]:
    """Class → cases tried, read back from the table in ``docs/reliability.md``."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"{DOC} lacks the {BEGIN} … {END} markers around its table")
    body = text.split(BEGIN, 1)[1].split(END, 1)[0]
    counts = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[1].isdigit() and not cells[0].startswith("**"):
            counts[cells[0]] = int(cells[1])
    return counts


def write_doc(rows: list[dict], doc: Path = DOC) -> None:
    """Replace the table between the markers of ``doc``."""
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{doc} lacks the {BEGIN} … {END} markers around its table")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    doc.write_text(f"{head}{BEGIN}\n{table(rows)}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", default=["tests"], help="test paths (default: tests)")
    p.add_argument("--check", action="store_true",
                   help="collect only and compare the counts with docs/reliability.md (exit 1 if stale)")
    p.add_argument("--collect-only", action="store_true", help="print counts per class without running")
    p.add_argument("--pytest-args", default="", help="extra pytest arguments, e.g. '-x' or '-k cli'")
    p.add_argument("--doc", type=Path, default=DOC, help="the page whose table to write or check")
    p.add_argument("--json", type=Path, default=JSON, help="where to write the per-case record")
    args = p.parse_args(argv)
    # as `python -m pytest` from the repository root: its packages (modalities/) come before tests/'
    # same-named folders on the import path
    os.chdir(ROOT)
    if str(ROOT) not in sys.path[:1]:
        sys.path.insert(0, str(ROOT))
    paths = [str(ROOT / x) if not Path(x).is_absolute() else x for x in args.paths]
    run = not (args.check or args.collect_only)
    rows, collector, code = collect(paths, run, args.pytest_args.split())
    for problem in collector.problems:
        print(problem, file=sys.stderr)
    if args.check:
        want = {r["class"]: r["cases"] for r in rows}
        have = doc_counts(args.doc.read_text())
        if want != have:
            print(f"{args.doc} is stale: the suite has {want}, the page {have}. Regenerate with "
                  f"`.venv/bin/python benchmarks/reliability_table.py`", file=sys.stderr)
            return 1
        print(f"{args.doc} is current: {sum(want.values())} cases in {len(want)} classes")
        return 1 if collector.problems else 0
    if args.collect_only:
        print(table(rows))
        return 1 if collector.problems else 0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or None
    if commit and git("status", "--porcelain"):
        commit += " + uncommitted changes"
    payload = {"command": "benchmarks/reliability_table.py " + " ".join(args.paths), "commit": commit,
               "pytest_exit_code": code, "rows": rows,
               "cases": {node: {"class": cls, "outcome": collector.outcomes.get(node, "not run")}
                         for node, cls in sorted(collector.classes.items())}}
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    write_doc(rows, args.doc)
    print(table(rows))
    print(f"wrote {args.json} and the table in {args.doc}")
    return 0 if code == 0 and not collector.problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
