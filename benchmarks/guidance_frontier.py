"""Accuracy against total NFE: what guidance costs, and what the cheaper forms give back.

    python benchmarks/guidance_frontier.py [--models shapes_flow shakespeare_ar motion_flow]
        [--n 2048] [--out docs/results] [--quick]

On the shipped checkpoints (shapes flow, Shakespeare autoregressive, motion flow) it samples the
same requests, with the same seed, under: CFG at several step counts (the flow models) or
weights (the autoregressive model, whose step count is its length); guidance intervals; per-batch
and per-sample adaptive guidance at several thresholds, and per-sample with a refined trigger
(``after``, ``patience``, ``measure=probs``, an interval inside); and the guidance-distilled student
(``*_student.ckpt``, sampled with its scalar condition ``w``) when that checkpoint exists.

Every row reports the judge's accuracy (all attributes / genre / action) with its binomial
standard error, the paired difference to CFG at the same steps and weight (same requests and
noise, so its standard error is much smaller than either accuracy's), the Fréchet distance where
the judge has one, and the **exact NFE per sample** (rows evaluated ÷ batch: per-sample adaptive
guidance evaluates the unconditional branch on fewer rows). Writes ``guidance_frontier.json`` and
``guidance_frontier.png`` into ``--out``; ``docs/guidance_cost.md`` explains them.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import date
from pathlib import Path

import torch

from framework.core import plugins
from framework.core.conditions import Conditions
from framework.evaluation import random_requests, score_guidance
from framework.training.module import load

ROOT = Path(__file__).resolve().parent.parent
PAIR = "(shape, color)"


def shapes_rows(quick: bool) -> list[dict]:
    """The shapes flow model: CFG joint w=4 (its README weight). CFG at 5 steps (NFE 10) is the
    comparison at equal NFE for the student at 10 steps."""
    steps = (10, 20) if quick else (5, 10, 20)
    rows = [dict(label=f"cfg w=4, {s} steps", method="cfg", steps=s, ref=None, g=f"cfg({PAIR}, 4)")
            for s in steps]
    rows.append(dict(label="w=1 (no guidance), 20 steps", method="none", steps=20, ref=None,
                     g=f"cond{PAIR}"))
    ref, top = "cfg w=4, 20 steps", 20
    for lo, hi in ((0.0, 0.5),) if quick else ((0.0, 0.5), (0.1, 0.6)):
        rows.append(dict(label=f"interval τ∈[{lo:g}, {hi:g}], {top} steps", method="interval", steps=top,
                         ref=ref, g=f"interval({PAIR}, 4, {lo}, {hi})"))
    # the cosine in x0 space: the velocity's stays ≈ 0.96 to the end, x̂0's rises to 0.9997
    for thr in ((0.98,) if quick else (0.97, 0.98)):
        for per in (False, True):
            kind = "per-sample" if per else "per-batch"
            rows.append(dict(label=f"adaptive {kind} γ̄={thr:g} (x0), {top} steps", method=f"adaptive {kind}",
                             steps=top, ref=ref,
                             g=f"adaptive(cfg({PAIR}, 4), threshold={thr}, per_sample={per}, space=x0)"))
    if not quick:
        rows += shapes_per_sample_rows(ref, top)
    return rows


def shapes_per_sample_rows(ref: str, top: int) -> list[dict]:
    """Per-sample adaptive guidance, refined (docs/guidance_cost.md, "Why per-sample rows lose"):
    ``after`` keeps rows from leaving at the first steps, ``patience`` asks for consecutive
    converged steps, and wrapping an interval from τ = 0.1 skips the steps guidance does not help."""
    out = []
    settings = ((0.97, 0.2, 1, 0.0), (0.97, 0.2, 2, 0.0), (0.97, 0.5, 1, 0.1), (0.98, 0.45, 1, 0.1))
    for thr, after, k, lo in settings:  # γ̄, after, patience, start of guidance
        inner = f"interval({PAIR}, 4, {lo}, 1.0)" if lo else f"cfg({PAIR}, 4)"
        label = (f"adaptive per-sample γ̄={thr:g} (x0), after τ={after:g}"
                 + (f", patience {k}" if k > 1 else "")
                 + (f", no guidance before τ={lo:g}" if lo else "") + f", {top} steps")
        out.append(dict(label=label, method="adaptive per-sample", steps=top, ref=ref,
                        g=f"adaptive({inner}, threshold={thr}, after={after}, patience={k}, space=x0)"))
    return out


def text_rows(quick: bool) -> list[dict]:
    """The Shakespeare AR model: CFG w=3 on genre; its 64 tokens are its steps."""
    rows = [dict(label=f"cfg w={w:g}", method="cfg", steps=64, ref=None,
                 g=f"cfg(genre, {w})" if w != 1 else "cond(genre)") for w in ((1, 3) if quick else (1, 2, 3))]
    ref = "cfg w=3"
    for lo, hi in ((0.0, 0.25), (0.0, 0.5), (0.0, 0.75)):
        rows.append(dict(label=f"interval τ∈[{lo:g}, {hi:g}]", method="interval", steps=64, ref=ref,
                         g=f"interval(genre, 3, {lo}, {hi})"))
    # log-prob vectors are dominated by the many unlikely tokens: cosines sit in 0.9988–0.9997
    # (a row leaves at its first crossing, so ``after`` keeps early noisy crossings from counting)
    for thr, after in (((0.9995, 0.0),) if quick else ((0.9996, 0.0), (0.9995, 0.4))):
        for per in (False, True):
            kind = "per-sample" if per else "per-batch"
            when = f", after τ={after:g}" if after else ""
            rows.append(dict(label=f"adaptive {kind} γ̄={thr:g}{when}", method=f"adaptive {kind}", steps=64,
                             ref=ref, g=f"adaptive(cfg(genre, 3), threshold={thr}, after={after}, "
                                        f"per_sample={per})"))
    if not quick:
        rows += text_per_sample_rows(ref)
    return rows


def text_per_sample_rows(ref: str) -> list[dict]:
    """Per-sample adaptive guidance, refined: ``patience`` consecutive converged tokens, and the
    cosine of next-token probabilities (``measure=probs``) instead of logits."""
    settings = ((0.9995, 2, "value", True), (0.99, 1, "probs", True), (0.99, 2, "probs", True),
                (0.99, 3, "probs", True), (0.99, 4, "probs", True), (0.98, 4, "probs", True),
                (0.99, 3, "probs", False))
    out = []
    for thr, k, measure, per in settings:  # γ̄, patience, measure, per sample
        kind = "per-sample" if per else "per-batch"
        label = (f"adaptive {kind} γ̄={thr:g}" + (" (probs)" if measure == "probs" else "")
                 + (f", patience {k}" if k > 1 else ""))
        out.append(dict(label=label, method=f"adaptive {kind}", steps=64, ref=ref,
                        g=f"adaptive(cfg(genre, 3), threshold={thr}, patience={k}, measure={measure}, "
                          f"per_sample={per})"))
    return out


def motion_rows(quick: bool) -> list[dict]:
    """The motion flow model: CFG w=2 on (text, trajectory, action)."""
    c = "(text, trajectory, action)"  # adaptive in x0 space, as for the shapes flow model
    rows = [dict(label=f"cfg w=2, {s} steps", method="cfg", steps=s, ref=None, g=f"cfg({c}, 2)")
            for s in ((10,) if quick else (10, 20))]
    top, ref = (10, "cfg w=2, 10 steps") if quick else (20, "cfg w=2, 20 steps")
    rows.append(dict(label=f"interval τ∈[0, 0.5], {top} steps", method="interval", steps=top, ref=ref,
                     g=f"interval({c}, 2, 0, 0.5)"))
    for per in (False, True):
        kind = "per-sample" if per else "per-batch"
        rows.append(dict(label=f"adaptive {kind} γ̄=0.99 (x0), {top} steps", method=f"adaptive {kind}",
                         steps=top, ref=ref,
                         g=f"adaptive(cfg({c}, 2), threshold=0.99, per_sample={per}, space=x0)"))
    return rows


MODELS = {
    "shapes_flow": dict(ckpt="recipes/image/checkpoints/shapes_flow.ckpt", rows=shapes_rows,
                        student="recipes/image/checkpoints/shapes_flow_student.ckpt", metric="acc_all",
                        student_w=4.0, student_steps=(10, 20, 40)),
    "shakespeare_ar": dict(ckpt="recipes/text/checkpoints/shakespeare_ar.ckpt", rows=text_rows,
                           student="recipes/text/checkpoints/shakespeare_ar_student.ckpt", metric="acc_genre",
                           student_w=3.0, student_steps=(64,)),
    "motion_flow": dict(ckpt="recipes/motion/checkpoints/motion_flow.ckpt", rows=motion_rows, student=None,
                        metric="acc_action", student_w=None),
}


def requests_for(name: str, model, n: int):
    """``(conditions, requested labels, per-sample correctness function)`` for one model."""
    if name == "shapes_flow":
        requested = random_requests(model.specs, ["shape", "color"], n, seed=0)
        judge = plugins.get("image").judge(model.specs, model.codec, ROOT / "recipes/image/checkpoints")

        def correct(media):
            with torch.no_grad():
                logits = judge.classifier(media.float().cpu().clamp(0, 1))
            return torch.stack([logits[k].argmax(-1) == v for k, v in requested.items()]).all(0)
        return Conditions.from_raw(model.specs, dict(requested), n), requested, judge, correct
    if name == "shakespeare_ar":
        genre = torch.arange(n) % 3  # balanced genres, as recipes/text/report.py
        requested = {"genre": genre}
        judge = plugins.get("text").judge({}, None, ROOT / "recipes/text/checkpoints")
        return (Conditions.from_raw(model.specs, requested, n), requested, judge,
                lambda media: judge.predict(media) == genre)
    from modalities.motion.data import caption_embeddings, load_or_generate
    from modalities.motion.metrics import MotionJudge, _normalised
    from modalities.motion.trajectory import encode_trajectory

    data = load_or_generate(n, 4242, None)  # the held-out requests of recipes/motion/report.py
    pos = torch.from_numpy(data["positions"])
    traj = encode_trajectory(torch.cat([pos[:, :, 0, [0, 2]], torch.ones(n, pos.shape[1], 1)], -1))
    req = {"text": caption_embeddings(data["caption"], None), "trajectory": traj,
           "action": torch.from_numpy(data["action"]).long()}
    judge = MotionJudge.cached(ROOT / "recipes/motion/checkpoints")

    def correct(media):
        with torch.no_grad():
            return judge.net.action(judge.net(_normalised(media.float().cpu()))).argmax(-1) == req["action"]
    return Conditions({k: req[k] for k in model.specs}), {"action": req["action"], "text": req["text"]}, \
        judge, correct


def _with_w(model, conds: Conditions, w: float) -> Conditions:
    """The same requests with the student's scalar condition ``w``."""
    spec = model.specs["w"]
    values, present = dict(conds.values), dict(conds.present)
    values["w"] = spec.encode(w, conds.batch_size)
    present["w"] = torch.ones(conds.batch_size, dtype=torch.bool)
    return Conditions(values, present)


