"""The planner-overhead benchmark runs and measures what it claims (no timing assertions)."""

import json


def test_quick_run_writes_json_and_table(tmp_path, load_benchmark):
    bench = load_benchmark("planner_overhead")
    payload = bench.run(tmp_path, quick=True, threads=1, dim=32, depth=1, tokens=8, in_dim=4, batches=(2, 8))
    saved = json.loads((tmp_path / "planner_overhead.json").read_text())
    assert saved["target_ratio_at_batch_ge_8"] == 1.05 and len(saved["results"]) == 6
    for r in payload["results"]:
        assert r["forward_calls"] == 1 and r["nfe"] == r["branches"]  # one batched forward per step
        assert r["max_abs_diff_vs_manual"] < 1e-5  # guided output = raw forward combined by hand
        assert r["raw_ms"] > 0 and r["guided_ms"] > 0
        assert (r["meets_target"] is None) == (r["batch"] < 8)
    assert "| guided / raw |" in (tmp_path / "planner_overhead.md").read_text()
