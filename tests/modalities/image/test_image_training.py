"""Image models train through the modality's codec and sample decoded images; shipped
checkpoints restore alone and export strips them."""

import warnings

import lightning as L
import pytest
import torch

from framework.training.module import GenerativeModule, export, load
from modalities.image.data import ShapesData

warnings.filterwarnings("ignore", ".*does not have many workers.*")
CONDITIONS = [{"name": n, "labels": list(s.labels)} for n, s in ShapesData(n_train=1).specs.items()]
REPRESENTATIONS = [("flow", {"name": "patches", "size": 16, "channels": 3, "patch": 4}),
                   ("masked", {"name": "palette", "size": 16, "palette": "shapes", "patch": 2})]


@pytest.mark.parametrize(("family", "representation"), REPRESENTATIONS,
                         ids=["flow-patches", "masked-palette"])
def test_image_model_trains_on_media_and_samples_images(family, representation, tmp_path):
    torch.manual_seed(0)
    dm = ShapesData(n_train=512, n_val=64, batch_size=32)
    model = GenerativeModule(family=family, modality="image", representation=representation,
                             conditions=CONDITIONS, backbone={"dim": 32, "depth": 1, "heads": 2},
                             guidance=["cfg((shape, color), 3)"], lr=3e-3, warmup_steps=5)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    before = model.val_loss(dm.val_dataloader())
    L.Trainer(max_steps=40, enable_progress_bar=False, logger=False, enable_model_summary=False,
              default_root_dir=tmp_path, limit_val_batches=0).fit(model, dm)
    assert model.val_loss(dm.val_dataloader()) < 0.9 * before
    out = model.sample({"shape": "circle", "color": "red"}, "cfg((shape, color), 3)", n=4, steps=4, seed=0)
    assert out.media.shape == (4, 3, 16, 16) and 0 <= float(out.media.min()) <= float(out.media.max()) <= 1
    ckpt = next(tmp_path.rglob("*.ckpt"))
    small = export(ckpt, tmp_path / "shipped.ckpt")
    assert small.stat().st_size < 0.6 * ckpt.stat().st_size  # no optimizer state
    again = load(str(small)).sample({"shape": "circle", "color": "red"}, "cfg((shape, color), 3)", n=4,
                                    steps=4, seed=0)
    torch.testing.assert_close(again.media, out.media)


def test_codec_and_explicit_settings_must_agree():
    with pytest.raises(ValueError, match=r"shape \[16, 3\] disagrees with the codec's \[16, 48\]"):
        GenerativeModule(family="flow", modality="image", shape=[16, 3], conditions=CONDITIONS,
                         representation={"name": "patches", "patch": 4})
    with pytest.raises(ValueError, match=r"family_args\.vocab_size=5 but the codec has 7 tokens"):
        GenerativeModule(family="masked", modality="image", family_args={"vocab_size": 5},
                         conditions=CONDITIONS, representation={"name": "palette"})
    from framework.core.plugins import PluginError

    with pytest.raises(PluginError, match=r"no representation 'vq'; it has \['palette', 'patches'\]"):
        GenerativeModule(family="flow", modality="image", conditions=CONDITIONS,
                         representation={"name": "vq"})
    with pytest.raises(PluginError, match=r"no modality 'video' is installed; installed: .*'image'"):
        GenerativeModule(family="flow", modality="video", conditions=CONDITIONS,
                         representation={"name": "x"})
