"""``polyguide sample --pretrained`` / ``explain --pretrained``: media written, bad input refused."""

import json
import shutil

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from framework import pretrained
from framework.cli.main import main
from framework.pretrained import tiny


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_writes_the_pipelines_images(sd_eps, tmp_path, capsys):
    import diffusers

    code, out, err = _run(capsys, "sample", "--pretrained", str(sd_eps), "--cond", "text=a red cube",
                          "--guidance", "cfg(text, 7.5)", "--steps", "2", "--n", "2", "--seed", "0",
                          "--out", str(tmp_path / "o"), "--no-progress")
    assert code == 0, err
    assert "StableDiffusionPipeline" in out and "NFE 4" in out
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(sd_eps)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe("a red cube", num_inference_steps=2, guidance_scale=7.5, num_images_per_prompt=2,
                  generator=torch.Generator().manual_seed(0), output_type="np").images
    for i in range(2):
        png = np.asarray(Image.open(tmp_path / "o" / f"sample_{i:03d}.png"), dtype=np.float32) / 255
        assert np.abs(png - theirs[i]).max() <= 1 / 255 + 1e-6
    assert (tmp_path / "o" / "grid.png").is_file()
    assert torch.load(tmp_path / "o" / "samples.pt")["samples"].shape == (2, 4, 8, 8)


def test_sample_writes_musicgen_wavs(musicgen, tmp_path, capsys):
    import soundfile as sf

    guidance = "cond(negative_text) + 3*(cond(text) - cond(negative_text))"
    code, _, err = _run(capsys, "sample", "--pretrained", str(musicgen), "--cond", "text=happy piano",
                        "--cond", "negative_text=sad drums", "--guidance", guidance, "--steps", "5",
                        "--n", "1", "--seed", "0", "--out", str(tmp_path), "--no-progress")
    assert code == 0, err
    wave, rate = sf.read(tmp_path / "sample_000.wav")
    assert rate == 8000 and wave.shape == (320,)  # 5 frames × 64 samples per frame


def test_explain_shows_the_pipelines_passes(sd_eps, capsys):
    code, out, err = _run(capsys, "explain", "cfg(text, 7.5)", "--steps", "3", "--pretrained", str(sd_eps))
    assert code == 0, err
    assert "UNet2DConditionModel" in out and "DDIMScheduler.step" in out


def _bad(capsys, folder, *extra):
    code, _, err = _run(capsys, "sample", "--pretrained", str(folder), "--steps", "1", "--no-progress",
                        *extra)
    assert code == 2 and err.count("\n") == 1, err
    return err


def test_unsupported_folders_are_one_line_errors(tmp_path, capsys):
    supported = "StableDiffusionPipeline, StableDiffusionInstructPix2PixPipeline"
    assert supported in _bad(capsys, tmp_path)  # no model_index.json / config.json
    sdxl = tmp_path / "sdxl"
    sdxl.mkdir()
    (sdxl / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    err = _bad(capsys, sdxl)
    assert "'StableDiffusionXLPipeline', which is not supported" in err and supported in err
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert "type 'gpt2', which is not supported" in _bad(capsys, gpt)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{not json")
    assert "not readable JSON" in _bad(capsys, tmp_path / "broken")
    assert "is not a folder" in _bad(capsys, tmp_path / "missing")
    assert "neither a folder nor in the local hub cache" in _bad(capsys, "someone/no-such-model")  # offline
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"model_type": ["musicgen"]}))
    assert "which is not supported" in _bad(capsys, tmp_path / "odd")


def test_a_condition_the_pipeline_cannot_take(sd_eps, capsys):
    err = _bad(capsys, sd_eps, "--cond", "melody=tune.wav")
    assert "takes conditions text, negative_text; not 'melody'" in err
    err = _bad(capsys, sd_eps, "--cond", "text=a cat", "--guidance", "cfg(image, 3)")
    assert "the guidance names 'image'" in err
    assert "--weak applies to polyguide checkpoints" in _bad(capsys, sd_eps, "--weak", "w.ckpt")


def test_loading_runs_no_code_from_the_folder(sd_eps, tmp_path, capsys, evil):
    custom = tmp_path / "custom"
    shutil.copytree(sd_eps, custom)
    marker = tmp_path / "ran"
    (custom / "my_unet.py").write_text(f"open({str(marker)!r}, 'w')\n")
    index = json.loads((custom / "model_index.json").read_text())
    index["unet"] = ["my_unet", "MyUNet"]
    (custom / "model_index.json").write_text(json.dumps(index))
    assert "only components of diffusers or transformers" in _bad(capsys, custom, "--cond", "text=a")
    # a pickled weights file next to safetensors ones is never unpickled
    pickled = tmp_path / "pickled"
    shutil.copytree(sd_eps, pickled)
    for f in (pickled / "unet").glob("*.safetensors"):
        f.unlink()
    torch.save({"weights": evil(marker)}, pickled / "unet" / "diffusion_pytorch_model.bin")
    assert "could not be loaded" in _bad(capsys, pickled, "--cond", "text=a")
    assert not marker.exists()
    # a folder of pickled weights only: the libraries' weights_only unpickler refuses the object
    only_bin = tmp_path / "bin"
    tiny.stable_diffusion(tmp_path).save_pretrained(only_bin)
    for f in list(only_bin.rglob("*.safetensors")):  # the same weights as pickles (.bin)
        stem = "pytorch_model" if f.name.startswith("model") else f.name.split(".")[0]
        torch.save(load_file(f), f.with_name(f"{stem}.bin"))
        f.unlink()
    assert not any(only_bin.rglob("*.safetensors"))
    assert pretrained.load(str(only_bin)).pipeline_class == "StableDiffusionPipeline"  # plain weights load
    torch.save({"weights": evil(marker)}, only_bin / "unet" / "diffusion_pytorch_model.bin")
    capsys.readouterr()  # the save's progress bars
    assert "could not be loaded" in _bad(capsys, only_bin, "--cond", "text=a")
    assert not marker.exists()
