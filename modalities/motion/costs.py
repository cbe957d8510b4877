"""Differentiable costs on the model's representation, for cost-gradient guidance.

``trajectory_cost(codec, specs)`` builds ``cost(x0, conditions) -> [B]``: the mean distance
(metres) between the root ground path decoded from ``x0`` (through the features → positions
decode, differentiable) and the requested ``trajectory``, over the frames the request gives.
Samples whose trajectory is absent cost 0; a batch in which no sample has one is an error (the
term would silently do nothing), as is a model without a continuous, decodable representation.

``joints_cost(codec, specs)`` does the same for the ``joints`` condition: the mean distance
(metres) of the decoded joints (forward kinematics through the whole decoder) to the given
targets — any joint at any frame, key poses (in-betweening) or the first frames (continuation),
as OmniControl's spatial guidance does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from framework.core.conditions import Conditions
from framework.guidance.ops.cost_grad import CostError

from .trajectory import SCALE

__all__ = ["joint_error", "joints_cost", "path_error", "trajectory_cost"]


def path_error(path: torch.Tensor, request: torch.Tensor) -> torch.Tensor:
    """Mean distance ``[B]`` between paths ``[B, T, 2]`` and requested trajectory tokens ``[B, T, DIM]``
    (``x, z`` scaled, ``given`` mask), over the given frames."""
    given = request[..., 2]
    want = request[..., :2] * SCALE
    dist = ((path - want).pow(2).sum(-1) + 1e-8).sqrt()
    return (dist * given).sum(-1) / given.sum(-1).clamp_min(1.0)


def _requested_cost(name: str, error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    missing: str) -> Callable[[torch.Tensor, Conditions], torch.Tensor]:
    """A cost ``(x0 [B, ...], conditions) → [B]``: ``error(x0, request)`` on the rows that give
    condition ``name``, 0 on the others; ``missing`` is the error when no row gives it."""

    def cost(x0: torch.Tensor, conditions: Conditions) -> torch.Tensor:
        request = conditions.values[name].to(x0)
        present = conditions.present[name].to(x0.device)
        if not bool(present.any()):
            raise CostError(missing)
        err = error(x0, request)
        return torch.where(present, err, torch.zeros_like(err))

    return cost


def trajectory_cost(codec: Any, specs: Mapping[str, Any]
                    ) -> Callable[[torch.Tensor, Conditions], torch.Tensor]:
    """The ``trajectory`` cost factory (``Modality.costs``): needs the ``features`` codec and a
    ``trajectory`` condition."""
    if not hasattr(codec, "root_path"):
        raise CostError("cost(trajectory, w) needs a continuous motion model (the 'features' or 'rotations' "
                        f"representation, whose root path has a gradient); this model samples "
                        f"{type(codec).__name__.lower()}: use cfg on its conditions instead")
    if "trajectory" not in specs:
        raise CostError(f"cost(trajectory, w) needs a model with a 'trajectory' condition; "
                        f"this one has {', '.join(sorted(specs))}")

    return _requested_cost("trajectory", lambda x0, request: path_error(codec.root_path(x0), request),
                           "cost(trajectory, w) needs a trajectory to follow: give one with "
                           "--cond trajectory=path.npy (none of the samples has one)")


def joint_error(positions: torch.Tensor, request: torch.Tensor) -> torch.Tensor:
    """Mean distance ``[B]`` (metres) between joints ``[B, T, 22, 3]`` and the targets of ``joints``
    tokens ``[B, T, DIM]``, over the given (frame, joint) pairs."""
    from .joints import decode_joints

    want, given = decode_joints(request)
    dist = ((positions - want).pow(2).sum(-1) + 1e-8).sqrt()
    return (dist * given).sum((-1, -2)) / given.sum((-1, -2)).clamp_min(1.0)


def joints_cost(codec: Any, specs: Mapping[str, Any]) -> Callable[[torch.Tensor, Conditions], torch.Tensor]:
    """The ``joints`` cost factory (``Modality.costs``): needs a continuous, differentiably decoded
    motion codec and a ``joints`` condition."""
    if not hasattr(codec, "root_path"):
        raise CostError("cost(joints, w) needs a continuous motion model (its decoded joints have a "
                        f"gradient); this model samples {type(codec).__name__.lower()}")
    if "joints" not in specs:
        raise CostError(f"cost(joints, w) needs a model with a 'joints' condition; this one has "
                        f"{', '.join(sorted(specs))}")

    return _requested_cost("joints", lambda x0, request: joint_error(codec.decode(x0), request),
                           "cost(joints, w) needs joint targets: give them with --cond joints=targets.npy "
                           "(none of the samples has any)")
