"""Score the shipped image checkpoints under guidance and record the results for docs/image.md.

    python recipes/image/report.py [--n 512] [--steps 30] [--out docs/results]

For every shipped checkpoint (shapes flow / diffusion / masked, digits flow): accuracy of
guided samples as judged by a classifier trained on real images (all requested attributes
right), Fréchet distance on its features, diversity, NFE and seconds. On the shapes flow model,
a sweep of the guidance weight for CFG, APG and CFG-rescale (the accuracy / Fréchet-distance
trade-off, plotted). Writes ``image.json``, ``image.md`` and PNGs into ``--out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from framework.evaluation import evaluate, format_table, markdown_table
from framework.training.module import load
from modalities.image.demo import CHECKPOINTS
from modalities.image.writers import save_grid, save_sweep_plot

PAIR = "(shape, color)"
TABLE = {
    "w=1 (no guidance)": f"cond{PAIR}",
    "cfg joint w=4": f"cfg({PAIR}, 4)",
    "independent 3, 3": "independent([shape, color], [3, 3])",
    "nested 2, 4": "nested([shape, color], [2, 4])",
    "apg w=8 (x0)": f"apg({PAIR}, 8, space=x0)",
}
SWEEP_W = (1, 1.5, 2, 3, 4, 6, 8)
SWEEP = {"cfg": f"cfg({PAIR}, {{w}})", "apg (x0, η=0, β=−0.5)": f"apg({PAIR}, {{w}}, space=x0)",
         "cfg-rescale (φ=0.7)": f"rescale(cfg({PAIR}, {{w}}), 0.7)"}
DIGITS = {f"cfg w={w}" if w != 1 else "w=1 (no guidance)": f"cfg(digit, {w})" if w != 1 else "cond(digit)"
          for w in (1, 2, 3, 4)}
MODELS = {"shapes_flow": TABLE, "shapes_diffusion": TABLE,
          "shapes_masked": {"w=1 (no guidance)": f"cond{PAIR}", "cfg joint w=2": f"cfg({PAIR}, 2)",
                            "cfg joint w=4": f"cfg({PAIR}, 4)",
                            "independent 2, 2": "independent([shape, color], [2, 2])",
                            "nested 2, 2": "nested([shape, color], [2, 2])"},
          "digits_flow": DIGITS}
# masked: one of its 64 tokens per step (unmasking several at once loses coherence at this size);
# each step scores 2,401 tokens at 64 positions, so it is judged on fewer samples
STEPS = {"shapes_masked": 64}
SAMPLES = {"shapes_masked": 96}


def picture(model, guidance: str, requests: list[dict[str, str]], per: int, steps: int, path: Path) -> Path:
    """A grid: one row per request, ``per`` samples each."""
    media = []
    for raw in requests:
        media.append(model.sample(raw, guidance, n=per, steps=steps, seed=0).media)
    return save_grid(torch.cat(media), path, rows=[" ".join(r.values()) for r in requests],
                     title=f"{path.stem}: {guidance}")


def run(out: Path, n: int, steps: int, resume: bool = False) -> dict:
    """Score every model (and the sweep); with ``resume``, parts already in ``image.json`` are kept."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "image.json"
    results: dict = {"n": n, "steps": steps, "tables": {}, "sweep": {}}
    if resume and saved.exists():
        results = json.loads(saved.read_text())
    md = [f"Judged on {n} random requests per row ({SAMPLES['shapes_masked']} for the masked model); "
          f"{steps} sampling steps (masked: 64 unmasking steps, one token each).", ""]
    for name, table in MODELS.items():
        ckpt = CHECKPOINTS / f"{name}.ckpt"
        if name in results["tables"]:
            md += [f"### {name}", "", format_table(results["tables"][name])]
            continue
        model = load(str(ckpt))
        names = ["digit"] if name.startswith("digits") else ["shape", "color"]
        k = STEPS.get(name, steps)
        rows = evaluate(model, table, SAMPLES.get(name, n), k, seed=0, cache_dir=CHECKPOINTS, names=names,
                        progress=True)
        results["tables"][name] = rows
        saved.write_text(json.dumps(results, indent=2))  # progress survives an interruption
        md += [f"### {name}", "", format_table(rows)]
        requests = ([{"digit": str(d)} for d in range(10)] if name.startswith("digits") else
                    [{"shape": s, "color": c} for s, c in [("circle", "red"), ("square", "green"),
                                                          ("triangle", "blue"), ("cross", "yellow")]])
        best = {"digits_flow": "cfg(digit, 3)", "shapes_masked": f"cfg({PAIR}, 2)"}.get(name,
                                                                                      f"cfg({PAIR}, 4)")
        picture(model, best, requests, 8, k, out / f"image_{name}.png")
        if name.startswith("digits") or name == "shapes_masked":
            w1 = "cond(digit)" if name.startswith("digits") else f"cond{PAIR}"
            picture(model, w1, requests, 8, k, out / f"image_{name}_w1.png")
    flow = load(str(CHECKPOINTS / "shapes_flow.ckpt"))
    for method, template in SWEEP.items():
        if method in results["sweep"]:
            results["sweep"][method] = {float(w): r for w, r in results["sweep"][method].items()}
            continue
        start = time.perf_counter()
        rows = evaluate(flow, {str(w): template.format(w=w) for w in SWEEP_W}, n, steps, seed=0,
                        cache_dir=CHECKPOINTS, names=["shape", "color"])
        results["sweep"][method] = {float(r["guidance"]): r for r in rows}
        print(f"sweep {method}: {time.perf_counter() - start:.0f} s")
        saved.write_text(json.dumps(results, indent=2))
    save_sweep_plot(results["sweep"], out / "image_sweep.png")
    body = [[method, *(f"{by_w[float(w)]['acc_all']:.2f} / {by_w[float(w)]['fd']:.0f}" for w in SWEEP_W)]
            for method, by_w in results["sweep"].items()]
    md += ["### Guidance sweep (shapes_flow)", "",
           markdown_table(["method", *(f"w={w:g}" for w in SWEEP_W)], body, fmt=str)]
    md.append("\n(cells: all-attributes accuracy / Fréchet distance)\n")
    (out / "image.json").write_text(json.dumps(results, indent=2))
    (out / "image.md").write_text("\n".join(md))
    return results


if __name__ == "__main__":
    from report_args import report_parser  # the sibling module

    ap = report_parser(__doc__, n=512)
    ap.add_argument("--resume", action="store_true", help="keep the parts already in image.json")
    args = ap.parse_args()
    run(args.out, args.n, args.steps, args.resume)
    print((args.out / "image.md").read_text())
