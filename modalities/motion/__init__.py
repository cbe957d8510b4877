"""The motion modality: procedural 22-joint human motion (SMPL/HumanML3D joint order) with
action, speed, caption and trajectory conditions; HumanML3D-style features and VQ-VAE tokens;
stick-figure GIFs and BVH files; a judge for action accuracy, R-precision and trajectory error."""

from .plugin import MotionModality

__all__ = ["MotionModality"]
