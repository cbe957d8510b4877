"""The data-parallel benchmark runs the real ``polyguide fit`` and reads Lightning's throughput
(no timing assertions; one process only, the two-process runs are tests/training's)."""

import json


def test_quick_run_writes_json_and_table(tmp_path, load_benchmark):
    bench = load_benchmark("data_parallel")
    payload = bench.run(tmp_path, quick=True, steps=7, batch=16, processes=(1,),
                        backbone="{dim: 16, depth: 1, heads: 2}")
    saved = json.loads((tmp_path / "data_parallel.json").read_text())
    (row,) = saved["results"]
    assert row["processes"] == 1 and row["global_batch"] == 16 and row["ratio_vs_1"] == 1.0
    assert row["rates_logged"] == 7 - bench.WINDOW + 1 and row["samples_per_s"] > 0  # one rate a step
    assert payload["results"][0]["samples_per_s"] == row["samples_per_s"]
    assert "| vs 1 process |" in (tmp_path / "data_parallel.md").read_text()
