"""Sampling a library pipeline through polyguide vs the pipeline's own call: the wrapper's overhead.

One random-weight pipeline per family (:mod:`framework.pretrained.tiny`, sized so the network's
work dominates on a CPU), the same prompt, seed, steps and guidance weight on both sides, and the
whole call timed on both: prompt encoding, the denoising / decoding loop and the VAE / codec
decode. Every case first checks the outputs are the same (images ≤ 1e-4, tokens identical).

* diffusion — ``StableDiffusionPipeline`` (DDIM), ``cfg(text, 7.5)`` vs ``pipe(guidance_scale=7.5)``
* flow — ``StableDiffusion3Pipeline`` (FlowMatchEuler), ``cfg(text, 5)`` vs ``guidance_scale=5``
* masked — ``AmusedPipeline``, ``cfg(text, 10)`` vs ``guidance_scale=10``
* autoregressive — ``MusicgenForConditionalGeneration`` (greedy), ``cfg(text, 3)`` vs
  ``generate(guidance_scale=3)``

    python benchmarks/pretrained_overhead.py [--out benchmarks/results] [--quick] [--device cuda] [--reps 7]

Timing as in ``vs_diffusers.py``: the two calls alternate, each repetition gives one ratio
ours ÷ pipeline from adjacent runs, and the table reports the median ratio (target ≤ 1.02) and
the difference per step in milliseconds: the wrapper's cost is a fixed amount per step (planning,
condition rows, the finite checks of the guidance engine), so the ratio shrinks as the network
grows (``--scale``); these CPU-sized networks take a few milliseconds per step.

Each side's peak memory is the most bytes the call holds at once beyond what existed before it
(``framework.pretrained.memory.peak_bytes``: ``torch.cuda.max_memory_allocated`` on a GPU; on the
CPU every storage the operators create is followed): ours must not exceed the pipeline's by
more than the extra branch rows (here none: both evaluate the same two branches in one batched
call) and the condition rows the engine packs per branch (one ``[branches × batch, ...]`` copy of
each condition's value).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, side_by_side_main, write
from vs_diffusers import device_or_exit, timed_ratios

from framework.pretrained import tiny
from framework.pretrained.amused import Amused
from framework.pretrained.memory import peak_bytes
from framework.pretrained.musicgen import MusicGen
from framework.pretrained.sd3 import StableDiffusion3
from framework.pretrained.stable_diffusion import StableDiffusion

TARGET = 1.02
PROMPT = "a red cube on the grass"


def _image_case(name: str, pipe, wrapper, w: float, steps: int, batch: int, dev) -> dict:
    pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    model = wrapper(pipe)

    def ours():
        return model.sample({"text": PROMPT}, f"cfg(text, {w:g})", n=batch, steps=steps, seed=0).media

    def theirs():
        return pipe(PROMPT, num_images_per_prompt=batch, num_inference_steps=steps, guidance_scale=w,
                    generator=torch.Generator().manual_seed(0), output_type="pt").images

    net = pipe.transformer if hasattr(pipe, "transformer") else pipe.unet
    return {"case": name, "pipeline": type(pipe).__name__, "steps": steps, "batch": batch,
            "fns": (ours, theirs), "check": lambda a, b: float((a.float() - b.float()).abs().max()),
            "parameters": sum(p.numel() for p in net.parameters())}


def _musicgen_case(frames: int, batch: int, dev, width: int) -> dict:
    net, tok = tiny.tiny_musicgen(width=width, layers=2)
    net.to(dev)
    model = MusicGen(net, tok)
    K = net.decoder.config.num_codebooks
    texts = [PROMPT] * batch
    enc = {k: v.to(dev) for k, v in tok(texts, padding=True, return_tensors="pt").items()}

    def ours():
        return model.sample({"text": texts}, "cfg(text, 3)", n=batch, steps=frames, seed=0).media

    def theirs():
        return net.generate(**enc, guidance_scale=3.0, max_new_tokens=frames + K - 1)

    return {"case": "autoregressive", "pipeline": type(net).__name__, "steps": frames + K - 1, "batch": batch,
            "fns": (ours, theirs), "check": lambda a, b: float((a - b).abs().max()),
            "parameters": sum(p.numel() for p in net.decoder.parameters())}


def run(out: Path, quick: bool = False, threads: int = 2, device: str = "cpu", reps: int | None = None,
        steps: int = 20, batch: int = 2, scale: int = 1, families: tuple[str, ...] | None = None) -> dict:
    """Time every family; ``scale`` multiplies the networks' widths (1: CPU-sized)."""
    dev = device_or_exit(device)
    torch.set_num_threads(threads)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    reps = reps or (1 if quick else 7)
    tmp = Path(tempfile.mkdtemp(prefix="pretrained-overhead-"))
    builders = {
        "diffusion": lambda: _image_case("diffusion", tiny.stable_diffusion(tmp, width=32 * scale, size=16),
                                         StableDiffusion, 7.5, steps, batch, dev),
        "flow": lambda: _image_case("flow", tiny.sd3(tmp, width=32 * scale, layers=2, size=16),
                                    StableDiffusion3, 5.0, steps, batch, dev),
        "masked": lambda: _image_case("masked", tiny.amused(tmp, width=64 * scale, layers=2), Amused, 10.0,
                                      max(4, steps // 2), batch, dev),
        "autoregressive": lambda: _musicgen_case(3 * steps, batch, dev, width=64 * scale),
    }
    results = []
    med = statistics.median
    with torch.inference_mode():
        for name in families or tuple(builders):
            case = builders[name]()
            ours, theirs = case.pop("fns")
            diff = case.pop("check")(ours(), theirs())
            times = timed_ratios({"ours": ours, "pipeline": theirs}, reps=reps, warmup=0 if quick else 1,
                                 sync=sync)
            ratios = [a / b for a, b in zip(times["ours"]["wall"], times["pipeline"]["wall"], strict=True)]
            cpu = [a / b for a, b in zip(times["ours"]["cpu"], times["pipeline"]["cpu"], strict=True)]
            quart = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
            results.append({**case, "scale": scale, "ours_s": med(times["ours"]["wall"]),
                            "pipeline_s": med(times["pipeline"]["wall"]), "ratio": med(ratios),
                            "ratios": ratios, "ratio_q1": quart[0], "ratio_q3": quart[2],
                            "ratio_of_fastest": min(times["ours"]["wall"]) / min(times["pipeline"]["wall"]),
                            "ratio_cpu": med(cpu) if dev.type == "cpu" else None, "target": TARGET,
                            "meets_target": med(ratios) <= TARGET, "max_abs_diff": diff,
                            "peak_ours": peak_bytes(ours, dev), "peak_pipeline": peak_bytes(theirs, dev)})
    payload = {"benchmark": "pretrained_overhead", "reps": reps, "device": str(dev),
               "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
               "environment": environment(), "results": results}
    write(out, "pretrained_overhead" + ("" if dev.type == "cpu" else f"_{dev.type}"), payload, table(payload))
    return payload


def table(payload: dict) -> str:
    name = payload.get("device_name")
    where = payload["device"] + (f" ({name})" if name else "")
    lines = [f"Pipelines sampled through polyguide vs their own call, on {where}; median (and quartiles) "
             f"of {payload['reps']} interleaved ratios; peak = bytes the call allocates", "",
             "| family | pipeline | steps | batch | ours s | pipeline s | ours ÷ pipeline (wall) | quartiles "
             "| (CPU time) | target | overhead ms/step | max abs diff | peak KiB ours / pipeline |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in payload["results"]:
        cpu = "—" if r.get("ratio_cpu") is None else f"{r['ratio_cpu']:.3f}"
        ok = "yes" if r["meets_target"] else "NO"
        q = f"{r['ratio_q1']:.3f}–{r['ratio_q3']:.3f}" if "ratio_q1" in r else "—"
        kib = (r.get("peak_ours"), r.get("peak_pipeline"))
        mem = "—" if kib[0] is None else f"{kib[0] / 2**10:,.0f} / {kib[1] / 2**10:,.0f}"
        lines.append(f"| {r['case']} | {r['pipeline']} | {r['steps']} | {r['batch']} | {r['ours_s']:.3f} | "
                     f"{r['pipeline_s']:.3f} | {r['ratio']:.3f} | {q} | {cpu} | ≤ {r['target']:g} ({ok}) | "
                     f"{1000 * (r['ours_s'] - r['pipeline_s']) / r['steps']:+.2f} | "
                     f"{r['max_abs_diff']:.1e} | {mem} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    side_by_side_main(__doc__, run, table, reps=7, steps=(20, None), batch=(2, None),
                      scale=(1, "network width multiplier (e.g. 4 on a GPU)"))
