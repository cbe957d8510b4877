"""The ``polyguide`` argument parser: every sub-command, its options, their defaults and help.

Building it imports nothing heavy (no torch, no Lightning): ``polyguide --help`` and argument
mistakes answer at once. Each sub-command's handler is named as ``module:function`` and imported
only when that command runs (:class:`Handler`).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from framework.cli.args import MAX_N, MAX_SEED, MAX_STEPS, MAX_TOKENS, Parser, bounded_int, non_empty

__all__ = ["COMMANDS", "MAX_EXPLAIN_STEPS", "Handler", "build_parser"]

COMMANDS = ("demo", "explain", "modalities", "new-modality", "sample", "eval", "export", "fit")
#: ``explain`` prints one line per step.
MAX_EXPLAIN_STEPS = 1_000

_DESCRIPTION = """\
polyguide: conditional generation with a guidance algebra.

    polyguide demo [--out outputs] [--toy]    the main job: guided samples from the shipped shapes model
    polyguide explain "<guidance>"            what an expression evaluates, step by step
    polyguide fit --config recipe.yaml ...    train (LightningCLI)
    polyguide sample --checkpoint C --cond shape=circle --guidance "..."   sample, write media
    polyguide eval --checkpoint C --guidance "..."                         metrics of guided samples
    polyguide export CHECKPOINT DEST          strip a training checkpoint for shipping
    polyguide modalities                      the installed modality plugins
    polyguide new-modality NAME [--out DIR]   write a working plugin to start from (docs/plugins.md)

`polyguide <command> --help` describes each command's options and defaults.
"""

_GUIDANCE_DEFAULT = ("default: the checkpoint's own guidance, the first expression its recipe lists under "
                     "`guidance:` (printed when sampling), else plain conditional sampling on the given "
                     "conditions, cond(...)")
_STEPS_HELP = (f"sampling steps (at most {MAX_STEPS:,}); default: 30 for diffusion and flow, min(30, L) "
               f"for masked models of L positions, and for autoregressive models their whole length L "
               f"(one token per step: fewer steps sample a shorter prefix)")
_DEVICE_HELP = "where to sample: cpu, cuda, cuda:N or mps (default: cpu); an unavailable device is an error"


#: Each command's one-line help (``polyguide --help``) and description (``polyguide <command> --help``).
_ABOUT: dict[str, tuple[str, str]] = {
    "demo": ("the main job: guided sampling from the shipped shapes checkpoint",
             "Sample the shipped shapes flow checkpoint under several guidance "
             "expressions: a labelled PNG grid per expression and a summary table "
             "(accuracy, Fréchet distance, NFE, seconds) in summary.md/.json. "
             "--toy: an analytic 2-D toy instead, written to <out>/toy/ so the two "
             "never overwrite each other."),
    "explain": ("show the branches, coefficients and NFE plan of a guidance",
                "Parse a guidance expression and show what it evaluates: its branches "
                "per network, its coefficients at τ = 0, 0.5, 1, the forward passes of "
                "each step, and the condition subsets training must cover."),
    "sample": ("sample from a checkpoint with any guidance and write the media",
               "Sample from a trained checkpoint and write the modality's media to --out:\n"
               "  samples.pt      the sampled representation, the conditions, guidance and seed\n"
               "  image           grid.png (all, labelled) and sample_000.png … (one per image)\n"
               "  text            samples.txt (all passages) and sample_000.txt … (one per passage)\n"
               "  audio           sample_000.wav …, grid.png (spectrograms), index.html (players)\n"
               "  motion          motion.gif (all clips) and sample_00.bvh … (one per clip)\n"
               "  other plugins   what the plugin's writer writes (default: media.pt)\n"
               "Text models stream instead with --prompt or --max-tokens."),
    "eval": ("score guided samples with the modality's metrics",
             "Sample random requests under each guidance and score them with the "
             "modality's judge (e.g. per-condition accuracy, Fréchet distance, "
             "diversity); prints a table with NFE and seconds per guidance."),
    "export": ("strip a training checkpoint to weights + config for shipping",
               "Keep what sampling needs (hyper-parameters and weights, the EMA "
               "weights if trained with EMA); drop the optimizer state and callbacks. "
               "Written atomically; about a third of the training checkpoint's size."),
    "modalities": ("list the installed modality plugins",
                   "List the installed modality plugins: representations, data modules, "
                   "conditions, condition encoders and shipped recipes (absolute paths)."),
    "new-modality": ("write a working modality plugin to start from",
                     "Write the project folder DIR/polyguide_NAME: a modality plugin (codec, "
                     "data module, judge, recipe, pyproject.toml, tests) that installs with "
                     "`pip install -e`, trains, samples and evaluates as it is; replace its "
                     "data, codec and judge with your own (docs/plugins.md)."),
}


def _command(sub: argparse._SubParsersAction, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """The sub-parser of command ``name``, with its help and description from :data:`_ABOUT`."""
    short, description = _ABOUT[name]
    return sub.add_parser(name, help=short, description=description, **kwargs)


def _runs(p: argparse.ArgumentParser, handler: str, device_help: str = _DEVICE_HELP) -> None:
    """The options of the commands that sample (``--device``, ``--no-progress``) and their handler."""
    p.add_argument("--device", type=non_empty, default=None, help=device_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=Handler(handler))


class Handler:
    """A sub-command's function, imported on first call from ``"module:function"``."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __call__(self, args: argparse.Namespace) -> int:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)(args)


