"""The motion modality's plugin class (registered as ``motion`` under ``polyguide.modalities``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from framework.core.conditions import Conditions, ConditionSpec
from framework.core.errors import ArgumentError
from framework.core.plugins import Codec, LazyClasses, Modality
from framework.core.shipped import recipes_dir

from .actions import ACTIONS, FPS, FRAMES, SPEEDS
from .codecs import Features, Latent, Rotations, Tokens
from .costs import joints_cost, trajectory_cost
from .joints import joints_encoder
from .trajectory import decode_trajectory, trajectory_encoder
from .writers import save_gif

RECIPES = recipes_dir("motion")  # the checkout's recipes/motion, or the installed polyguide_recipes.motion


class MotionModality(Modality):
    """Human motion: joint positions ``[B, T, 22, 3]`` (metres, 20 fps) of the SMPL 22-joint skeleton."""

    name = "motion"
    description = "human motion: procedural 22-joint clips (action, speed, text, trajectory), GIF + BVH"
    representations = MappingProxyType({"features": Features, "rotations": Rotations, "tokens": Tokens,
                                        "latent": Latent})
    datamodules = LazyClasses({"motion": f"{__package__}.data:MotionData",
                               "dance": f"{__package__}.dance.data:DanceData"})
    conditions = MappingProxyType({
        "action": " | ".join(ACTIONS), "speed": " | ".join(SPEEDS),
        "text": "a caption (MiniLM embedding)",
        "trajectory": "root ground path: .npy [T, 2] (x, z) or [T, 3] (x, z, given)",
        "joints": "targets for any joints at any frames: .npy [T, 22, 3] (NaN = free) or [T, 22, 4] "
                  "(x, y, z, given)",
        "music": "dance models: an audio file (WAV, FLAC, OGG; its first 3.2 s), the audio plugin's "
                 "'audio/music' encoder"})
    encoders = MappingProxyType({"trajectory": trajectory_encoder, "joints": joints_encoder})
    costs = MappingProxyType({"trajectory": trajectory_cost, "joints": joints_cost})
    recipes_dir = RECIPES

    def write(self, media: torch.Tensor, out: Path, *, rows: Sequence[str] | None = None,
              title: str | None = None, conditions: Conditions | None = None,
              fps: int | None = None) -> list[Path]:
        """An animated GIF grid of all samples ``[B, T, 22, 3]`` (20 fps; ``motion.gif``; the requested
        trajectory, if ``conditions`` carries one, drawn on the floor) and one BVH file per sample;
        with a ``music`` condition also each sample's music cut to the clip and an ``index.html``
        that plays them together (:func:`~modalities.motion.dance.player.write_player`). ``fps``
        (20, 30 or 60) resamples the files in time (:func:`~.longer.resample`; the GIF at most 30 fps,
        since GIF frame delays are whole hundredths of a second)."""
        from .bvh import bvh_deviation, write_bvh
        from .longer import check_fps, resample

        out.mkdir(parents=True, exist_ok=True)
        fps = FPS if fps is None else check_fps(fps)
        if fps != FPS and conditions is not None and "music" in conditions.values:
            raise ArgumentError("--fps: dance clips are written at 20 fps, in step with their music")
        gif_fps = min(fps, 30)
        if gif_fps != fps:
            print(f"note: motion.gif is written at {gif_fps} fps (GIF delays are whole 1/100 s); "
                  f"the BVH files at {fps} fps")
        media20, media = media, resample(media, fps)
        trajectories = None
        if (conditions is not None and "trajectory" in conditions.values
                and bool(conditions.present["trajectory"].any())):  # an absent path has no frames to draw
            trajectories = decode_trajectory(conditions.values["trajectory"].cpu())
            absent = ~conditions.present["trajectory"].cpu()
            trajectories[absent] = float("nan")
            if fps != FPS:
                trajectories = resample(trajectories[..., None, :], fps)[..., 0, :]
        files = [save_gif(resample(media20, gif_fps), out / "motion.gif", labels=rows, title=title,
                          trajectories=trajectories if gif_fps == fps else None, fps=gif_fps)]
        for i, m in enumerate(media):
            files.append(write_bvh(m, out / f"sample_{i:02d}.bvh", fps=fps))
        if conditions is not None and "music" in conditions.values:
            from .dance.player import music_sources, write_player

            files += write_player(media, music_sources(conditions), out, labels=rows, title=title)
        dev = torch.stack([bvh_deviation(m) for m in media])  # [B, T, 22]
        print(f"BVH files: the stored joints are {100 * float(dev.mean()):.2f} cm (mean; max "
              f"{100 * float(dev.max()):.2f} cm) from the generated ones"
              + ("" if float(dev.mean()) < 0.01 else " — the files keep the skeleton's bone lengths, which "
                 "this motion does not"))
        return files

    def sample_length(self, model, raw: Mapping[str, Any], guidance, *, n: int, seed: int, steps: int,
                      weak=None, seconds: Any = None, fps: Any = None, progress: bool = False):
        """``polyguide sample --seconds S [--fps F]``: ``n`` clips of ``S`` seconds
        (:func:`~.longer.sample_long`: overlapping windows, each in-painted on the previous one's
        last frames) as a :class:`~framework.generators.SampleOutput` whose ``samples`` and
        ``media`` are the positions ``[n, T, 22, 3]`` at 20 fps (``fps`` is checked here and applied
        by :meth:`write`). Prints the windows and the acceleration at their joins."""
        from framework.generators import SampleOutput

        from .longer import check_fps, check_seconds, sample_long, seam_acceleration

        if fps is not None:
            check_fps(fps)
        if "music" in model.specs and seconds is not None:
            raise ArgumentError("--seconds: a dance model's clip is its music's first 3.2 s")
        frames = FRAMES if seconds is None else check_seconds(seconds)
        long = sample_long(model, raw, guidance, frames=frames, n=n, seed=seed, steps=steps, weak=weak,
                           progress=progress)
        if long.joins:
            print(f"{frames} frames ({frames / FPS:.2f} s) from {long.windows} windows of {FRAMES} frames, "
                  f"joined at frames {', '.join(map(str, long.joins))}; acceleration at the joins "
                  f"{seam_acceleration(long.positions, long.joins):.2f}× elsewhere")
        return SampleOutput(long.positions, long.stats, long.seconds, long.positions)

    def judge(self, specs: Mapping[str, ConditionSpec], codec: Codec, cache_dir: Path):
        """The motion judge (action classifier + text–motion embedding), cached in ``cache_dir``;
        for dance models (a ``music`` condition) the dance judge (beat alignment, physics)."""
        if "music" in specs:
            from .dance.judge import DanceJudge

            return DanceJudge()
        from .metrics import MotionJudge

        return MotionJudge.cached(Path(cache_dir))
