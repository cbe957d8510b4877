"""The side-by-side benchmarks run on tiny settings, compare like with like and write results.

No timing assertions: speed is the benchmarks' job; these check that each run samples the same
outputs as its baseline and reports what it claims.
"""

import json


def test_vs_diffusers_matches_diffusers_loops(tmp_path, load_benchmark):
    payload = load_benchmark("vs_diffusers").run(tmp_path, quick=True, threads=1, steps=3, batch=2, size=8)
    saved = json.loads((tmp_path / "vs_diffusers.json").read_text())
    assert {(r["case"], r["baseline"]) for r in saved["results"]} == {
        ("cfg", "diffusers pipeline loop (batched)"), ("cfg", "diffusers guider (ClassifierFreeGuidance)"),
        ("independent", "diffusers guider path (per-branch calls)"), ("independent", "hand-batched loop")}
    for r in payload["results"]:
        assert r["max_abs_diff"] < 1e-4, r  # the same samples as diffusers' own loops
        assert r["ratio"] > 0 and (r["target"] is None) == (r["baseline"] == "hand-batched loop")
    assert "| ours ÷ baseline (wall) |" in (tmp_path / "vs_diffusers.md").read_text()


def test_vs_transformers_decodes_the_same_tokens(tmp_path, load_benchmark):
    payload = load_benchmark("vs_transformers").run(tmp_path, quick=True, threads=1, tokens=12, batch=2,
                                                    layers=1, width=32)
    r = payload["result"]
    assert r["identical_tokens"] is True and r["speed_ratio"] > 0
    assert (tmp_path / "vs_transformers.md").exists()


def test_families_reports_nfe_per_preset(tmp_path, load_benchmark):
    payload = load_benchmark("families").run(tmp_path, quick=True, threads=1, batch=4)
    rows = {(r["family"], r["guidance"]): r for r in payload["rows"]}
    assert {f for f, _ in rows} == {"diffusion", "flow", "masked", "autoregressive"}
    for family in ("diffusion", "flow", "masked", "autoregressive"):
        assert rows[family, "none (w=1)"]["nfe_per_step"] == 1
        assert rows[family, "cfg"]["nfe_per_step"] == 2 and rows[family, "nested"]["nfe_per_step"] == 3
        assert rows[family, "independent"]["nfe_per_step"] == 3
        assert 1 < rows[family, "interval"]["nfe_per_step"] < 2
        assert all(r["forward_calls_per_step"] == 1 for (f, _), r in rows.items() if f == family)
        for label in ("adaptive", "adaptive (per batch)"):  # per sample (default) and whole batch
            assert 1 <= rows[family, label]["nfe_per_step"] < 2
        assert rows[family, "adaptive (per batch)"]["expression"].endswith("per_sample=False)")
    assert all(r["samples_per_cpu_s"] > 0 and r["relative_to_unguided_cpu"] > 0 for r in rows.values())
    assert ("masked", "apg") not in rows and ("flow", "apg") in rows


def test_vs_diffusers_refuses_a_device_that_is_not_there(tmp_path, load_benchmark, capsys):
    import pytest

    bench = load_benchmark("vs_diffusers")
    for device in ("cuda:99", "tpu"):  # cuda:99: absent with or without a GPU
        with pytest.raises(SystemExit) as e:
            bench.run(tmp_path, quick=True, threads=1, steps=2, batch=2, size=8, device=device)
        assert e.value.code == 2
        assert f"--device {device}" in capsys.readouterr().err.replace("'", "")
    assert not (tmp_path / "vs_diffusers.json").exists()


def test_pretrained_overhead_samples_what_the_pipelines_sample(tmp_path, load_benchmark):
    payload = load_benchmark("pretrained_overhead").run(tmp_path, quick=True, threads=1, steps=2, batch=1)
    rows = {r["case"]: r for r in payload["results"]}
    assert set(rows) == {"diffusion", "flow", "masked", "autoregressive"}
    for r in rows.values():
        assert r["max_abs_diff"] <= 1e-4 and r["ratio"] > 0, r  # the pipeline's own output
    assert rows["masked"]["max_abs_diff"] == 0 and rows["autoregressive"]["max_abs_diff"] == 0
    assert "| overhead ms/step |" in (tmp_path / "pretrained_overhead.md").read_text()
