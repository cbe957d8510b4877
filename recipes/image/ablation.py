"""Where broken samples come from: one shapes model, one change at a time, same requests and seed.

    python recipes/image/ablation.py --checkpoint recipes/image/checkpoints/shapes_flow.ckpt \
        [--n 256] [--seed 20261208] [--rows base,steps100,heun,shift3,position] [--out docs/results]

Each row samples the same ``n`` random (shape, colour) requests unguided (``cond(shape, color)``)
and changes one thing against the first row: the number of sampler steps, the solver (flow:
Heun), the sampling-time shift (flow: SD3's shift, sampling only, more steps at high noise), the
sampler's noise (diffusion: DDPM instead of DDIM), the unmasking order (masked), or the position
given as a condition (so the model need not pick one of four places itself). A row the family
cannot run is recorded as not run. ``--grid PNG`` instead writes 8 samples per row as a picture.
A sampler change that raises validity points at the sampler; one that does not points at the
model (its training or capacity). Scored by the image judge (``valid``, ``acc_all`` on valid
samples) and the rule check (``rule_valid``, ``rule_acc_all``). Rows are appended to
``--out``/``image_ablation.json`` under the checkpoint's name (a rerun skips rows already there;
``--fresh`` starts over) and the whole file is written as ``image_ablation.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from framework.evaluation import evaluate
from framework.training.module import load
from modalities.image.demo import CHECKPOINTS

SC = ("shape", "color")
#: row name → (label, steps (None: ``--steps``), sampler attributes to set, condition names)
ROWS = {
    "base": ("unguided", None, {}, SC),
    "steps100": ("100 steps", 100, {}, SC),
    "heun": ("flow: Heun (2 NFE per step)", None, {"solver": "heun"}, SC),
    "shift3": ("flow: sampling shift 3 (more steps at high noise)", None, {"shift": 3.0}, SC),
    "ddpm": ("diffusion: DDPM (stochastic) steps", None, {"sampler": "ddpm"}, SC),
    "random": ("masked: random unmasking order", None, {"order": "random"}, SC),
    "choice": ("masked: confidence order, choice temperature 2", None, {"choice_temperature": 2.0}, SC),
    "position": ("position given too", None, {}, ("shape", "color", "position")),
    "ddpm_position": ("diffusion: DDPM steps and position given", None, {"sampler": "ddpm"},
                      ("shape", "color", "position")),
}
KEEP = ("valid", "acc_all", "rule_valid", "rule_acc_all", "fd", "nfe", "seconds")


@contextmanager
def _changed(family, attrs: dict) -> Iterator[None]:
    """Set the sampler attributes ``attrs`` on ``family`` for the block, then put them back."""
    old = {a: getattr(family, a) for a in attrs}
    for a, v in attrs.items():
        setattr(family, a, v)
    try:
        yield
    finally:
        for a, v in old.items():
            setattr(family, a, v)


def ablate(checkpoint: Path, rows: list[str], n: int, seed: int, done: dict,
           base_steps: int = 30) -> Iterator[tuple[str, dict]]:
    """Score each of ``rows`` (keys of :data:`ROWS`) not yet in ``done``, adding it there; yields
    ``(key, row)`` as each is done."""
    model = load(str(checkpoint))
    family = model.family
    for key in rows:
        if key in done:
            continue
        label, steps, attrs, names = ROWS[key]
        steps = steps or base_steps
        if any(not hasattr(family, a) for a in attrs):
            done[key] = {"label": label, "error": f"the {family.name} family has no {sorted(attrs)}"}
            continue
        expr = f"cond({', '.join(names)})"
        with _changed(family, attrs):
            start = time.perf_counter()
            r = evaluate(model, {label: expr}, n, steps, seed=seed, cache_dir=CHECKPOINTS,
                         names=list(names))[0]
            r["seconds"] = time.perf_counter() - start
        done[key] = {"label": label, "expression": expr, "steps": steps, **{k: r[k] for k in KEEP}}
        yield key, done[key]


def grid(checkpoint: Path, rows: list[str], k: int, seed: int, path: Path, base_steps: int = 30) -> Path:
    """A labelled PNG of ``k`` samples per row (the same ``k`` requests and noise in every row)."""
    from framework.core.conditions import Conditions, random_requests
    from modalities.image.writers import save_grid

    model = load(str(checkpoint))
    family, media, labels = model.family, [], []
    for key in rows:
        label, steps, attrs, names = ROWS[key]
        if any(not hasattr(family, a) for a in attrs):
            continue
        requested = random_requests(model.specs, list(names), k, seed)
        conds = Conditions.from_raw(model.specs, dict(requested), k)
        with _changed(family, attrs):
            out = model.sample(conds, f"cond({', '.join(names)})", steps=steps or base_steps, seed=seed)
        media.append(out.media.float().clamp(0, 1).cpu())
        labels.append(label)
    return save_grid(torch.cat(media), path, rows=labels,
                     title=f"{checkpoint.stem}: the same {k} (shape, colour) requests per row, seed {seed}")


def markdown(results: dict) -> str:
    out = [f"Seed {results['seed']}, {results['n']} random (shape, colour) requests per row, unguided "
           "(`cond(shape, color)`); cells: judge valid, accuracy on valid samples, rules valid, "
           "rules accuracy.", ""]
    for name, rows in results["models"].items():
        out += [f"### {name}", "",
                "| change | steps | valid | acc_all | rule_valid | rule_acc_all | fd | NFE |",
                "|---|---|---|---|---|---|---|---|"]
        for key in sorted(rows, key=lambda k: list(ROWS).index(k) if k in ROWS else len(ROWS)):
            r = {**rows[key], "label": ROWS[key][0] if key in ROWS else rows[key]["label"]}
            if "error" in r:
                out.append(f"| {r['label']} | not run: {r['error']} |")
                continue
            out.append(f"| {r['label']} | {r['steps']} | {r['valid']:.2f} | {r['acc_all']:.2f} | "
                       f"{r['rule_valid']:.2f} | {r['rule_acc_all']:.2f} | {r['fd']:.0f} | {r['nfe']} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    from report_args import report_parser  # the sibling module

    ap = report_parser(__doc__, n=256, seed=20261208)  # --steps: every row's but steps100
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--name", help="the row group's name (default: the checkpoint's path)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--fresh", action="store_true", help="discard the rows already saved")
    ap.add_argument("--grid", type=Path, help="also write a PNG of 8 samples per row here (and stop)")
    a = ap.parse_args()
    rows = a.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        ap.exit(2, f"{ap.prog}: unknown rows {unknown}; valid: {', '.join(ROWS)}\n")
    torch.set_num_threads(1)
    if a.grid:
        print(grid(a.checkpoint, rows, 8, a.seed, a.grid, a.steps))
        return
    a.out.mkdir(parents=True, exist_ok=True)
    saved = a.out / "image_ablation.json"
    results = json.loads(saved.read_text()) if saved.exists() and not a.fresh else {}
    if results and (results["n"], results["seed"]) != (a.n, a.seed):
        ap.exit(2, f"{ap.prog}: {saved} holds n={results['n']}, seed={results['seed']}; "
                   f"use --fresh or those\n")
    results.update(n=a.n, seed=a.seed)
    done = results.setdefault("models", {}).setdefault(a.name or str(a.checkpoint), {})
    for key, row in ablate(a.checkpoint, rows, a.n, a.seed, done, a.steps):
        print(key, row, flush=True)
        saved.write_text(json.dumps(results, indent=2))
    saved.write_text(json.dumps(results, indent=2))
    (a.out / "image_ablation.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
