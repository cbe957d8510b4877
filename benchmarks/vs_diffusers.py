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

    python benchmarks/vs_diffusers.py [--out benchmarks/results] [--quick] [--device cuda] [--reps 9]

Timing: the loops run in turn, their order alternating every repetition, and each repetition
gives one ratio ours ÷ baseline from adjacent runs; the table reports the **median of those
ratios** (a shared machine slows neighbouring runs alike, so ratios are steadier than times).
On CPU the ratio of process CPU time is reported too: it does not count time the process spent
waiting for a core another process held. ``--device cuda`` runs the same comparison on a GPU
(synchronising before each clock read); a device that is not there is an error, never a
silent CPU run.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DModel
from diffusers.guiders import ClassifierFreeGuidance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, side_by_side_main, write

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
    dev = next((v.device for v in (shape, color) if v is not None), torch.device("cpu"))
    s = shape if shape is not None else torch.full((batch,), 4, device=dev)
    c = color if color is not None else torch.full((batch,), 3, device=dev)
    return s + 5 * c


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def device_or_exit(name: str) -> torch.device:
    """``torch.device(name)``, or :class:`SystemExit` (code 2, one line on stderr) naming why it
    cannot be used."""
    try:
        device = torch.device(name)
    except RuntimeError as e:
        _fail(f"vs_diffusers: --device {name!r} is not a device torch knows ({e})")
    if device.type == "cuda" and not torch.cuda.is_available():
        _fail(f"vs_diffusers: --device {name}: no CUDA device is available here "
              f"(torch {torch.__version__}, torch.cuda.is_available() is False)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        _fail(f"vs_diffusers: --device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        _fail(f"vs_diffusers: --device {name}: MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        _fail(f"vs_diffusers: --device {name}: only cpu, cuda and mps are supported")
    return device


def timed_ratios(fns: dict, reps: int, warmup: int, sync) -> dict[str, dict[str, list[float]]]:
    """Wall and process-CPU seconds of every function per repetition, order alternating."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            sync()
    names = list(fns)
    out = {k: {"wall": [], "cpu": []} for k in fns}
    for r in range(reps):
        for name in names if r % 2 == 0 else reversed(names):
            sync()
            w, c = time.perf_counter(), time.process_time()
            fns[name]()
            sync()
            out[name]["wall"].append(time.perf_counter() - w)
            out[name]["cpu"].append(time.process_time() - c)
    return out


def run(out: Path, quick: bool = False, threads: int = 2, steps: int = 50, batch: int = 8,
        size: int = 32, device: str = "cpu", reps: int | None = None) -> dict:
    dev = device_or_exit(device)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    unet = UNet2DModel(sample_size=size, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8,
                       num_class_embeds=class_embeds_needed(SPECS)).eval().to(dev)
    family = Diffusion(sampler="ddim")
    model = UNetAdapter(unet, SPECS)
    raw = {"shape": ["square", "star"] * (batch // 2), "color": "blue"}
    conds = Conditions.from_raw(SPEC_MAP, raw, batch).to(dev)
    shape, color = conds.values["shape"], conds.values["color"]
    noise = torch.randn((batch, 3, size, size), generator=torch.Generator().manual_seed(0)).to(dev)

    def scheduler():
        s = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)
        s.set_timesteps(steps, device=dev)
        return s

    def ours(expr):
        return lambda: family.sample(model, expr, conds, (3, size, size), steps, specs=SPEC_MAP,
                                     generator=torch.Generator().manual_seed(0), device=dev).samples

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
            cond, uncond = class_ids(shape, color, batch), class_ids(None, None, batch).to(dev)
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
    both, none = class_ids(shape, color, batch), class_ids(None, None, batch).to(dev)
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
    reps = reps or (1 if quick else 9)
    med = statistics.median
    with torch.inference_mode():
        for case, fns in cases.items():
            outs = {k: f().cpu() for k, f in fns.items()}
            diff = max(float((outs["ours"] - v).abs().max()) for v in outs.values())
            times = timed_ratios(fns, reps=reps, warmup=0 if quick else 1, sync=sync)
            ours_t = times["ours"]
            for name, t in times.items():
                if name == "ours":
                    continue
                ratio = med([a / b for a, b in zip(ours_t["wall"], t["wall"], strict=True)])
                cpu = med([a / b for a, b in zip(ours_t["cpu"], t["cpu"], strict=True)])
                primary = name.startswith("diffusers")
                results.append({"case": case, "baseline": name, "ours_s": med(ours_t["wall"]),
                                "baseline_s": med(t["wall"]), "ratio": ratio,
                                "ratio_cpu": cpu if dev.type == "cpu" else None,
                                "ratios": [a / b for a, b in zip(ours_t["wall"], t["wall"], strict=True)],
                                "target": TARGETS[case] if primary else None,
                                "meets_target": (ratio <= TARGETS[case]) if primary else None,
                                "max_abs_diff": diff})
    payload = {"benchmark": "vs_diffusers", "steps": steps, "batch": batch, "size": size, "reps": reps,
               "device": str(dev), "device_name": (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                                                   else None),
               "unet_parameters": sum(p.numel() for p in unet.parameters()), "environment": environment(),
               "results": results}
    write(out, "vs_diffusers", payload, table(payload))
    return payload


def table(payload: dict) -> str:
    size = f"{payload['size']}×{payload['size']}"
    name = payload.get("device_name")
    where = payload.get("device", "cpu") + (f" ({name})" if name else "")
    lines = [f"Guided DDIM, {payload['steps']} steps, batch {payload['batch']}, {size} "
             f"UNet2DModel ({payload['unet_parameters']:,} parameters), on {where}; median of "
             f"{payload.get('reps', '?')} interleaved ratios", "",
             "| guidance | baseline | ours s | baseline s | ours ÷ baseline (wall) | (CPU time) | target "
             "| max |Δ| |",
             "|---|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        target = "—" if r["target"] is None else f"≤ {r['target']:g} ({'yes' if r['meets_target'] else 'NO'})"
        cpu = "—" if r.get("ratio_cpu") is None else f"{r['ratio_cpu']:.3f}"
        lines.append(f"| {r['case']} | {r['baseline']} | {r['ours_s']:.2f} | {r['baseline_s']:.2f} | "
                     f"{r['ratio']:.3f} | {cpu} | {target} | {r['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    side_by_side_main(__doc__, run, table, reps=9, batch=(8, None), steps=(50, None))
