"""Train the motion VQ-VAE (the ``tokens`` and ``latent`` representations) on procedural clips.

    # the masked model's tokenizer (position features)
    OMP_NUM_THREADS=1 python recipes/motion/train_vq.py --steps 500 \
        --out recipes/motion/checkpoints/motion_vq.pt
    # the flow model's autoencoder (rotation features, forward kinematics)
    OMP_NUM_THREADS=1 python recipes/motion/train_vq.py --features rotations --steps 300 \
        --out recipes/motion/checkpoints/motion_ae.pt

Plain PyTorch (the tokenizer is not a generative model): AdamW, cosine learning rate, loss =
feature MSE + 0.5 · MSE of their frame-to-frame differences + 0.02 · commitment. On rotation
features (decoded by forward kinematics) the loss adds MDM's geometric terms on the decoded
joints (Tevet et al. 2023): joint positions, joint velocities, foot contact (the feet of the real
clip's contact frames do not move) — and a floor term (no joint below ``y = 0``). Half of each
batch is decoded from the continuous latents rather than the codes, so that the flow model can
generate those (``latent`` representation); their per-channel mean and std are stored. Prints the
validation reconstruction error in millimetres of joint position (MPJPE), codebook usage and the
physics of the reconstructions.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from modalities.motion.codecs import Features, Rotations
from modalities.motion.data import MotionData
from modalities.motion.physics import physics
from modalities.motion.skeleton import FEET
from modalities.motion.vq import MotionVQ, save_vq

POS, VEL, FOOT, FLOOR = 0.05, 0.01, 0.005, 0.005  # metres: the scale of each geometric term


def _loss(vq: MotionVQ, codec: Features, x: torch.Tensor, pos: torch.Tensor | None,
          geometric: float) -> torch.Tensor:
    """The training loss of features ``x`` ``[B, T, D]`` (with their joints ``pos`` ``[B, T, 22, 3]``
    for the geometric terms of rotation features)."""
    continuous = torch.rand(x.shape[0]) < 0.5
    rec, commit, _ = vq(x, continuous)
    vel = F.mse_loss(rec[:, 1:] - rec[:, :-1], x[:, 1:] - x[:, :-1])
    loss = F.mse_loss(rec, x) + 0.5 * vel + 0.02 * commit
    if pos is None or not geometric:
        return loss
    raw = codec.features(x)
    got = codec.to_positions(codec.features(rec))  # forward kinematics, differentiable
    v_got, v_real = got[:, 1:] - got[:, :-1], pos[:, 1:] - pos[:, :-1]
    contact = raw[:, 1:, -4:]  # [B, T-1, 4] the real clip's contacts (left/right ankle, toe)
    foot = (v_got[:, :, list(FEET)].norm(dim=-1) * contact).pow(2).sum() / contact.sum().clamp_min(1.0)
    floor = F.relu(-got[..., 1]).pow(2).mean()
    geo = (F.mse_loss(got, pos) / POS ** 2 + F.mse_loss(v_got, v_real) / VEL ** 2
           + foot / FOOT ** 2 + floor / FLOOR ** 2)
    return loss + geometric * geo


@torch.no_grad()
def _latent_stats(vq: MotionVQ, x: torch.Tensor, n: int = 2048) -> None:
    """Store the per-channel mean and std of the continuous latents of the first ``n`` clips
    ``x`` ``[N, T, D]`` (the ``latent`` representation normalises by them)."""
    vq.eval()
    z = vq.latents(x[:n]).flatten(0, 1)
    vq.latent_mean.copy_(z.mean(0))
    vq.latent_std.copy_(z.std(0).clamp_min(1e-3))


@torch.no_grad()
def evaluate(vq: MotionVQ, codec: Features, media: torch.Tensor) -> dict[str, float]:
    """MPJPE (mm, root included) and codebook usage of ``vq`` on clips ``[N, T, 22, 3]``."""
    vq.eval()
    x = codec.encode(media)
    ids = vq.encode(x)
    rec = codec.decode(vq.decode(ids))
    cont = codec.decode(vq.decode_latents(vq.latents(x)))
    err = (rec - media).norm(dim=-1)
    counts = torch.bincount(ids.flatten(), minlength=vq.codebook_size).float()
    p = counts / counts.sum()
    perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    local = (rec - rec[:, :, :1]) - (media - media[:, :, :1])  # pose error without root drift
    keep = ("accel", "lowest_toe", "foot_skating", "bone_cv", "collapses")
    phys = {k: round(v, 4) for k, v in physics(rec).items() if k in keep}
    return {"mpjpe_mm": float(err.mean() * 1000), "local_mpjpe_mm": float(local.norm(dim=-1).mean() * 1000),
            "continuous_mpjpe_mm": float((cont - media).norm(dim=-1).mean() * 1000),
            "codes_used": int((counts > 0).sum()), "perplexity": perplexity, **phys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--codebook", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=100, help="evaluate and save every this many steps")
    ap.add_argument("--features", choices=["features", "rotations"], default="features")
    ap.add_argument("--geometric", type=float, default=0.1, help="weight of the geometric terms (rotations)")
    ap.add_argument("--out", type=Path, default=Path("recipes/motion/checkpoints/motion_vq.pt"))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    dm = MotionData(conditions=["action"], n_train=6000, n_val=256)
    codec = Rotations(64, 1) if args.features == "rotations" else Features(64, 1)
    train, _ = dm.split("train")
    val = dm.split("val")[0][:128]
    x_all = codec.encode(train)
    print(f"encoded {len(train)} training clips", flush=True)
    vq = MotionVQ(codebook_size=args.codebook, features=args.features)
    opt = torch.optim.AdamW(vq.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(s / args.steps, 1.0))))
    g = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        vq.train()
        idx = torch.randint(len(x_all), (args.batch,), generator=g)
        pos = train[idx] if args.features == "rotations" else None
        loss = _loss(vq, codec, x_all[idx], pos, args.geometric)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % args.every == 0 or step == args.steps:
            _latent_stats(vq, x_all)
            m = evaluate(vq, codec, val)
            save_vq(vq, args.out, {"steps": step, "seconds": time.perf_counter() - start, **m})
            print(json.dumps({"step": step, "loss": round(loss.item(), 4),
                              "seconds": round(time.perf_counter() - start, 1), **m}), flush=True)
    seconds = time.perf_counter() - start
    _latent_stats(vq, x_all)
    final = evaluate(vq, codec, val)
    save_vq(vq, args.out, {"steps": args.steps, "seconds": seconds, **final})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) after {seconds / 60:.1f} min: {final}")


if __name__ == "__main__":
    main()
