"""Second stage of a shapes model: continue from its shipped weights with a decaying learning rate
and a longer EMA, which turns more of its samples into one clean shape.

    python recipes/image/finetune.py --config recipes/image/shapes_flow.yaml \
        --init recipes/image/checkpoints/shapes_flow.ckpt --steps 3000 --out runs/flow_ft

The first stage (``polyguide fit --config <recipe>``) trains at a constant learning rate with an
EMA of decay 0.995 (an average over about 200 steps). Its samples are often *almost* a shape:
a second fragment, a ragged edge, two crosses merged; guidance amplifies those (docs/image.md).
This stage starts from the exported weights (EMA), trains ``--steps`` more steps on the recipe's
data with the learning rate decaying from ``--lr`` to 0 along a cosine, and keeps an EMA of decay
``--ema`` (0.999: about 1,000 steps). It writes a Lightning run under ``--out`` and the exported
checkpoint (EMA weights) to ``--out``/``<recipe name>.ckpt``.

The recipe's ``guidance``, ``dropout`` and ``dropout_rate`` replace the starting checkpoint's, so a
second stage can train condition subsets the first stage trained rarely (the shapes recipes now drop
the position on half the rows, because requests usually leave it free; docs/image.md).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def finetune(config: Path, init: Path, steps: int, out: Path, lr: float = 5e-4, ema: float = 0.999,
             threads: int = 1, seed: int = 1) -> Path:
    """Fine-tune the model at ``init`` on ``config``'s data for ``steps`` steps; returns the export.

    A wrong ``steps``/``lr``/``ema`` raises ``ValueError``.
    """
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, ModelCheckpoint
    from omegaconf import OmegaConf

    from framework.model.checkpoints import export, load_checkpoint
    from framework.training.module import GenerativeModule

    if steps < 1:
        raise ValueError(f"steps {steps}: must be at least 1")
    if not 0 < lr < 1 or not 0 < ema < 1:
        raise ValueError(f"lr {lr} and ema {ema} must be in (0, 1)")
    torch.set_num_threads(threads)
    L.seed_everything(seed)
    base = load_checkpoint(init)
    hp = dict(base["hyper_parameters"])
    hp.update(lr=lr, warmup_steps=1)
    recipe = OmegaConf.load(config)
    for key in ("guidance", "dropout", "dropout_rate", "val_guidance"):  # what to train now
        if key in recipe.model:
            value = recipe.model[key]
            hp[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        elif key == "dropout":
            hp.pop(key, None)  # derive it from the recipe's guidance
    model = GenerativeModule(**hp)
    model.load_state_dict(base["state_dict"])
    print(model.dropout.table(model.dropout.record()), flush=True)
    module, _, cls = recipe.data.class_path.rpartition(".")
    data = getattr(__import__(module, fromlist=[cls]), cls)(**OmegaConf.to_container(recipe.data.init_args))

    class Cosine(Callback):
        """Learning rate ``lr · ½(1 + cos(π · step / steps))``, set before each optimizer step."""

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            scale = 0.5 * (1 + math.cos(math.pi * min(trainer.global_step / steps, 1.0)))
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = lr * scale

    trainer = L.Trainer(max_steps=steps, limit_val_batches=0, default_root_dir=str(out), log_every_n_steps=50,
                        enable_progress_bar=False,
                        callbacks=[Cosine(), EMAWeightAveraging(decay=ema), ModelCheckpoint(save_last=True)])
    trainer.fit(model, data)
    last = Path(trainer.checkpoint_callback.last_model_path)
    return export(last, out / f"{config.stem}.ckpt")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="the model's recipe (its data is reused)")
    p.add_argument("--init", type=Path, required=True, help="the checkpoint to start from")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (cosine decay to 0)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay")
    p.add_argument("--out", type=Path, required=True, help="run folder; the export is <out>/<recipe>.ckpt")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1, help="seeds the data order, dropout and noise")
    a = p.parse_args()
    from framework.model.checkpoints import CheckpointError

    try:
        print(finetune(a.config, a.init, a.steps, a.out, a.lr, a.ema, a.threads, a.seed))
    except (CheckpointError, ValueError) as e:  # a user's mistake: one line, exit code 2
        p.exit(2, f"{p.prog}: {e}\n")


if __name__ == "__main__":
    main()
