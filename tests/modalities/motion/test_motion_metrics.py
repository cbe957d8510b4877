"""Motion metrics: R-precision, skating, trajectory error against hand-made cases; the judge on tiny data."""

import numpy as np
import torch

from modalities.motion.actions import ACTIONS, generate_clip
from modalities.motion.metrics import (
    PHYSICS,
    MotionJudge,
    foot_skating,
    pose_distance,
    r_precision,
    request_diversity,
    trajectory_error,
)
from modalities.motion.trajectory import encode_trajectory


def _clips(n, seed):
    clips = [generate_clip(np.random.default_rng(seed + i)) for i in range(n)]
    return (torch.stack([c.positions for c in clips]),
            torch.tensor([ACTIONS.index(c.action) for c in clips]))


def test_r_precision_by_hand():
    e = torch.eye(8)
    assert r_precision(e, e, pool=4) == {1: 1.0, 3: 1.0}
    # each motion lies between its own text and the next one, nearer the next: top-1 misses, top-3 hits
    motion = 0.4 * e + 0.6 * torch.roll(e, -1, 0)
    assert r_precision(motion, e, pool=8) == {1: 0.0, 3: 1.0}
    shuffled = r_precision(torch.roll(e, 1, 0), e, pool=8)  # every motion matches another text
    assert shuffled[1] == 0.0


def test_skating_and_trajectory_error():
    pos, _ = _clips(4, 0)
    assert foot_skating(pos) < 0.05
    slid = pos.clone()
    slid[:, :, [10, 11], 2] += 0.05 * torch.arange(64)[None, :, None]  # toes slide 5 cm a frame
    slid[:, :, [10, 11], 1] = 0.0
    assert foot_skating(slid) > 0.9
    path = pos[:, :, 0, [0, 2]]
    req = encode_trajectory(torch.cat([path + torch.tensor([0.6, 0.8]), torch.ones(4, 64, 1)], -1))
    assert abs(trajectory_error(pos, req) - 1.0) < 1e-3


def test_judge_trains_caches_and_scores(tmp_path):
    pos, act = _clips(24, 10)
    text = torch.nn.functional.one_hot(act, 384).float()  # stand-in caption embeddings
    held = (pos[:8], act[:8], text[:8])
    judge = MotionJudge((pos, act, text), held, tmp_path / "judge.pt", epochs=2)
    assert (tmp_path / "judge.pt").exists()
    m = judge.evaluate(pos[:8], {"action": act[:8], "text": text[:8]})
    assert set(m) - {"diversity_request"} == {"acc_action", "r_precision_top1", "r_precision_top3", "fd",
                                               "diversity", "foot_skating", *PHYSICS}
    assert 0 <= m["acc_action"] <= 1 and abs(m["fd"]) < 1e-3 and abs(m["diversity"] - 1) < 1e-6
    again = MotionJudge(None, held, tmp_path / "judge.pt")  # loaded from the cache (weights_only)
    assert again.evaluate(pos[:8], {"action": act[:8]}) == {k: m[k] for k in again.evaluate(
        pos[:8], {"action": act[:8]})}
    noise = pos[:8] + 0.05 * torch.randn(pos[:8].shape, generator=torch.Generator().manual_seed(0))
    assert judge.evaluate(noise, {})["fd"] > m["fd"]


def test_diversity_within_a_request_sees_near_copies():
    pos, act = _clips(24, 10)
    walk = pos[act == act[0]]
    copies = walk[:1].repeat(6, 1, 1, 1) + 0.003 * torch.randn(6, *walk.shape[1:])  # 0.3 cm apart
    request = {"action": act[:1].repeat(6)}
    assert request_diversity(copies, request, pos, act) < 0.1
    varied = pos[act == act[0]][:6]
    assert len(varied) >= 2
    assert request_diversity(varied, {"action": act[:1].repeat(len(varied))}, pos, act) > 0.5
    assert request_diversity(pos[:3], {"action": torch.arange(3)}, pos, act) is None  # no request repeats
    assert pose_distance(walk[:1]) != pose_distance(walk[:1])  # NaN: no pair
