"""Second stage of the music model: teach the ``style`` label to work on its own.

    python recipes/audio/music_style_finetune.py --init BASE.ckpt --steps 1500 --share 0.3 --out run_a
    # then three more rounds of 1,500 steps at --share 0.5, each --init the previous round's
    # export; the last export is recipes/audio/checkpoints/music_flow.ckpt

The base model (``recipes/audio/music_flow.yaml``) derives its condition dropout from its guidance
list, which never drops the melody and the caption together: every training clip without a
melody still had its caption (which names the style) or was fully unconditional. The model therefore
copies the style from the melody and ignores the label (label-only style 0.29, chance 0.25).
This stage adds the guidance ``cfg((style, instrument), 3)`` and trains with an explicit dropout
in which a share ``--share`` of clips keeps only style and instrument, starting from the base
weights (EMA 0.995, lr 5e-4). It writes a Lightning run under ``--out`` and the exported
checkpoint (EMA weights) to ``--out``/``music_flow.ckpt``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

STYLE_ONLY = "cfg((style, instrument), 3)"
RECIPE = Path(__file__).with_name("music_flow.yaml")  # the first stage: its data settings are reused


def finetune(init: Path, steps: int, share: float, out: Path, threads: int = 1, seed: int = 1) -> Path:
    """Fine-tune the music model at ``init`` for ``steps`` steps; returns the exported checkpoint.

    ``share`` is the fraction of training clips whose melody and caption are both dropped (style and
    instrument kept); 0.1 each drop every condition, all but the melody, the melody, the caption.
    A wrong ``steps``/``share`` or a checkpoint that is not a music model raises ``ValueError``.
    """
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
    from omegaconf import OmegaConf

    from framework.model.checkpoints import export, load_checkpoint
    from framework.training.module import GenerativeModule
    from modalities.audio.music_data import MusicData

    if steps < 1:
        raise ValueError(f"steps {steps}: must be at least 1")
    if not 0.0 < share < 0.6:
        raise ValueError(f"share {share}: must be in (0, 0.6), the other dropout cases take 0.4")
    torch.set_num_threads(threads)
    L.seed_everything(seed)
    base = load_checkpoint(init)
    hp = dict(base["hyper_parameters"])
    names = [c["name"] for c in hp.get("conditions", [])]
    if not {"style", "instrument", "melody", "text"} <= set(names):
        raise ValueError(f"checkpoint {init}: not a music model of recipes/audio/music_flow.yaml "
                         f"(its conditions are {names})")
    hp["guidance"] = [g for g in hp["guidance"] if g != STYLE_ONLY] + [STYLE_ONLY]
    # keys name the conditions dropped together; the rest of each batch keeps every condition
    hp["dropout"] = {"style+instrument+melody+text": 0.1, "style+instrument+text": 0.1,
                     "melody+text": share, "melody": 0.1, "text": 0.1}
    hp.update(lr=5e-4, warmup_steps=50,
              val_guidance={"cfg3": "cfg((style, instrument, melody, text), 3)", "si3": STYLE_ONLY})
    model = GenerativeModule(**hp)
    model.load_state_dict(base["state_dict"])
    data = MusicData(**OmegaConf.to_container(OmegaConf.load(RECIPE).data.init_args))
    trainer = L.Trainer(max_steps=steps, limit_val_batches=0, default_root_dir=str(out),
                        log_every_n_steps=50,
                        callbacks=[EMAWeightAveraging(decay=0.995), ModelCheckpoint(save_last=True)])
    trainer.fit(model, data)
    last = Path(trainer.checkpoint_callback.last_model_path)
    return export(last, out / "music_flow.ckpt")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", type=Path, required=True, help="the checkpoint to start from")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--share", type=float, default=0.5,
                   help="fraction of clips trained with only style and instrument (default 0.5)")
    p.add_argument("--out", type=Path, required=True, help="run folder; the export is <out>/music_flow.ckpt")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    from framework.model.checkpoints import CheckpointError

    try:
        print(finetune(a.init, a.steps, a.share, a.out, a.threads))
    except (CheckpointError, ValueError) as e:  # a user's mistake: one line, exit code 2
        p.exit(2, f"{p.prog}: {e}\n")


if __name__ == "__main__":
    main()
