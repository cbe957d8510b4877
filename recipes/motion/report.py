"""The motion results in docs/motion.md: guidance on the shipped motion checkpoints, judged.

    OMP_NUM_THREADS=1 python recipes/motion/report.py --n 128 --steps 20 --out docs/results

Requests are held-out procedural clips (seed 4242, never trained on): their caption, root path and
action. Tables (every row with NFE and sampling seconds):

1. flow, CFG weight sweep with caption + trajectory + action: action accuracy, R-precision, ...;
2. flow, caption + trajectory only: single-condition CFG vs joint, independent and nested guidance;
3. flow, cost-gradient trajectory guidance vs condition-only guidance (dense and sparse paths);
4. masked (VQ tokens), CFG weight sweep with caption + action;
5. physics read back from written BVH files (``bvhio``) for real clips and each model's default
   guidance, with the files' deviation from the generated joints;
6. diversity within a request: 10 requests (one per action) × 8 samples each, per model;
7. control of any joint (flow): targets for a wrist at one frame, the head every 4th frame, or
   the pelvis and both wrists at two frames, taken from the held-out clip; error at the given
   frames without control, with the ``joints`` condition (CFG) and with ``cost(joints, w)``;
8. in-betweening and prefix continuation (flow): key poses at frames 0, 32 and 63, or the first
   second given; error at the given frames and the acceleration at the joins relative to elsewhere.

Every row also carries the rule-based physics of the decoded joints (``accel``, ``lowest_toe``,
``penetration``, ``foot_skating``, ``bone_cv``, ``collapses``; :mod:`modalities.motion.physics`).

Writes ``motion.json``, ``motion.md`` (the tables) and ``motion_*.gif`` (samples) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from framework.core.conditions import Conditions
from framework.evaluation import format_table, score_guidance
from framework.training.module import load
from modalities.motion.data import caption_embeddings, load_or_generate, sparsify
from modalities.motion.joints import encode_joints
from modalities.motion.metrics import MotionJudge
from modalities.motion.physics import bvh_physics, join_acceleration
from modalities.motion.trajectory import encode_trajectory
from modalities.motion.writers import save_gif

CKPT = Path("recipes/motion/checkpoints")


def requests(n: int, seed: int = 4242, sparse: bool = False) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Held-out requests: ``text`` ``[n, 384]``, ``trajectory`` tokens ``[n, T, 19]``, ``action`` ``[n]``,
    and the captions."""
    data = load_or_generate(n, seed, None)
    pos = torch.from_numpy(data["positions"])
    given = torch.ones(n, pos.shape[1])
    if sparse:
        rng = np.random.default_rng(seed)
        given = torch.stack([sparsify(g, rng) for g in given])
    traj = encode_trajectory(torch.cat([pos[:, :, 0, [0, 2]], given[..., None]], -1))
    caps = [str(c) for c in data["caption"]]
    return {"text": caption_embeddings(data["caption"], None), "trajectory": traj,
            "action": torch.from_numpy(data["action"]).long()}, caps


CONTROLS = {  # name → (joints, frames) given from the held-out clip
    "right wrist at frame 40": ([21], [40]),
    "head every 4th frame": ([15], list(range(0, 64, 4))),
    "key poses at frames 0, 32, 63": (list(range(22)), [0, 32, 63]),
    "first second (20 frames) given": (list(range(22)), list(range(20))),
}


def joint_targets(n: int, seed: int, joints: list[int], frames: list[int]) -> torch.Tensor:
    """``joints`` condition tokens ``[n, T, DIM]``: the held-out clips' own ``joints`` at ``frames``."""
    pos = torch.from_numpy(load_or_generate(n, seed, None)["positions"])
    given = torch.zeros(pos.shape[:3])
    given[:, torch.tensor(frames)[:, None], torch.tensor(joints)[None]] = 1.0
    return encode_joints(torch.cat([pos * given[..., None], given[..., None]], -1))


def control_tables(model, judge, req, steps: int, seed: int, out: Path, captions: list[str],
                   weights: list[float], request_seed: int) -> tuple[list[dict], list[dict]]:
    """Tables 7 and 8: joint control and in-betweening on the flow model (text + action + joints)."""
    control, inbetween = [], []
    gifs = {"control": 0, "inbetween": 0}
    base = {k: v for k, v in req.items() if k in ("text", "action")}
    for name, (joints, frames) in CONTROLS.items():
        r = {**base, "joints": joint_targets(len(req["action"]), request_seed, joints, frames)}
        rows = {f"{name}: no control, cfg((text, action), 2)": "cfg((text, action), 2)",
                f"{name}: cfg((text, action, joints), 2)": "cfg((text, action, joints), 2)"}
        rows |= {f"{name}: + cost(joints, {w:g})": f"cfg((text, action, joints), 2) + cost(joints, {w:g})"
                 for w in weights}
        keyed = name.startswith(("key", "first"))
        tag = "inbetween" if keyed else "control"
        for label, g in rows.items():
            row, sample = score_guidance(model, judge, conditions_for(model, r), r, label, g, steps, seed)
            row.pop("diversity_request", None)
            row["joint_error_cm"] = 100 * row.pop("joint_error")
            if keyed:
                given = torch.zeros(sample.media.shape[:2], dtype=torch.bool)
                given[:, frames] = True
                row["join_accel_ratio"] = join_acceleration(sample.media, given)
            (inbetween if keyed else control).append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
                  flush=True)
            if label.endswith(f"cost(joints, {weights[0]:g})"):
                save_gif(sample.media[:8], out / f"motion_{tag}_{gifs[tag]}.gif",
                         labels=[c[:32] for c in captions[:8]], title=f"{name}: {g}", cols=4, cell=180)
                gifs[tag] += 1
    return control, inbetween


