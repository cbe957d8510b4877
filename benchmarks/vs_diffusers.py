"""Guided DDIM sampling: our engine vs diffusers' own loops, same UNet2DModel and schedule.

A class-conditional ``UNet2DModel`` (random weights, built offline; two categorical conditions
folded into one class embedding) and diffusers' ``DDIMScheduler`` at 50 steps. All loops start
from the same noise and must end at the same samples (checked).

* **CFG (2 branches)** — ours vs (a) the classic diffusers pipeline loop, which batches
  ``[x, x]`` with ``[cond, uncond]`` labels into one U-Net call, and (b) diffusers' guider path,
  ``ClassifierFreeGuidance``, which (like diffusers' modular pipelines) runs the denoiser once per
  branch batch. Target: ours ÷ theirs ≤ 1.0.
* **independent over (shape, color) (3 branches)** — diffusers has no multi-condition guider, so
  the baseline is its guider path's execution model: one U-Net call per branch, combined by the
  formula. Target ≤ 0.8. A hand-batched loop is shown as the best case.

    python benchmarks/vs_diffusers.py [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DModel
from diffusers.guiders import ClassifierFreeGuidance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, interleaved, main, write

from framework.core.conditions import Conditions, ConditionSpec
from framework.generators import Diffusion
from framework.guidance import presets as G
from framework.nn import UNetAdapter, class_embeds_needed

SPECS = (ConditionSpec("shape", labels=("circle", "square", "triangle", "star")),
         ConditionSpec("color", labels=("red", "green", "blue")))
SPEC_MAP = {s.name: s for s in SPECS}
TARGETS = {"cfg": 1.0, "independent": 0.8}


def class_ids(shape: torch.Tensor | None, color: torch.Tensor | None, batch: int) -> torch.Tensor:
    """The adapter's class id: shape digit + 5 · colour digit, the last digit of each being its null."""
    s = shape if shape is not None else torch.full((batch,), 4)
    c = color if color is not None else torch.full((batch,), 3)
    return s + 5 * c


def run(out: Path, quick: bool = False, threads: int = 2, steps: int = 50, batch: int = 8,
        size: int = 32) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=size, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8,
                       num_class_embeds=class_embeds_needed(SPECS)).eval()
    family = Diffusion(sampler="ddim")
    model = UNetAdapter(unet, SPECS)
    raw = {"shape": ["square", "star"] * (batch // 2), "color": "blue"}
    conds = Conditions.from_raw(SPEC_MAP, raw, batch)
    shape, color = conds.values["shape"], conds.values["color"]
    noise = torch.randn((batch, 3, size, size), generator=torch.Generator().manual_seed(0))

    def scheduler():
        s = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)
        s.set_timesteps(steps)
        return s

    def ours(expr):
        return lambda: family.sample(model, expr, conds, (3, size, size), steps, specs=SPEC_MAP,
                                     generator=torch.Generator().manual_seed(0)).samples

    def batched_loop(labels: list[torch.Tensor], combine):
        def loop():
            sched, x, k = scheduler(), noise.clone(), len(labels)
            cl = torch.cat(labels)
            for t in sched.timesteps:
                preds = unet(torch.cat([x] * k), t, class_labels=cl).sample.chunk(k)
                x = sched.step(combine(*preds), t, x).prev_sample
            return x
        return loop

    def per_branch_loop(labels: list[torch.Tensor], combine):
        def loop():
            sched, x = scheduler(), noise.clone()
            for t in sched.timesteps:
                preds = [unet(x, t, class_labels=c).sample for c in labels]
                x = sched.step(combine(*preds), t, x).prev_sample
            return x
        return loop

    def guider_loop(w: float):
        def loop():
            sched, x, guider = scheduler(), noise.clone(), ClassifierFreeGuidance(guidance_scale=w)
            cond, uncond = class_ids(shape, color, batch), class_ids(None, None, batch)
            for i, t in enumerate(sched.timesteps):
                guider.set_state(i, steps, t)
                pred_cond = unet(x, t, class_labels=cond).sample
                pred_uncond = unet(x, t, class_labels=uncond).sample
                pred = guider.forward(pred_cond, pred_uncond).pred
                x = sched.step(pred, t, x).prev_sample
            return x
        return loop

    w, (w1, w2) = 4.0, (3.0, 2.0)
    indep = lambda u, s, c: u + w1 * (s - u) + w2 * (c - u)
    both, none = class_ids(shape, color, batch), class_ids(None, None, batch)
    only_s, only_c = class_ids(shape, None, batch), class_ids(None, color, batch)
    cases = {
        "cfg": {"ours": ours(G.cfg(("shape", "color"), w)),
                "diffusers pipeline loop (batched)": batched_loop([both, none], lambda c, u: u + w * (c - u)),
                "diffusers guider (ClassifierFreeGuidance)": guider_loop(w)},
        "independent": {
            "ours": ours(G.independent(["shape", "color"], [w1, w2])),
            "diffusers guider path (per-branch calls)": per_branch_loop([none, only_s, only_c], indep),
            "hand-batched loop": batched_loop([none, only_s, only_c], indep)},
    }
    results = []
    with torch.inference_mode():
        for case, fns in cases.items():
            outs = {k: f() for k, f in fns.items()}
            diff = max(float((outs["ours"] - v).abs().max()) for v in outs.values())
            # whole sampling runs of seconds each: the fastest of 5 is the least disturbed by the machine
            times = interleaved(fns, reps=1 if quick else 5, warmup=0 if quick else 1, stat=min)
            for name, sec in times.items():
                if name == "ours":
                    continue
                ratio = times["ours"] / sec
                primary = name.startswith("diffusers")
                results.append({"case": case, "baseline": name, "ours_s": times["ours"], "baseline_s": sec,
                                "ratio": ratio, "target": TARGETS[case] if primary else None,
                                "meets_target": (ratio <= TARGETS[case]) if primary else None,
                                "max_abs_diff": diff})
    payload = {"benchmark": "vs_diffusers", "steps": steps, "batch": batch, "size": size,
               "unet_parameters": sum(p.numel() for p in unet.parameters()), "environment": environment(),
               "results": results}
    write(out, "vs_diffusers", payload, table(payload))
    return payload


def table(payload: dict) -> str:
    size = f"{payload['size']}×{payload['size']}"
    lines = [f"Guided DDIM, {payload['steps']} steps, batch {payload['batch']}, {size} "
             f"UNet2DModel ({payload['unet_parameters']:,} parameters)", "",
             "| guidance | baseline | ours s | baseline s | ours ÷ baseline | target | max |Δ| |",
             "|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        target = "—" if r["target"] is None else f"≤ {r['target']:g} ({'yes' if r['meets_target'] else 'NO'})"
        lines.append(f"| {r['case']} | {r['baseline']} | {r['ours_s']:.2f} | {r['baseline_s']:.2f} | "
                     f"{r['ratio']:.3f} | {target} | {r['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(__doc__, run, table)
