"""The text→image recipe fits (tiny), and the shipped caption and diffusion models follow what they
are asked for — guided samples judged by the shapes classifier."""

import torch

from framework.cli.fit import fit_main
from framework.core.shipped import recipes_dir
from framework.training.module import load
from modalities.image.plugin import ImageModality
from modalities.image.shapes import COLORS, SHAPES

RECIPE = recipes_dir("image") / "shapes_text_flow.yaml"
CHECKPOINTS = recipes_dir("image") / "checkpoints"


def test_text_recipe_fits_and_samples_from_an_unseen_wording(tmp_path):
    fit_main(["fit", "--config", str(RECIPE), "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
              "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(tmp_path), "--data.init_args.n_train", "64",
              "--data.init_args.n_val", "16", "--data.init_args.batch_size", "32",
              "--model.backbone", "{dim: 32, depth: 1, heads: 2}"])
    (ckpt,) = tmp_path.rglob("last.ckpt")
    model = load(str(ckpt))
    assert list(model.specs) == ["text"]
    out = model.sample({"text": "one large cross painted green"}, "cfg(text, 3)", n=2, steps=3, seed=0)
    assert out.media.shape == (2, 3, 16, 16) and out.nfe == 2 * 3


def _judged(model, raw, guidance, n=16, steps=12):
    judge = ImageModality().judge(model.specs, model.codec, CHECKPOINTS)
    media = model.sample(raw, guidance, n=n, steps=steps, seed=0).media
    with torch.no_grad():
        logits = judge.classifier(media.float().clamp(0, 1))
    return logits["shape"].argmax(-1), logits["color"].argmax(-1)


def test_shipped_text_model_follows_a_held_out_paraphrase():
    model = load(str(CHECKPOINTS / "shapes_text_flow.ckpt"))
    shape, color = _judged(model, {"text": "a triangle that is blue"}, "cfg(text, 3)")
    assert (shape == SHAPES.index("triangle")).float().mean() >= 0.6, shape
    assert (color == COLORS.index("blue")).float().mean() >= 0.8, color


def test_shipped_diffusion_model_learned_shape_not_only_colour():
    model = load(str(CHECKPOINTS / "shapes_diffusion.ckpt"))
    for want in ("cross", "triangle"):
        shape, color = _judged(model, {"shape": want, "color": "yellow"}, "cfg((shape, color), 3)")
        assert (shape == SHAPES.index(want)).float().mean() >= 0.6, (want, shape)  # chance is 0.25
        assert (color == COLORS.index("yellow")).float().mean() >= 0.8, color
