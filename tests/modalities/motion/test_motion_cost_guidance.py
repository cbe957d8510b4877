"""Cost-gradient trajectory guidance on a motion model (the core's cost terms, presets.cost)."""

import torch

from modalities.motion.metrics import trajectory_error
from modalities.motion.trajectory import DIM, trajectory_encoder


def test_trajectory_cost_pulls_the_root_onto_the_requested_path(make_motion_model):
    torch.manual_seed(0)
    model = make_motion_model()
    path = torch.stack([torch.linspace(0, 1.5, 64), torch.linspace(0, 2.0, 64)], -1)
    request = trajectory_encoder([path])[0]
    raw = {"trajectory": request, "action": "walk"}
    plain = model.sample(raw, "cfg((trajectory, action), 2)", n=4, steps=8, seed=0)
    guided = model.sample(raw, "cfg((trajectory, action), 2) + cost(trajectory, 20)", n=4, steps=8, seed=0)
    want = request.expand(4, 64, DIM)
    before, after = trajectory_error(plain.media, want), trajectory_error(guided.media, want)
    assert after < 0.6 * before, (before, after)
    assert guided.nfe >= plain.nfe  # the cost's evaluations are accounted in the statistics
