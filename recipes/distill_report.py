"""Teacher with CFG against its distilled student, side by side, for docs/distillation.md.

    python recipes/distill_report.py [--models shapes_flow shakespeare_ar] [--out docs/results]

For each weight ``w``: the teacher under ``cfg(..., w)`` (2 evaluations per step; ``w = 1`` is
plain conditional sampling, 1 per step) and the student under ``cond(..., w=w)`` (1 per step), on
the same requests, seed and step count, timed in the same process one after the other; on the
shapes model also the teacher with CFG at the student's NFE (half the steps). Accuracy is judged
as in ``recipes/image/report.py`` (all requested attributes right, shapes) and
``recipes/text/report.py`` (genre, text). Writes ``distillation.json`` and ``distillation.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from framework.core import plugins
from framework.core.conditions import Conditions
from framework.evaluation import random_requests, score_guidance
from framework.training.module import load

ROOT = Path(__file__).resolve().parent
MODELS = {
    "shapes_flow": {"teacher": ROOT / "image/checkpoints/shapes_flow.ckpt",
                    "student": ROOT / "image/checkpoints/shapes_flow_student.ckpt",
                    "weights": (1, 2, 3, 4, 6), "steps": 30, "n": 512, "metric": "acc_all",
                    "teacher_g": "cfg((shape, color), {w})", "plain": "cond(shape, color)",
                    "student_g": "cond(shape, color, w={w})"},
    "shakespeare_ar": {"teacher": ROOT / "text/checkpoints/shakespeare_ar.ckpt",
                       "student": ROOT / "text/checkpoints/shakespeare_ar_student.ckpt",
                       "weights": (1, 1.5, 2, 3, 5), "steps": 64, "n": 600, "metric": "acc_genre",
                       "teacher_g": "cfg(genre, {w})", "plain": "cond(genre)",
                       "student_g": "cond(genre, w={w})"},
}


def _requests(model, name: str, n: int) -> tuple[Conditions, dict[str, torch.Tensor]]:
    if name == "shakespeare_ar":  # genres balanced, as recipes/text/report.py asks
        genre = torch.arange(n) % 3
        return Conditions.from_raw(model.specs, {"genre": genre}, n), {"genre": genre}
    requested = random_requests(model.specs, ["shape", "color"], n, seed=0)
    return Conditions.from_raw(model.specs, dict(requested), n), requested


def _row(model, judge, name: str, label: str, guidance: str, n: int, steps: int) -> dict:
    conds, requested = _requests(model, name, n)
    row, out = score_guidance(model, judge, conds, requested, label, guidance, steps, seed=0)
    row["samples_per_s"] = n / row["seconds"]
    row["steps"] = len(out.stats)
    return row


def run(out: Path, names: list[str], n: int | None = None) -> dict:
    """Score teacher and student of each model in ``names``; other models in the JSON are kept."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "distillation.json"
    results = json.loads(saved.read_text()) if saved.exists() else {"models": {}}
    results["machine"] = (f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), "
                          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for name in names:
        cfg = MODELS[name]
        teacher, student = load(str(cfg["teacher"])), load(str(cfg["student"]))
        k = n or cfg["n"]
        modality = plugins.get(teacher.hparams.modality)
        judge = modality.judge(teacher.specs, teacher.codec, cfg["teacher"].parent)
        rows = []
        for w in cfg["weights"]:
            tg = cfg["plain"] if w == 1 else cfg["teacher_g"].format(w=w)
            pair = {"w": w,
                    "teacher": _row(teacher, judge, name, f"teacher {tg}", tg, k, cfg["steps"]),
                    "student": _row(student, judge, name, f"student w={w}", cfg["student_g"].format(w=w), k,
                                    cfg["steps"])}
            if name == "shapes_flow" and w != 1:  # CFG at the student's NFE: half the steps
                half = cfg["steps"] // 2
                label = f"teacher {tg}, {half} steps"
                pair["teacher_half_steps"] = _row(teacher, judge, name, label, tg, k, half)
            rows.append(pair)
            m = cfg["metric"]
            print(f"{name} w={w}: teacher {pair['teacher'][m]:.3f} ({pair['teacher']['nfe']} NFE, "
                  f"{pair['teacher']['samples_per_s']:.1f}/s), student {pair['student'][m]:.3f} "
                  f"({pair['student']['nfe']} NFE, {pair['student']['samples_per_s']:.1f}/s)", flush=True)
        info = torch.load(cfg["student"], map_location="cpu", weights_only=True).get("distillation", {})
        results["models"][name] = {"n": k, "metric": cfg["metric"], "rows": rows, "distillation": info}
        saved.write_text(json.dumps(results, indent=2))
    (out / "distillation.md").write_text(tables(results))
    return results


def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def tables(results: dict) -> str:
    md = [f"Measured on {results['machine']}.", ""]
    for name, res in results["models"].items():
        m, n = res["metric"], res["n"]
        extra = "fd | " if m == "acc_all" else "distinct-2 | "
        md += [f"### {name} ({n} samples per cell; ± one binomial standard error; the difference's is "
               f"√(se_t² + se_s²))", "",
               f"| w | teacher {m} | student {m} | student − teacher | teacher {extra}student {extra}"
               "teacher NFE | student NFE | teacher samples/s | student samples/s |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for pair in res["rows"]:
            t, s = pair["teacher"], pair["student"]
            key = "fd" if m == "acc_all" else "distinct_2"
            fmt = (lambda v: f"{v:.0f}") if key == "fd" else (lambda v: f"{v:.2f}")
            md.append(f"| {pair['w']} | {t[m]:.3f} ± {_se(t[m], n):.3f} | {s[m]:.3f} ± {_se(s[m], n):.3f} | "
                      f"{100 * (s[m] - t[m]):+.1f} ± {100 * math.hypot(_se(t[m], n), _se(s[m], n)):.1f} pts"
                      f"{'' if abs(s[m] - t[m]) <= 0.02 else ' (> 2)'} | {fmt(t[key])} | {fmt(s[key])} | "
                      f"{t['nfe']} | "
                      f"{s['nfe']} | {t['samples_per_s']:.1f} | {s['samples_per_s']:.1f} |")
        half = [p for p in res["rows"] if "teacher_half_steps" in p]
        if half:
            md += ["", f"At equal NFE ({half[0]['student']['nfe']}): the teacher with CFG at "
                       f"{half[0]['teacher_half_steps']['steps']} steps against the student at "
                       f"{half[0]['student']['steps']} steps:", "",
                   f"| w | teacher {m} (CFG, half the steps) | student {m} | NFE |", "|---|---|---|---|"]
            md += [f"| {p['w']} | {p['teacher_half_steps'][m]:.3f} | {p['student'][m]:.3f} | "
                   f"{p['student']['nfe']} |" for p in half]
        d = res.get("distillation") or {}
        if d:
            md += ["", f"Student: `{d.get('guidance')}` distilled for w ∈ {d.get('weights')} in "
                       f"{d.get('steps')} steps from `{Path(d.get('teacher', '')).name}`."]
        md.append("")
    return "\n".join(md)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--n", type=int, default=None, help="samples per cell (default: 512 shapes, 600 text)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run(args.out, args.models, args.n)
    print((args.out / "distillation.md").read_text())
