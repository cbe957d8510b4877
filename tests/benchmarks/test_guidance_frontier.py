"""The frontier script's table and plot (the sampling itself is run by the script, not tests)."""


def _row(label, method, acc, nfe, **extra):
    return {"label": label, "method": method, "steps": 20, "accuracy": acc, "se": 0.01,
            "nfe_per_sample": nfe, **extra}


def test_table_and_plot_from_results(tmp_path, load_benchmark):
    bench = load_benchmark("guidance_frontier")
    results = {"models": {"shapes_flow": {"n": 100, "metric": "acc_all", "rows": [
        _row("cfg w=4, 20 steps", "cfg", 0.94, 40.0, fd=1700.0),
        _row("adaptive per-sample", "adaptive per-sample", 0.92, 29.2, fd=1356.0, delta_accuracy=-0.021,
             delta_se=0.007, nfe_saving=0.27),
        _row("distilled student w=4, 40 steps", "student", 0.95, 40.0, fd=1500.0,
             ref_equal_nfe="cfg w=4, 20 steps",
             delta_equal_nfe=0.012, delta_equal_nfe_se=0.004)]}}}
    md = bench.table(results)
    assert "| adaptive per-sample | 20 | 0.920 ± 0.010 | -2.1 ± 0.7 pt | — | 29.2 | 27% | 1356 |" in md
    assert "| cfg w=4, 20 steps | 20 | 0.940 ± 0.010 | — | — | 40.0 | — | 1700 |" in md
    assert ("| distilled student w=4, 40 steps | 20 | 0.950 ± 0.010 | — | +1.2 ± 0.4 pt (vs w=4, 20 steps) | "
            "40.0 | — | 1500 |") in md
    bench.plot(results, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_every_row_parses_and_the_refined_rows_carry_their_options(load_benchmark):
    """The rows are guidance text: each parses, and each refined per-sample row builds the
    adaptive node its label names (patience, measure, after, an interval inside)."""
    from framework.guidance import parse
    from framework.guidance.ops.adaptive import Adaptive

    bench = load_benchmark("guidance_frontier")
    rows = bench.shapes_rows(False) + bench.text_rows(False) + bench.motion_rows(False)
    nodes = {r["label"]: parse(r["g"]) for r in rows}
    shapes = nodes["adaptive per-sample γ̄=0.98 (x0), after τ=0.45, no guidance before τ=0.1, 20 steps"]
    assert isinstance(shapes, Adaptive) and shapes.per_sample and shapes.space == "x0"
    assert (shapes.threshold, shapes.after, shapes.patience) == (0.98, 0.45, 1)
    assert "window(0.1, 1" in repr(shapes.inner)  # no guidance before τ = 0.1
    text = nodes["adaptive per-sample γ̄=0.99 (probs), patience 3"]
    assert (text.threshold, text.patience, text.measure, text.per_sample) == (0.99, 3, "probs", True)
    assert not nodes["adaptive per-batch γ̄=0.99 (probs), patience 3"].per_sample
