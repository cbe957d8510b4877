"""Train the motion VQ-VAE tokenizer (the ``tokens`` representation) on procedural clips.

    OMP_NUM_THREADS=1 python recipes/motion/train_vq.py --steps 500 \
        --out recipes/motion/checkpoints/motion_vq.pt

Plain PyTorch (the tokenizer is not a generative model): AdamW, cosine learning rate, loss =
feature MSE + 0.5 · MSE of their frame-to-frame differences + 0.02 · commitment. Prints the
validation reconstruction error in millimetres of joint position (MPJPE) and codebook usage.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from modalities.motion.codecs import Features
from modalities.motion.data import MotionData
from modalities.motion.vq import MotionVQ, save_vq


def _loss(vq: MotionVQ, x: torch.Tensor) -> torch.Tensor:
    rec, commit, _ = vq(x)
    vel = F.mse_loss(rec[:, 1:] - rec[:, :-1], x[:, 1:] - x[:, :-1])
    return F.mse_loss(rec, x) + 0.5 * vel + 0.02 * commit


@torch.no_grad()
def evaluate(vq: MotionVQ, codec: Features, media: torch.Tensor) -> dict[str, float]:
    """MPJPE (mm, root included) and codebook usage of ``vq`` on clips ``[N, T, 22, 3]``."""
    vq.eval()
    x = codec.encode(media)
    ids = vq.encode(x)
    rec = codec.decode(vq.decode(ids))
    err = (rec - media).norm(dim=-1)
    counts = torch.bincount(ids.flatten(), minlength=vq.codebook_size).float()
    p = counts / counts.sum()
    perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    local = (rec - rec[:, :, :1]) - (media - media[:, :, :1])  # pose error without root drift
    return {"mpjpe_mm": float(err.mean() * 1000), "local_mpjpe_mm": float(local.norm(dim=-1).mean() * 1000),
            "codes_used": int((counts > 0).sum()), "perplexity": perplexity}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--codebook", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("recipes/motion/checkpoints/motion_vq.pt"))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    dm = MotionData(conditions=["action"], n_train=6000, n_val=256)
    codec = Features(64, 1)
    train, _ = dm.split("train")
    val, _ = dm.split("val")
    x_all = codec.encode(train)
    vq = MotionVQ(codebook_size=args.codebook)
    opt = torch.optim.AdamW(vq.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(s / args.steps, 1.0))))
    g = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        vq.train()
        idx = torch.randint(len(x_all), (args.batch,), generator=g)
        loss = _loss(vq, x_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps:
            m = evaluate(vq, codec, val)
            print(json.dumps({"step": step, "loss": round(loss.item(), 4),
                              "seconds": round(time.perf_counter() - start, 1), **m}), flush=True)
    seconds = time.perf_counter() - start
    final = evaluate(vq, codec, val)
    save_vq(vq, args.out, {"steps": args.steps, "seconds": seconds, **final})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) after {seconds / 60:.1f} min: {final}")


if __name__ == "__main__":
    main()