def _demo(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    d = _command(sub, "demo")
    d.add_argument("--out", type=Path, default=Path("outputs"), help="output folder (default: outputs)")
    d.add_argument("--n", type=bounded_int(1, MAX_N), default=None,
                   help="samples per request (image; default 8) or per expression (toy; default 400)")
    d.add_argument("--steps", type=bounded_int(1, MAX_STEPS), default=None,
                   help=f"sampling steps (default 30; toy 40; at most {MAX_STEPS:,})")
    d.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0,
                   help="random seed (default 0: the demo's published table is reproducible)")
    d.add_argument("--toy", action="store_true", help="the analytic toy instead (no checkpoint needed)")
    return d


def _explain(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    e = _command(sub, "explain")
    e.add_argument("guidance", type=non_empty, nargs="?",
                   help='e.g. "uncond + 4*(cond(shape) - uncond) + 3*(cond(color) - uncond)"')
    e.add_argument("--checkpoint", type=Path, default=None,
                   help="also show the condition dropout this checkpoint was trained with, and whether it "
                        "trains every subset the guidance evaluates (the guidance may then be left out)")
    e.add_argument("--steps", type=bounded_int(1, MAX_EXPLAIN_STEPS), default=10,
                   help=f"sampling steps to plan (default 10, at most {MAX_EXPLAIN_STEPS:,}: one line each)")
    e.add_argument("--pretrained", type=non_empty, default=None, metavar="PATH_OR_ID",
                   help="also list the passes of a diffusers / transformers pipeline (docs/pretrained.md)")
    return e


def _sample(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    s = _command(sub, "sample", formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--checkpoint", type=Path, default=None,
                   help="a checkpoint from polyguide fit or export, "
                        "e.g. recipes/image/checkpoints/shapes_flow.ckpt")
    s.add_argument("--pretrained", type=non_empty, default=None, metavar="PATH_OR_ID",
                   help="instead of --checkpoint: a diffusers / transformers pipeline saved with "
                        "save_pretrained (or a hub id, with network), e.g. a StableDiffusionPipeline "
                        "folder; see docs/pretrained.md")
    s.add_argument("--cond", action="append", default=[], metavar="NAME=VALUE",
                   help="a condition value, e.g. --cond shape=circle (repeatable; default: none)")
    s.add_argument("--guidance", type=non_empty, default=None,
                   help='e.g. "uncond + 4*(cond(shape) - uncond) + 3*(cond(color) - uncond)"; '
                        + _GUIDANCE_DEFAULT)
    s.add_argument("--steps", type=bounded_int(1, MAX_STEPS), default=None, help=_STEPS_HELP)
    s.add_argument("--n", type=bounded_int(1, MAX_N), default=None,
                   help=f"samples (default 16, at most {MAX_N:,}; streamed text: default 1)")
    s.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=None,
                   help="random seed (default: a fresh one, printed, so that a run can be repeated)")
    s.add_argument("--weak", type=Path, default=None,
                   help="checkpoint of the 'weak' network for .on(weak) branches (autoguidance, contrastive)")
    s.add_argument("--out", type=Path, default=None,
                   help="output folder (default: samples; streamed text is written only when given)")
    s.add_argument("--seconds", default=None, metavar="S",
                   help="motion models: clip length in seconds (overlapping windows, each in-painted on "
                        "the last frames of the one before; default: the model's own length)")
    s.add_argument("--fps", default=None, metavar="FPS",
                   help="motion models: frame rate of the written GIF and BVH files (20, 30 or 60; "
                        "default 20, the models' own)")
    s.add_argument("--prompt", type=non_empty, default=None,
                   help="text models: a prefix to continue, taken as whole words (streams the text, "
                        "which begins with the prompt)")
    s.add_argument("--max-tokens", type=bounded_int(1, MAX_TOKENS), default=None,
                   help=f"text models: tokens to generate per sample (streams; default 64, "
                        f"at most {MAX_TOKENS:,})")
    s.add_argument("--min-tokens", type=bounded_int(1, MAX_TOKENS), default=None,
                   help="text models: no speech ends before this many sampled tokens (streams; the "
                        "end-of-speech token is banned until then; at most --max-tokens)")
    s.add_argument("--continue", dest="keep_going", action="store_true",
                   help="text models: at the end of a speech, start another one (same conditions) until "
                        "--max-tokens; without it, generation stops at the first end-of-speech token")
    return s


def _eval(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    e = _command(sub, "eval")
    e.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint from polyguide fit or export")
    e.add_argument("--guidance", type=non_empty, action="append", default=[],
                   help="a guidance to score (repeatable: one row each); " + _GUIDANCE_DEFAULT)
    e.add_argument("--conditions", nargs="*",
                   help="categorical conditions to request and score (default: every categorical one)")
    e.add_argument("--n", type=bounded_int(1, MAX_N), default=256,
                   help=f"samples per guidance (default 256, at most {MAX_N:,})")
    e.add_argument("--steps", type=bounded_int(1, MAX_STEPS), default=None, help=_STEPS_HELP)
    e.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0,
                   help="random seed of the requests and the sampling (default 0: tables are comparable)")
    e.add_argument("--cache", type=Path, default=None,
                   help="where the judge (e.g. a classifier) is cached (default: the one validation uses, "
                        "the modality's shipped checkpoints folder, else ~/.cache/polyguide/judges)")
    e.add_argument("--out", type=Path, default=None,
                   help="also write eval.json and eval.md to this folder (default: print only)")
    return e


def _export(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    x = _command(sub, "export")
    x.add_argument("checkpoint", type=Path, help="a training checkpoint (e.g. .../checkpoints/last.ckpt)")
    x.add_argument("dest", type=Path, help="the file to write (an existing polyguide checkpoint is replaced)")
    x.add_argument("--force", action="store_true",
                   help="overwrite dest even if it is not a polyguide checkpoint")
    return x


def _new_modality(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    n = _command(sub, "new-modality")
    n.add_argument("name", type=non_empty, help="the modality's name: lower-case letters, digits and _")
    n.add_argument("--out", type=Path, default=Path("."), help="where to write the project (default: .)")
    return n


def build_parser() -> argparse.ArgumentParser:
    """The ``polyguide`` parser (``fit`` is listed; its arguments belong to LightningCLI)."""
    p = Parser(prog="polyguide", description=_DESCRIPTION,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    # each command's handler; the sampling ones also take --device and --no-progress
    _runs(_demo(sub), "framework.cli.main:_demo", _DEVICE_HELP + " (not with --toy)")
    _explain(sub).set_defaults(run=Handler("framework.cli.main:_explain"))
    _command(sub, "modalities").set_defaults(run=Handler("framework.cli.plugin_commands:_modalities"))
    _new_modality(sub).set_defaults(run=Handler("framework.cli.plugin_commands:_new_modality"))
    _runs(_sample(sub), "framework.cli.commands:_sample")
    _runs(_eval(sub), "framework.cli.commands:_eval")
    _export(sub).set_defaults(run=Handler("framework.cli.commands:_export"))
    sub.add_parser("fit", help="train a recipe: polyguide fit --config recipes/<modality>/<name>.yaml "
                               "(polyguide fit --help: LightningCLI's options)", add_help=False)
    return p
