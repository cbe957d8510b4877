"""How many samples of each shipped image model are one clean shape, and the guidance frontier.

    python recipes/image/validity.py [--n 256] [--frontier-n 128] [--steps 30] [--out docs/results]
        [--part table|frontier|all] [--resume]

Two measures, side by side, on fresh seeds: the judge's reject class (``valid``: a CNN trained on
real renders against rendered failure modes, never on model outputs) with the judge's accuracy
counted on the valid samples, and the rule-based check (``rule_valid``, ``rule_acc_all``:
connected components, aspect ratio, holes, colour, outline; no network).

* **table**: every shipped model (flow, diffusion, masked, the distilled student, text → image)
  without guidance, under the guidance the docs document, and under its shipped default; negative
  prompts at every documented weight.
* **position**: the same requests with the position drawn too (uniform and independent of shape
  and colour, as in the data) and given to every branch: an exact way to sample a request that
  leaves the position free, which spares the model choosing one of four places itself.
* **frontier**: per family (flow, diffusion, masked), accuracy and validity against the guidance
  weight for CFG, APG, the guidance interval, CFG-Zero* and CFG-rescale (a method a family cannot
  run is recorded with the reason).

Writes ``image_validity.{json,md}`` and ``image_frontier.png`` into ``--out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from framework.evaluation import evaluate, format_table
from framework.training.module import load
from modalities.image.demo import CHECKPOINTS

P = "(shape, color)"
SEED = 20261207  # fresh: no other report samples with it
#: (label, expression) rows per shipped model; the first is unguided
TABLE = {
    "shapes_flow": {"no guidance": f"cond{P}",
                    "interval w=4, τ∈[0.5, 1] (documented)": f"interval({P}, 4, 0.5, 1.0)",
                    "cfg w=2": f"cfg({P}, 2)", "cfg w=4": f"cfg({P}, 4)",
                    "apg w=4 (x0)": f"apg({P}, 4, space=x0)"},
    "shapes_diffusion": {"no guidance": f"cond{P}", "cfg w=2 (documented)": f"cfg({P}, 2)",
                         "interval w=4, τ∈[0.5, 1]": f"interval({P}, 4, 0.5, 1.0)", "cfg w=4": f"cfg({P}, 4)",
                         "apg w=4 (x0)": f"apg({P}, 4, space=x0)"},
    "shapes_masked": {"no guidance": f"cond{P}", "cfg w=2 (documented)": f"cfg({P}, 2)",
                      "cfg w=1.5": f"cfg({P}, 1.5)"},
    "shapes_flow_student": {"w=1": "cond(shape, color, w=1)", "w=4 (documented)": "cond(shape, color, w=4)",
                            "w=2": "cond(shape, color, w=2)"},
}
P3 = "(shape, color, position)"
#: the same guidance with the position drawn (uniformly, as in the data) and given: rows per model
POSITION = {name: {"no guidance": f"cond{P3}", "cfg w=4": f"cfg({P3}, 4)", "cfg w=2": f"cfg({P3}, 2)",
                   "interval w=4, τ∈[0.5, 1]": f"interval({P3}, 4, 0.5, 1.0)"}
            for name in ("shapes_flow", "shapes_diffusion")}
POSITION["shapes_masked"] = {"no guidance": f"cond{P3}", "cfg w=2 (documented)": f"cfg({P3}, 2)"}
NEGATIVE = {f"negative w={w}": f"negative(shape, color, red, {w})" for w in (1.5, 2, 4)}
FRONTIER_W = (1, 2, 3, 4, 6)
METHODS = {"cfg": f"cfg({P}, {{w}})", "apg (x0)": f"apg({P}, {{w}}, space=x0)",
           "interval τ∈[0.5, 1]": f"interval({P}, {{w}}, 0.5, 1.0)",
           "cfg-zero*": f"cfg_zero_star({P}, {{w}})", "rescale φ=0.7": f"rescale(cfg({P}, {{w}}), 0.7)"}
FAMILIES = ("shapes_flow", "shapes_diffusion", "shapes_masked")
MODELS = (*TABLE, "shapes_text_flow")  # what --family may name (the frontier's are FAMILIES)
WEIGHTS = {"shapes_masked": (1, 1.5, 2, 3)}  # the masked model samples ~10× slower: fewer points
STEPS = {"shapes_masked": 64}  # one of its 64 tokens per step
KEEP = ("valid", "acc_all", "rule_valid", "rule_acc_all", "fd", "nfe")


def _rows(model, guidance: dict[str, str], n: int, steps: int, names=("shape", "color")) -> list[dict]:
    return evaluate(model, guidance, n, steps, seed=SEED, cache_dir=CHECKPOINTS, names=list(names))


def table(results: dict, n: int, steps: int, save, models: tuple[str, ...] = MODELS) -> None:
    """Fill ``results["table"]`` (model → rows), ``results["negative"]`` (with shapes_flow) and
    ``results["text"]`` (with shapes_text_flow), for ``models`` only."""
    for name, rows in TABLE.items():
        if name in results["table"] or name not in models:
            continue
        model = load(str(CHECKPOINTS / f"{name}.ckpt"))
        k = STEPS.get(name, steps)
        results["table"][name] = _rows(model, rows, n if name != "shapes_masked" else max(64, n // 2), k)
        print(name, format_table(results["table"][name]), flush=True)
        save()
    if not results.get("negative") and "shapes_flow" in models:
        flow = load(str(CHECKPOINTS / "shapes_flow.ckpt"))
        rows = {"no guidance": "cond(shape)", **NEGATIVE}
        results["negative"] = _rows(flow, rows, n, steps, names=("shape",))
        print("negative", format_table(results["negative"]), flush=True)
        save()
    if not results.get("text") and "shapes_text_flow" in models:
        from report_text import score  # the sibling script (run as recipes/image/validity.py)

        from modalities.image.captions import HELD_OUT, evaluation_captions
        from modalities.image.plugin import ImageModality

        model = load(str(CHECKPOINTS / "shapes_text_flow.ckpt"))
        judge = ImageModality().judge(model.specs, model.codec, CHECKPOINTS)
        caps = evaluation_captions(HELD_OUT, seed=SEED, n=n)
        results["text"] = {g: score(model, judge, caps, g, steps, SEED)
                           for g in ("cond(text)", "cfg(text, 3)")}
        print("text", results["text"], flush=True)
        save()


def position(results: dict, n: int, steps: int, save, models: tuple[str, ...]) -> None:
    """Fill ``results["position"]`` (model → rows): requests draw the position too, and every
    expression conditions on it; accuracy then counts shape, colour and position."""
    for name in models:
        if name in results["position"]:
            continue
        model = load(str(CHECKPOINTS / f"{name}.ckpt"))
        k = STEPS.get(name, steps)
        size = n if name != "shapes_masked" else max(64, n // 2)
        rows = _rows(model, POSITION[name], size, k, names=("shape", "color", "position"))
        results["position"][name] = rows
        print(name, format_table(results["position"][name]), flush=True)
        save()


def frontier(results: dict, n: int, steps: int, save, families: tuple[str, ...] = FAMILIES) -> None:
    """Fill ``results["frontier"][family][method][w]`` with the kept metrics (or ``{"error": ...}``)."""
    for name in families:
        model = load(str(CHECKPOINTS / f"{name}.ckpt"))
        k = STEPS.get(name, steps)
        fam = results["frontier"].setdefault(name, {})
        for method, template in METHODS.items():
            if method in fam:
                continue
            start = time.perf_counter()
            try:
                # w = 1 is the unguided cond(shape, color) for every method: sampled once per family
                unguided = next((by_w["1"] for by_w in fam.values() if "1" in by_w), None)
                weights = [w for w in WEIGHTS.get(name, FRONTIER_W) if w != 1 or unguided is None]
                by_w = {str(w): template.format(w=w) if w != 1 else f"cond{P}" for w in weights}
                rows = _rows(model, by_w, n if name != "shapes_masked" else max(64, n // 2), k)
                fam[method] = {r["guidance"]: {m: r[m] for m in KEEP} for r in rows}
                if unguided is not None:
                    fam[method] = {"1": unguided, **fam[method]}
            except Exception as e:  # a method this family cannot run: recorded, not fatal
                fam[method] = {"error": " ".join(str(e).split())[:160]}
            print(name, method, f"{time.perf_counter() - start:.0f} s", fam[method], flush=True)
            save()


def plot(results: dict, path: Path) -> None:
    """Validity and accuracy against w, one column per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = [f for f in FAMILIES if f in results["frontier"]]
    fig, axes = plt.subplots(2, len(fams), figsize=(4.2 * len(fams), 6.5), squeeze=False)
    for j, fam in enumerate(fams):
        for method, by_w in results["frontier"][fam].items():
            if "error" in by_w:
                continue
            ws = sorted(by_w, key=float)
            for i, metric in enumerate(("valid", "acc_all")):
                axes[i][j].plot([float(w) for w in ws], [by_w[w][metric] for w in ws], "o-", label=method)
                axes[i][j].plot([float(w) for w in ws], [by_w[w]["rule_" + metric] for w in ws], ":",
                                color=axes[i][j].lines[-1].get_color())
        axes[0][j].set_title(fam)
        axes[1][j].set_xlabel("guidance weight w")
    axes[0][0].set_ylabel("valid (solid: judge, dotted: rules)")
    axes[1][0].set_ylabel("accuracy on valid samples")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(results: dict) -> str:
    out = [f"Seed {SEED}; {results['steps']} steps (masked: 64). Cells: judge valid / accuracy on valid "
           "(shape and colour) · rules valid / accuracy.", ""]
    for name, rows in results["table"].items():
        out += [f"### {name}", "", "| guidance | valid | acc_all | rule_valid | rule_acc_all | fd | NFE |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {r['guidance']} (`{r['expression']}`) | {r['valid']:.2f} | {r['acc_all']:.2f} | "
                f"{r['rule_valid']:.2f} | {r['rule_acc_all']:.2f} | {r['fd']:.0f} | {r['nfe']} |"
                for r in rows]
        out.append("")
    for name, rows in results.get("position", {}).items():
        out += [f"### {name}, position drawn and given", "",
                "| guidance | valid | acc_all (shape, colour, position) | rule_valid | rule_acc_all | fd "
                "| NFE |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {r['guidance']} (`{r['expression']}`) | {r['valid']:.2f} | {r['acc_all']:.2f} | "
                f"{r['rule_valid']:.2f} | {r['rule_acc_all']:.2f} | {r['fd']:.0f} | {r['nfe']} |"
                for r in rows]
        out.append("")
    if results.get("negative"):
        out += ["### negative prompts (flow, random shapes, away from red)", "",
                "| guidance | valid | acc_shape | rule_valid | NFE |", "|---|---|---|---|---|"]
        out += [f"| {r['guidance']} (`{r['expression']}`) | {r['valid']:.2f} | {r['acc_shape']:.2f} | "
                f"{r['rule_valid']:.2f} | {r['nfe']} |" for r in results["negative"]]
        out.append("")
    if results.get("text"):
        out += ["### text → image (held-out paraphrases)", "",
                "| guidance | valid | acc shape+colour | rule_valid | rule acc | NFE |",
                "|---|---|---|---|---|---|"]
        out += [f"| `{g}` | {r['valid']:.2f} | {r['acc_shape_color']:.2f} | {r['rule_valid']:.2f} | "
                f"{r['rule_acc_shape_color']:.2f} | {r['nfe']} |" for g, r in results["text"].items()]
        out.append("")
    for fam, methods in results.get("frontier", {}).items():
        n = results["frontier_n"] if fam != "shapes_masked" else max(64, results["frontier_n"] // 2)
        out += [f"### frontier: {fam} (n = {n} per point)", "",
                "| method | " + " | ".join(f"w={w:g}" for w in FRONTIER_W) + " |",
                "|---|" + "---|" * len(FRONTIER_W)]
        for method, by_w in methods.items():
            if "error" in by_w:
                out.append(f"| {method} | not run: {by_w['error']} |")
                continue
            cells = (f"{c['valid']:.2f} / {c['acc_all']:.2f} · {c['rule_valid']:.2f} / "
                     f"{c['rule_acc_all']:.2f}" if c else "—" for c in (by_w.get(str(w)) for w in FRONTIER_W))
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def run(out: Path, n: int, frontier_n: int, steps: int, part: str, resume: bool,
        families: tuple[str, ...] = MODELS) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "image_validity.json"
    results = json.loads(saved.read_text()) if resume and saved.exists() else {}
    results.update(n=n, frontier_n=frontier_n, steps=steps, seed=SEED)
    results.setdefault("table", {})
    results.setdefault("frontier", {})
    results.setdefault("position", {})

    def save() -> None:
        saved.write_text(json.dumps(results, indent=2))

    if part in ("table", "all"):
        table(results, n, steps, save, families)
    if part in ("frontier", "all"):
        frontier(results, frontier_n, steps, save, tuple(f for f in families if f in FAMILIES))
    if part in ("position", "all"):
        position(results, n, steps, save, tuple(f for f in families if f in POSITION))
    save()
    if results["frontier"]:
        plot(results, out / "image_frontier.png")
    (out / "image_validity.md").write_text(markdown(results))
    return results


if __name__ == "__main__":
    from report_args import report_parser  # the sibling module

    ap = report_parser(__doc__, n=256, seed=SEED)
    ap.add_argument("--frontier-n", type=int, default=512, help="requests per frontier point (masked: half)")
    ap.add_argument("--part", choices=("table", "frontier", "position", "all"), default="all")
    ap.add_argument("--resume", action="store_true", help="keep the parts already in image_validity.json")
    ap.add_argument("--family", action="append", choices=MODELS,
                    help="rows of these models only (repeatable; the frontier: flow, diffusion, masked)")
    args = ap.parse_args()
    SEED = args.seed
    torch.set_num_threads(1)
    run(args.out, args.n, args.frontier_n, args.steps, args.part, args.resume, tuple(args.family or MODELS))
    print((args.out / "image_validity.md").read_text())
