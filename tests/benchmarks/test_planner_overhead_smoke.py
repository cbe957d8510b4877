"""The planner-overhead benchmark runs and measures what it claims (no timing assertions)."""

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "planner_overhead.py"


def _load():
    spec = importlib.util.spec_from_file_location("planner_overhead", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_json_and_table(tmp_path):
    bench = _load()
    payload = bench.run(tmp_path, quick=True, threads=1, dim=32, depth=1, tokens=8, in_dim=4, batches=(2, 8))
    saved = json.loads((tmp_path / "planner_overhead.json").read_text())
    assert saved["target_ratio_at_batch_ge_8"] == 1.05 and len(saved["results"]) == 6
    for r in payload["results"]:
        assert r["forward_calls"] == 1 and r["nfe"] == r["branches"]  # one batched forward per step
        assert r["max_abs_diff_vs_manual"] < 1e-5  # guided output = raw forward combined by hand
        assert r["raw_ms"] > 0 and r["guided_ms"] > 0
        assert (r["meets_target"] is None) == (r["batch"] < 8)
    assert "| guided / raw |" in (tmp_path / "planner_overhead.md").read_text()