def per_action(req: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """The first request of each action, each repeated ``k`` times (``[A·k]`` rows)."""
    first = [int((req["action"] == a).nonzero()[0]) for a in req["action"].unique().tolist()]
    idx = torch.tensor(first).repeat_interleave(k)
    return {key: v[idx] for key, v in req.items()}


def bvh_row(label: str, media: torch.Tensor, folder: Path, n: int = 16) -> dict:
    """Physics of the first ``n`` clips written as BVH files and read back through ``bvhio``."""
    return {"source": label, **bvh_physics(media[:n], folder)}


def conditions_for(model, req: dict[str, torch.Tensor]) -> Conditions:
    """All of the model's conditions that the requests carry (the guidance's branches choose which are
    kept; a condition the requests lack, e.g. ``joints`` outside the control tables, is absent)."""
    n = len(req["action"])
    values = {k: req[k] if k in req else torch.zeros(n, 1, spec.dim) for k, spec in model.specs.items()}
    return Conditions(values, present={k: torch.full((n,), k in req) for k in model.specs})


def run_table(model, judge, req, rows: dict[str, str], steps: int, seed: int, tag: str, out: Path,
              captions: list[str], gif_rows: tuple[str, ...] = (), keep: dict | None = None) -> list[dict]:
    """Score every ``label → guidance`` row; save a GIF of the first 8 samples of ``gif_rows``; the
    first row's media go into ``keep[tag]`` (for the BVH read-back)."""
    conds = conditions_for(model, req)
    requested = {k: v for k, v in req.items() if k in model.specs or k in ("action", "text")}
    results = []
    for label, g in rows.items():
        row, sample = score_guidance(model, judge, conds, requested, label, g, steps, seed)
        if not tag.startswith("diversity"):  # held-out clips that happen to repeat are not a test of it
            row.pop("diversity_request", None)
        if "cost(" in (g or "") or tag.startswith("cost"):  # what the cost terms cost: evaluations, backwards
            row["cost_evals"] = float(sum(getattr(s, "cost_evals", 0) for s in sample.stats))
            row["backward"] = float(sum(getattr(s, "backward", 0) for s in sample.stats))
        results.append(row)
        if keep is not None and tag not in keep:
            keep[tag] = sample.media
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        print(json.dumps(shown), flush=True)
        if label in gif_rows:
            name = f"motion_{tag}_{gif_rows.index(label)}.gif"
            traj = None
            if "trajectory" in model.specs:
                from modalities.motion.trajectory import decode_trajectory

                traj = decode_trajectory(req["trajectory"][:8])
            save_gif(sample.media[:8], out / name, labels=[c[:32] for c in captions[:8]],
                     trajectories=traj, title=f"{label}: {g}", cols=4, cell=180)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flow", type=Path, default=CKPT / "motion_flow.ckpt")
    ap.add_argument("--masked", type=Path, default=CKPT / "motion_masked.ckpt")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--request-seed", type=int, default=4242, help="seed of the held-out request clips")
    ap.add_argument("--tables", default="cfg,multi,cost,masked")
    ap.add_argument("--cost-weights", type=float, nargs="+", default=[5.0, 20.0])
    ap.add_argument("--joint-weights", type=float, nargs="+", default=[10.0])
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tables = args.tables.split(",")
    judge = MotionJudge.cached(CKPT)
    print(f"judge on held-out real clips: action accuracy {judge.real_accuracy:.3f}, R-precision "
          f"{judge.real_r_precision}, foot skating {judge.real_skating:.3f}", flush=True)
    req, caps = requests(args.n, args.request_seed)
    real = {"acc_action": judge.real_accuracy, "r_precision_top1": judge.real_r_precision[1],
            "r_precision_top3": judge.real_r_precision[3], **judge.real_physics}
    result: dict[str, object] = {"n": args.n, "steps": args.steps, "seed": args.seed,
                                 "request_seed": args.request_seed, "real": real}
    md = [f"Real held-out clips: acc_action {real['acc_action']:.2f}, R-precision top-1 "
          f"{real['r_precision_top1']:.2f} / top-3 {real['r_precision_top3']:.2f}; physics: "
          + ", ".join(f"{k} {v:.3f}" for k, v in judge.real_physics.items()) + ".\n"]
    keep: dict[str, torch.Tensor] = {}
    each = per_action(req, 8)
    path = args.out / "motion.json"
    if path.exists():  # keep tables of earlier runs that this run does not redo
        result = {**json.loads(path.read_text()), **result}
    if args.flow.exists() and {"cfg", "multi", "cost"} & set(tables):
        flow = load(str(args.flow))
        if "cfg" in tables:
            rows = {"w = 1 (conditional)": "cond(text, trajectory, action)"}
            rows |= {f"w = {w}": f"cfg((text, trajectory, action), {w})" for w in (2, 4)}
            result["flow_cfg"] = run_table(flow, judge, req, rows, args.steps, args.seed, "cfg", args.out,
                                           caps, gif_rows=("w = 2",), keep=keep)
            default = flow.hparams.guidance[0]
            result["diversity_flow"] = run_table(flow, judge, each, {f"flow: {default}": default}, args.steps,
                                                 args.seed, "diversity_flow", args.out, caps)
        if "multi" in tables:
            rows = {"cfg text only, w=3": "cfg(text, 3)",
                    "cfg trajectory only, w=3": "cfg(trajectory, 3)",
                    "cfg joint (text, trajectory), w=3": "cfg((text, trajectory), 3)",
                    "independent [3, 3]": "independent([text, trajectory], [3, 3])",
                    "nested trajectory→text [2, 3]": "nested([trajectory, text], [2, 3])"}
            result["flow_multi"] = run_table(flow, judge, req, rows, args.steps, args.seed, "multi", args.out,
                                             caps, gif_rows=("independent [3, 3]",), keep=keep)
        if "cost" in tables:
            sparse_req, _ = requests(args.n, args.request_seed, sparse=True)
            out = []
            for kind, r in (("dense", req), ("sparse", sparse_req)):
                rows = {f"{kind}: cfg (text, trajectory), w=2": "cfg((text, trajectory), 2)"}
                for w in args.cost_weights:
                    rows[f"{kind}: + cost(trajectory, {w:g})"] = \
                        f"cfg((text, trajectory), 2) + cost(trajectory, {w:g})"
                shown = (f"{kind}: + cost(trajectory, {args.cost_weights[0]:g})",)
                out += run_table(flow, judge, r, rows, args.steps, args.seed, f"cost_{kind}", args.out, caps,
                                 gif_rows=shown, keep=keep)
            result["flow_cost"] = out
    if args.flow.exists() and "control" in tables:
        flow = load(str(args.flow))
        if "joints" in flow.specs:
            result["flow_control"], result["flow_inbetween"] = control_tables(
                flow, judge, req, args.steps, args.seed, args.out, caps, args.joint_weights,
                args.request_seed)
    if args.masked.exists() and "masked" in tables:
        masked = load(str(args.masked))
        rows = {"w = 1 (conditional)": "cond(text, action)"}
        rows |= {f"w = {w}": f"cfg((text, action), {w})" for w in (2, 4)}
        result["masked_cfg"] = run_table(masked, judge, req, rows, args.steps, args.seed, "masked", args.out,
                                         caps, gif_rows=("w = 2",), keep=keep)
        default = masked.hparams.guidance[0]
        result["diversity_masked"] = run_table(masked, judge, each, {f"masked: {default}": default},
                                               args.steps, args.seed, "diversity_masked", args.out, caps)
    if keep:
        real_pos = torch.from_numpy(load_or_generate(16, args.request_seed, None)["positions"])
        with tempfile.TemporaryDirectory() as tmp:  # the BVH files are read back, not kept
            result["bvh"] = [bvh_row("real clips", real_pos, Path(tmp) / "real")]
            result["bvh"] += [bvh_row(f"{tag}: first row", media, Path(tmp) / tag)
                              for tag, media in keep.items()]
        for row in result["bvh"]:
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    rot, each_n = "Flow", "10 requests, one per action, × 8 samples"
    titles = {"flow_cfg": f"{rot}: CFG weight (caption + trajectory + action)",
              "flow_multi": f"{rot}: caption + trajectory, one or two guidance directions",
              "flow_cost": f"{rot}: cost-gradient trajectory guidance vs condition-only",
              "masked_cfg": "Masked on VQ tokens: CFG weight (caption + action)",
              "diversity_flow": f"Flow: diversity within a request ({each_n})",
              "diversity_masked": f"Masked: diversity within a request ({each_n})",
              "flow_control": "Flow: control of any joint (caption + action + joint targets)",
              "flow_inbetween": "Flow: in-betweening and prefix continuation (caption + action + key frames)"}
    for key, title in titles.items():
        if key in result:
            md.append(f"### {title}\n\n{format_table(result[key])}")
    if "bvh" in result:
        cols = [k for k in result["bvh"][0] if k != "source"]
        lines = ["| clips | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
        lines += ["| " + r["source"] + " | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |"
                  for r in result["bvh"]]
        md.append("### Physics read back from the written BVH files (bvhio), first 16 clips\n\n"
                  + "\n".join(lines) + "\n")
    path.write_text(json.dumps(result, indent=2))
    (args.out / "motion.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
