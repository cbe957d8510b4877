"""Every user mistake on the command line: one line on stderr, exit code 2, before any work starts.

Cases run ``main([...])`` in-process. ``no_load`` makes loading a checkpoint fail the test, so a case
that needs it proves its check comes first; ``no_sampling`` does the same for sampling. Two cases
run the real console script in a subprocess to prove the exit code and the absence of a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import framework.model.checkpoints
from framework.cli.commands import is_polyguide_checkpoint
from framework.cli.main import main
from framework.guidance.engine import Guider

ROOT = Path(__file__).resolve().parents[2]
IMAGE = str(ROOT / "recipes/image/checkpoints/shapes_flow.ckpt")
TEXT_AR = str(ROOT / "recipes/text/checkpoints/shakespeare_ar.ckpt")
TEXT_MASKED = str(ROOT / "recipes/text/checkpoints/shakespeare_masked.ckpt")
CLI = pytest.mark.fault("CLI arguments")
WRONG = pytest.mark.fault("silently wrong")


def _forbid(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} ran although the arguments were already known to be wrong")

    return fail


@pytest.fixture
def no_sampling(monkeypatch):
    """No guided step runs (the guidance against the conditions given is checked once, by the
    sampler, before its first step)."""
    monkeypatch.setattr(Guider, "step", _forbid("sampling"))


@pytest.fixture
def no_load(monkeypatch, no_sampling):
    monkeypatch.setattr(framework.model.checkpoints, "load_model", _forbid("loading the checkpoint"))


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line_error(code: int, err: str, command: str | None, message: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    prefix = f"polyguide {command}: error: " if command else "polyguide: error: "
    assert lines[0].startswith(prefix), lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def a_file(tmp_path) -> Path:
    f = tmp_path / "notes.txt"
    f.write_text("my notes\n")
    return f


# (argv, message) — {out} is a fresh folder, {file} an existing text file, {dir} a folder.
BEFORE_LOADING = [
    (
        ["sample", "--checkpoint", IMAGE, "--steps", "0"],
        "argument --steps: must be between 1 and 10,000, got 0",
    ),
    (["sample", "--checkpoint", IMAGE, "--steps", "10001"], "must be between 1 and 10,000, got 10,001"),
    (
        ["sample", "--checkpoint", IMAGE, "--steps", "1e3"],
        "argument --steps: expected a whole number, got '1e3'",
    ),
    (["sample", "--checkpoint", IMAGE, "--steps", ""], "argument --steps: expected a whole number, got ''"),
    (["sample", "--checkpoint", IMAGE, "--n", "0"], "argument --n: must be between 1 and 100,000, got 0"),
    (["sample", "--checkpoint", IMAGE, "--n", "-4"], "argument --n: must be between 1 and 100,000, got -4"),
    (["sample", "--checkpoint", IMAGE, "--n", "9" * 30], "argument --n: must be between 1 and 100,000"),
    (["sample", "--checkpoint", IMAGE, "--n", "2.5"], "argument --n: expected a whole number, got '2.5'"),
    (["sample", "--checkpoint", IMAGE, "--seed", "-1"], "argument --seed: must be between 0 and"),
    (["sample", "--checkpoint", IMAGE, "--seed", str(2**64)], "argument --seed: must be between 0 and"),
    (["sample", "--checkpoint", IMAGE, "--max-tokens", "0"], "argument --max-tokens: must be between 1"),
    (["sample", "--checkpoint", IMAGE, "--max-tokens", "-3"], "argument --max-tokens: must be between 1"),
    (["sample", "--checkpoint", IMAGE, "--prompt", ""], "argument --prompt: must not be empty"),
    (["sample", "--checkpoint", IMAGE, "--guidance", "  "], "argument --guidance: must not be empty"),
    (["sample", "--checkpoint", TEXT_AR, "--max-tokens", "9", "--steps", "4"], "--steps does not apply"),
    (["sample", "--checkpoint", TEXT_AR, "--continue"], "--continue applies when streaming text"),
    (["sample", "--checkpoint", IMAGE, "--device", "tpu:0"], "--device 'tpu:0' is not a device name"),
    (["sample", "--checkpoint", IMAGE, "--device", "cuda:99"], "--device cuda:99: "),
    (["eval", "--checkpoint", IMAGE, "--device", "cuda:99"], "--device cuda:99: "),
    (["demo", "--toy", "--device", "cpu"], "--device applies to the shipped model"),
    (
        ["sample", "--checkpoint", IMAGE, "--guidance", "uncond + 4*(cond(shape) - uncond"],
        "'(' was never closed (column",
    ),
    (
        ["sample", "--checkpoint", IMAGE, "--guidance", "cnd(shape)"],
        "unknown function 'cnd' — did you mean 'cond'?",
    ),
    (["sample", "--checkpoint", IMAGE, "--guidance", "uncond + 4*cond(shape)"], "coefficients summing to 1"),
    (["sample", "--checkpoint", IMAGE, "--guidance", "-1*uncond + 2*cond(shape"], "'(' was never closed"),
    (["sample", "--checkpoint", IMAGE, "--cond", "shape"], "--cond takes name=value, got 'shape'"),
    (["sample", "--checkpoint", IMAGE, "--cond", "=circle"], "--cond takes name=value, got '=circle'"),
    (["sample", "--checkpoint", IMAGE, "--cond", "shape="], "--cond takes name=value, got 'shape='"),
    (["sample", "--checkpoint", IMAGE, "--out", "{file}"], "output folder {file} is a file, not a folder"),
    (["sample", "--checkpoint", IMAGE, "--out", "{file}/sub"], "{file} is a file, not a folder"),
    (
        ["sample", "--checkpoint", IMAGE, "--out", "/proc/polyguide-out"],
        "cannot be written: /proc is not writable",
    ),
    (["sample", "--checkpoint", "{dir}/nope.ckpt"], "checkpoint {dir}/nope.ckpt does not exist"),
    (["sample", "--checkpoint", "{dir}"], "checkpoint {dir} is a folder, not a file"),
    (
        ["sample", "--checkpoint", IMAGE, "--weak", "{dir}/weak.ckpt"],
        "--weak checkpoint {dir}/weak.ckpt does not exist",
    ),
    (["sample", "--checkpoint", IMAGE, "--devices", "cuda"], "unrecognized arguments: --devices cuda"),
    (["sample", "--checkpoint", IMAGE, "--steps"], "argument --steps: expected one argument"),
    (["sample"], "give --checkpoint (a polyguide model) or --pretrained"),
    (["eval", "--checkpoint", IMAGE, "--n", "0"], "argument --n: must be between 1 and 100,000, got 0"),
    (
        ["eval", "--checkpoint", IMAGE, "--steps", "0"],
        "argument --steps: must be between 1 and 10,000, got 0",
    ),
    (["eval", "--checkpoint", IMAGE, "--steps", "100000"], "must be between 1 and 10,000, got 100,000"),
    (["eval", "--checkpoint", IMAGE, "--guidance", "cfg(shape, 3"], "'(' was never closed"),
    (
        ["eval", "--checkpoint", IMAGE, "--guidance", "cfg(shape, 3)", "--guidance", "cfg(shape, 3)"],
        "the same --guidance is given twice",
    ),
    (
        ["eval", "--checkpoint", IMAGE, "--conditions", "shape", "shape"],
        "--conditions names a condition twice",
    ),
    (["eval", "--checkpoint", IMAGE, "--out", "{file}"], "output folder {file} is a file, not a folder"),
    (["eval", "--checkpoint", IMAGE, "--cache", "{file}"], "--cache folder {file} is a file, not a folder"),
    (["eval", "--checkpoint", "{file}.ckpt"], "checkpoint {file}.ckpt does not exist"),
    (["export", "{dir}/nope.ckpt", "{dir}/out.ckpt"], "checkpoint {dir}/nope.ckpt does not exist"),
    (["export", IMAGE, "{dir}"], "export destination {dir} is a folder; give a file name"),
    (
        ["export", IMAGE, "{file}"],
        "export destination {file} exists and is not a polyguide checkpoint; refusing",
    ),
    (["export", IMAGE, "{file}/x.ckpt"], "{file} is a file, not a folder"),
    (["export", IMAGE], "the following arguments are required: dest"),
    (["explain", "--steps", "0", "cfg(shape, 3)"], "argument --steps: must be between 1 and 1,000, got 0"),
    (
        ["explain", "cfg(shape, 3)", "--steps", "5000"],
        "argument --steps: must be between 1 and 1,000, got 5,000",
    ),
    (["explain", ""], "argument guidance: must not be empty"),
    (["explain"], "give a guidance expression, a --checkpoint, or both"),
    (["demo", "--n", "0"], "argument --n: must be between 1 and 100,000, got 0"),
    (["demo", "--toy", "--steps", "0"], "argument --steps: must be between 1 and 10,000, got 0"),
    (["demo", "--toy", "--steps", "twenty"], "argument --steps: expected a whole number, got 'twenty'"),
    (["demo", "--toy", "--out", "{file}"], "output folder {file} is a file, not a folder"),
    (["demo", "--out", "{file}/sub"], "{file} is a file, not a folder"),
    (["modalities", "image"], "unrecognized arguments: image"),
    (["smaple", "--checkpoint", IMAGE], "argument command: invalid choice: 'smaple'"),
    (["fit", "--config", "{dir}/missing.yaml"], "missing.yaml does not exist"),
    (
        ["fit", "--config", ROOT / "recipes/toy/points_flow.yaml", "--trainer.max_steps", "abc"],
        "Parser key \"trainer.max_steps\": | Expected a <class 'int'>. Got value: abc",
    ),
    (
        ["fit", "--config", ROOT / "recipes/toy/points_flow.yaml", "--trainer.max_stepz", "3"],
        "unrecognized arguments: --trainer.max_stepz 3",
    ),
    (["fit", "--config", "{file}"], "(see polyguide fit --help)"),
]


def _fill(argv: list, message: str, tmp_path: Path, out: Path, a_file: Path) -> tuple[list[str], str]:
    subs = {"{out}": str(out), "{file}": str(a_file), "{dir}": str(tmp_path)}

    def fill(s: str) -> str:
        for k, v in subs.items():
            s = s.replace(k, v)
        return s

    return [fill(str(a)) for a in argv], fill(message)


def _command(argv: list[str]) -> str | None:
    return (
        argv[0] if argv[0] in ("demo", "explain", "modalities", "sample", "eval", "export", "fit") else None
    )


@CLI
@pytest.mark.parametrize(
    ("argv", "message"),
    BEFORE_LOADING,
    ids=lambda v: " ".join(map(str, v))[:70] if isinstance(v, list) else None,
)
def test_a_wrong_argument_is_one_line_before_any_work(argv, message, tmp_path, out, a_file, capsys, no_load):
    argv, message = _fill(argv, message, tmp_path, out, a_file)
    before = a_file.read_text()
    code, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, _command(argv), message)
    assert not out.exists()  # nothing written
    assert a_file.read_text() == before  # nothing overwritten


# Cases that need the model to be known (its conditions, modality, family), still before sampling.
AFTER_LOADING = [
    (
        ["sample", "--checkpoint", IMAGE, "--prompt", "hello"],
        "--prompt and --max-tokens stream text: they need a text model (this one is a flow model of image)",
    ),
    (["sample", "--checkpoint", IMAGE, "--max-tokens", "5"], "they need a text model"),
    (["sample", "--checkpoint", TEXT_MASKED, "--prompt", "Enter"], "they need an autoregressive model"),
    (
        ["sample", "--checkpoint", IMAGE, "--cond", "colour=red"],
        "unknown condition 'colour'; this model has: shape",
    ),
    (
        ["sample", "--checkpoint", IMAGE, "--cond", "color=purple"],
        "unknown value 'purple' for condition 'color'",
    ),
    (
        ["sample", "--checkpoint", IMAGE, "--weak", IMAGE],
        "--weak is given but the guidance has no .on(weak) branch",
    ),
    (
        [
            "sample",
            "--checkpoint",
            IMAGE,
            "--cond",
            "shape=circle",
            "--guidance",
            "cfg(shape, 3) + 2*(cond(shape) - cond(shape).on(weak))",
        ],
        "give the weak model with --weak",
    ),
    (
        [
            "sample",
            "--checkpoint",
            TEXT_AR,
            "--weak",
            IMAGE,
            "--cond",
            "genre=comedy",
            "--guidance",
            "contrastive(genre, 1.5, 0.2)",
        ],
        "does not fit",
    ),
    (
        ["sample", "--checkpoint", TEXT_AR, "--cond", "genre=comedy", "--steps", "5000", "--out", "{out}"],
        "this autoregressive model generates at most",
    ),
    (["sample", "--checkpoint", TEXT_AR, "--max-tokens", "5", "--prompt", "To be or not to be. " * 80],
     "--prompt does not fit this model: a prompt needs 1..63 tokens, got"),
    (["sample", "--checkpoint", "{file}"], "checkpoint {file}: is a text file, not a checkpoint"),
    (["eval", "--checkpoint", IMAGE, "--conditions", "colour"], "unknown condition 'colour'"),
    (["export", "{file}", "{dir}/out.ckpt"], "checkpoint {file}: is a text file, not a checkpoint"),
]


@CLI
@pytest.mark.parametrize(
    ("argv", "message"),
    AFTER_LOADING,
    ids=lambda v: " ".join(map(str, v))[:70] if isinstance(v, list) else None,
)
def test_a_wrong_argument_for_the_model_is_one_line_before_sampling(
    argv, message, tmp_path, out, a_file, capsys, no_sampling
):
    argv, message = _fill(argv, message, tmp_path, out, a_file)
    code, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, _command(argv), message)
    assert not out.exists() and not (tmp_path / "out.ckpt").exists()


@CLI
@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "--guidance", "-1*uncond+2*cond(shape,color)"],  # a leading '-' is a value, not an option
        ["sample", "--guidance=-1*uncond+2*cond(shape,color)"],
        ["sample", "--guidance", "-1*uncond + 2*cond(shape, color)"],
    ],
)
def test_a_guidance_may_start_with_a_minus(argv, out, capsys):
    guidance = argv[-1]
    rest = f"--checkpoint {IMAGE} --cond shape=circle --cond color=red --n 2 --steps 2 --no-progress".split()
    argv = [*argv, *rest, "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    saved = torch.load(out / "samples.pt")
    assert saved["guidance"] == guidance.removeprefix("--guidance=")
    assert saved["samples"].shape[0] == 2


@CLI
@pytest.mark.parametrize("text", ["-1*uncond+2*cond(shape)", "-uncond + 2*cond(shape)"])
def test_explain_takes_a_guidance_that_starts_with_a_minus(text, capsys):
    assert main(["explain", text, "--steps", "2"]) == 0
    assert "uncond(): -1" in capsys.readouterr().out


@CLI
def test_a_non_finite_sample_is_reported_and_nothing_is_written(out, capsys):
    argv = f"sample --checkpoint {IMAGE} --cond shape=circle --n 2 --steps 3 --no-progress".split()
    code, err = run_cli([*argv, "--guidance", "cfg(shape, 1e38)", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "sample", "sampling produced non-finite values; nothing was written")
    assert "cond('shape')" in err or "overflowed" in err  # says where
    assert not out.exists()


@CLI
def test_the_image_demo_without_its_checkpoint_says_how_to_get_it(tmp_path, out, capsys, monkeypatch):
    import modalities.image.demo

    monkeypatch.setattr(modalities.image.demo, "CHECKPOINT", tmp_path / "shapes_flow.ckpt")
    code, err = run_cli(["demo", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "demo", "shapes_flow.ckpt is missing; train it with `polyguide fit")
    assert not out.exists()


@CLI
def test_a_recipe_that_its_classes_refuse_is_one_line(tmp_path, capsys):
    recipe = (ROOT / "recipes/toy/points_flow.yaml").read_text().replace("family: flow", "family: flw")
    (tmp_path / "flw.yaml").write_text(recipe)
    code, err = run_cli(["fit", "--config", str(tmp_path / "flw.yaml"), "--trainer.max_steps", "1"], capsys)
    err = "\n".join(line for line in err.splitlines() if "Seed set to" not in line)  # Lightning's info log
    assert_one_line_error(code, err, "fit", "the configuration could not be built: unknown family 'flw'")


@WRONG
def test_a_condition_given_twice_is_refused(out, capsys, no_load):
    argv = f"sample --checkpoint {IMAGE} --cond shape=circle --cond shape=square --out {out}".split()
    code, err = run_cli(argv, capsys)
    assert_one_line_error(
        code, err, "sample", "condition 'shape' is given twice (--cond shape=circle and --cond shape=square)"
    )


@WRONG
@pytest.mark.parametrize(
    ("conds", "guidance", "problem"),
    [
        (["shape=circle"], "cfg(color, 3)", "cond('color') becomes uncond()"),
        (["shape=circle"], "nested([shape, color], [2, 4])", "become the same evaluation, cond('shape')"),
        ([], "cfg(shape, 3)", "cond('shape') becomes uncond()"),
        (["color=red"], "cond(shape)", "cond('shape') becomes uncond()"),
    ],
)
def test_guidance_on_a_condition_not_given_is_refused(conds, guidance, problem, out, capsys, no_sampling):
    argv = ["sample", "--checkpoint", IMAGE, "--guidance", guidance, "--out", str(out)]
    for c in conds:
        argv += ["--cond", c]
    code, err = run_cli(argv, capsys)
    missing = (
        "'color'" if "color" in guidance and not any(c.startswith("color") for c in conds) else "'shape'"
    )
    assert_one_line_error(code, err, "sample", f"uses condition {missing}, which no sample was given")
    assert problem in err


@WRONG
def test_eval_refuses_guidance_on_conditions_it_does_not_request(capsys, no_sampling, monkeypatch):
    from modalities.image.plugin import ImageModality

    monkeypatch.setattr(ImageModality, "judge", _forbid("building the judge"))
    code, err = run_cli(
        ["eval", "--checkpoint", IMAGE, "--guidance", "cfg(color, 3)", "--conditions", "shape"], capsys
    )
    assert_one_line_error(
        code, err, "eval", "uses condition 'color', which no sample was given (given: 'shape')"
    )


@WRONG
@pytest.mark.parametrize(
    "command", [["sample", "--checkpoint", IMAGE, "--cond", "shape=circle"], ["explain"]]
)
def test_a_direction_that_is_identically_zero_is_refused(command, out, capsys, no_load):
    argv = (
        [*command, "--guidance", "cfg(uncond, 3)", "--out", str(out)]
        if command[0] == "sample"
        else [*command, "cfg(uncond, 3)"]
    )
    code, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, command[0], "the term 3*(uncond() - uncond()) is identically zero")


@WRONG
def test_export_refuses_to_overwrite_a_file_that_is_not_a_checkpoint(a_file, tmp_path, capsys):
    before = a_file.read_text()
    code, err = run_cli(["export", IMAGE, str(a_file)], capsys)
    assert_one_line_error(code, err, "export", "is not a polyguide checkpoint; refusing to overwrite it")
    assert a_file.read_text() == before
    assert main(["export", IMAGE, str(a_file), "--force"]) == 0  # unless told to
    assert is_polyguide_checkpoint(a_file)
    assert main(["export", IMAGE, str(a_file)]) == 0  # a polyguide checkpoint may be replaced


def test_checkpoint_sniffing_reads_no_code(tmp_path):
    assert is_polyguide_checkpoint(Path(IMAGE)) and is_polyguide_checkpoint(Path(TEXT_AR))
    plain = tmp_path / "t.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    assert not is_polyguide_checkpoint(plain) and not is_polyguide_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "x.txt").write_text("hello")
    assert not is_polyguide_checkpoint(tmp_path / "x.txt")


def test_an_internal_error_keeps_its_traceback(monkeypatch):
    import framework.cli.commands as commands

    def bug(args):
        raise RuntimeError("a bug in polyguide")

    monkeypatch.setattr(commands, "_sample", bug)
    with pytest.raises(RuntimeError, match="a bug in polyguide"):  # not turned into a one-line error
        main(["sample", "--checkpoint", IMAGE])


@CLI
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["sample", "--checkpoint", IMAGE, "--steps", "0"],
            "polyguide sample: error: argument --steps: must be between",
        ),
        (
            ["sample", "--checkpoint", IMAGE, "--cond", "shape=circle", "--guidance", "cfg(color, 3)",
             "--out", "{out}"],
            "polyguide sample: error: the guidance uncond() + 3*(cond('color') - uncond()) "
            "uses condition 'color'",
        ),
    ],
)
def test_the_console_script_exits_2_with_one_line(argv, message, out):
    argv = [a.replace("{out}", str(out)) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "framework.cli", *argv], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert proc.stdout == "" and not out.exists()