def run_model(name: str, n: int, quick: bool, seed: int = 0) -> dict:
    cfg = MODELS[name]
    model = load(str(ROOT / cfg["ckpt"]))
    conds, requested, judge, correct = requests_for(name, model, n)
    rows = cfg["rows"](quick)
    results, right = [], {}

    def record(row: dict, mdl, cnd: Conditions, guidance: str) -> None:
        start = time.perf_counter()
        out_row, out = score_guidance(mdl, judge, cnd, requested, row["label"], guidance, row["steps"], seed)
        c = correct(out.media).float()
        right[row["label"]] = c
        acc = float(c.mean())
        entry = {**{k: v for k, v in row.items() if k != "g"}, "guidance": guidance,
                 "accuracy": acc, "se": math.sqrt(max(acc * (1 - acc), 1e-12) / n),
                 "nfe_per_sample": out.nfe_rows, "nfe_batches": out.nfe,
                 "seconds": time.perf_counter() - start,
                 **{k: v for k, v in out_row.items() if k not in ("guidance", "expression", "nfe",
                                                                   "nfe_per_step", "seconds")}}
        results.append(entry)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in entry.items()}),
              flush=True)

    for row in rows:
        record(row, model, conds, row["g"])
    student = cfg["student"]
    if student and (ROOT / student).exists():
        smodel = load(str(ROOT / student))
        w = cfg["student_w"]
        names = ", ".join([*[k for k in requested if k in smodel.specs], "w"])
        for s in cfg["student_steps"]:
            ref = next((r["label"] for r in rows if r["method"] == "cfg" and r["steps"] == s
                        and f", {w:g})" in r["g"]), None)
            row = dict(label=f"distilled student w={w:g}, {s} steps", method="student", steps=s, ref=ref)
            record(row, smodel, _with_w(smodel, conds, w), f"cond({names})")
    elif student:
        print(f"{name}: no student checkpoint at {student} (guidance distillation ships it); row skipped",
              flush=True)
    # paired differences to the reference CFG row: same requests and noise
    by_label = {e["label"]: e for e in results}
    for e in results:
        if e["method"] == "student":  # and to CFG at the same weight and NFE (half the student's steps)
            weight = f", {cfg['student_w']:g})"
            eq = next((r["label"] for r in rows if r["method"] == "cfg" and weight in r["g"]
                       and by_label.get(r["label"], {}).get("nfe_per_sample") == e["nfe_per_sample"]), None)
            if eq is not None:
                d = right[e["label"]] - right[eq]
                e["ref_equal_nfe"] = eq
                e["delta_equal_nfe"] = float(d.mean())
                e["delta_equal_nfe_se"] = float(d.std(unbiased=True) / math.sqrt(n))
        ref = e["ref"] or next((r["label"] for r in rows if r["method"] == "cfg" and r["steps"] == e["steps"]
                                and e["method"] not in ("cfg", "none")), None)
        if ref is None or ref not in right or ref == e["label"]:
            continue
        d = right[e["label"]] - right[ref]
        r = next(x for x in results if x["label"] == ref)
        e["ref"] = ref
        e["delta_accuracy"] = float(d.mean())
        e["delta_se"] = float(d.std(unbiased=True) / math.sqrt(n))
        e["nfe_saving"] = 1.0 - e["nfe_per_sample"] / r["nfe_per_sample"]
    return {"checkpoint": cfg["ckpt"], "metric": cfg["metric"], "n": n, "rows": results}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["models"])
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.2), squeeze=False)
    style = {"cfg": ("o", "C0"), "none": ("x", "k"), "interval": ("s", "C1"),
             "adaptive per-batch": ("^", "C2"), "adaptive per-sample": ("v", "C3"), "student": ("*", "C4")}
    for ax, name in zip(axes[0], names, strict=True):
        res = results["models"][name]
        by: dict[str, list] = {}
        for r in res["rows"]:
            by.setdefault(r["method"], []).append(r)
        for method, rs in by.items():
            rs = sorted(rs, key=lambda r: r["nfe_per_sample"])
            fmt, color = style.get(method, ("d", "C5"))
            ax.errorbar([r["nfe_per_sample"] for r in rs], [r["accuracy"] for r in rs],
                        yerr=[r["se"] for r in rs], fmt=fmt, color=color, label=method, capsize=2)
            if method in ("cfg", "student"):  # which weight / step count each point is
                for r in rs:  # students above their points, CFG below: at equal NFE they would overlap
                    text = (f"student, {r['steps']} steps" if method == "student"
                            else r["label"].removeprefix("cfg "))
                    ax.annotate(text, (r["nfe_per_sample"], r["accuracy"]), textcoords="offset points",
                                xytext=(4, 7) if method == "student" else (4, -11), fontsize=7, color=color)
        ax.set_xlabel("NFE per sample (exact, rows evaluated ÷ batch)")
        ax.set_ylabel(f"{res['metric']} (± 1 s.e.)")
        ax.set_title(f"{name} ({res['n']} samples per point)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: dict) -> str:
    lines = []
    for name, res in results["models"].items():
        fd = any("fd" in r for r in res["rows"])
        lines += [f"### {name} ({res['n']} samples per row; metric {res['metric']})", "",
                  "| method | steps | accuracy ± s.e. | Δ vs CFG same steps (± s.e.) | Δ vs CFG equal NFE "
                  "(± s.e.) | NFE/sample | NFE saved |" + (" FD |" if fd else ""),
                  "|---|---|---|---|---|---|---|" + ("---|" if fd else "")]
        for r in res["rows"]:
            delta = (f"{100 * r['delta_accuracy']:+.1f} ± {100 * r['delta_se']:.1f} pt"
                     if "delta_accuracy" in r else "—")
            saved = f"{100 * r['nfe_saving']:.0f}%" if "nfe_saving" in r else "—"
            equal = (f"{100 * r['delta_equal_nfe']:+.1f} ± {100 * r['delta_equal_nfe_se']:.1f} pt "
                     f"(vs {r['ref_equal_nfe'].removeprefix('cfg ')})" if "delta_equal_nfe" in r else "—")
            lines.append(f"| {r['label']} | {r['steps']} | {r['accuracy']:.3f} ± {r['se']:.3f} | {delta} | "
                         f"{equal} | "
                         f"{r['nfe_per_sample']:.1f} | {saved} |" + (f" {r['fd']:.0f} |" if fd else ""))
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["shapes_flow", "shakespeare_ar"], choices=list(MODELS))
    ap.add_argument("--n", type=int, nargs="+", default=[1024, 600, 256],
                    help="samples per row (same requests for every row), one per model in order")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/results")
    ap.add_argument("--quick", action="store_true", help="fewer rows (a smoke run)")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot and table from the JSON")
    args = ap.parse_args()
    torch.manual_seed(0)
    path = args.out / "guidance_frontier.json"
    results = {"date": str(date.today()), "machine": f"{platform.machine()}, {torch.get_num_threads()} "
               f"torch threads", "models": {}}
    if path.exists():  # keep the models this run does not redo
        results["models"] = json.loads(path.read_text()).get("models", {})
    for i, name in enumerate([] if args.plot_only else args.models):
        results["models"][name] = run_model(name, args.n[min(i, len(args.n) - 1)], args.quick)
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
    plot(results, args.out / "guidance_frontier.png")
    md = table(results)
    (args.out / "guidance_frontier.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
