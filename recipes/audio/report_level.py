"""Measure the level of every shipped audio model under every documented guidance expression.

    python recipes/audio/report_level.py [--n 32] [--seed 4242] [--out docs/results]

For each model (``words_flow``, ``words_ar``, ``words_world``, ``music_flow``; ``--models`` picks some
and keeps the other rows of an existing JSON) and each guidance expression that
docs/audio.md documents for it, samples ``--n`` clips on fresh seeds and reports, per row: the
largest per-clip fraction of samples at full scale after the decoder's level policy (the target:
≤ 0.0001, i.e. 0.01 %), the same figure for the old hard cut at ±1 (the decoder's waveform
before the policy, clamped), how many clips the policy scaled down, and the largest peak.
Writes ``audio_level.json`` and ``audio_level.md`` into ``--out``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from framework.core.conditions import Conditions
from framework.evaluation import markdown_table
from framework.training.module import load
from modalities.audio.features import PEAK_TARGET, clipped_fraction, limit_peak

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from report import NEGATIVE, SWEEP_W, TABLE, report_args, write_report  # noqa: E402  (the word report's expressions)
from report_music import GUIDANCE as MUSIC_GUIDANCE  # noqa: E402
from report_music import NEGATIVE as MUSIC_NEGATIVE  # noqa: E402
from report_music import requests as music_requests  # noqa: E402

CHECKPOINTS = HERE / "checkpoints"
WORD_MODELS = ("words_flow", "words_ar", "words_world")
WORD_SWEEP = {f"cfg word w={w}": ("cond(word)" if w == 1 else f"cfg(word, {w})") for w in SWEEP_W}


def level_row(model, conds: Conditions, label: str, guidance: str, steps: int, seed: int) -> dict:
    """Sample under ``guidance`` and measure the decoded level with and without the policy."""
    out = model.sample(conds, guidance, steps=steps, seed=seed)
    raw = model.codec.decode_unlimited(out.samples)  # [B, 1, S] before the level policy
    media = limit_peak(raw)
    assert torch.equal(media, out.media.cpu()), "the decoder's output is the policy applied to its waveform"
    peak = raw.abs().flatten(1).amax(1)
    return {"guidance": label, "expression": guidance, "n": len(raw),
            "clipped_max": float(clipped_fraction(media).max()),
            "old_clipped_max": float(clipped_fraction(raw.clamp(-1, 1)).max()),
            "old_full_scale_clips": int((clipped_fraction(raw.clamp(-1, 1)) > 0).sum()),
            "limited_clips": int((peak > PEAK_TARGET).sum()), "raw_peak_max": float(peak.max())}


def word_rows(name: str, n: int, seed: int, steps: int) -> list[dict]:
    model = load(CHECKPOINTS / f"{name}.ckpt").eval()
    g = torch.Generator().manual_seed(seed)
    raw = {"word": torch.randint(0, 10, (n,), generator=g),
           "speaker": torch.randint(0, 15, (n,), generator=g)}
    conds = Conditions.from_raw(model.specs, raw, n)
    steps = model.shape[-1] if model.hparams.family == "autoregressive" else steps
    rows = []
    for label, expr in {**WORD_SWEEP, **TABLE, **NEGATIVE}.items():
        rows.append({"model": name, **level_row(model, conds, label, expr, steps, seed)})
        print(rows[-1], flush=True)
    return rows


def music_rows(n: int, seed: int, steps: int) -> list[dict]:
    model = load(CHECKPOINTS / "music_flow.ckpt").eval()
    _, raw, _ = music_requests(n, seed=seed)
    conds = Conditions.from_raw(model.specs, raw, n)
    rows = []
    for label, expr in {**MUSIC_GUIDANCE, **MUSIC_NEGATIVE}.items():
        rows.append({"model": "music_flow", **level_row(model, conds, label, expr, steps, seed)})
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    # an expression listed twice was sampled twice alike: its first row only
    first = {(r["model"], r["expression"]): r for r in reversed(rows)}
    unique = [r for r in rows if first[(r["model"], r["expression"])] is r]
    return markdown_table(
        ["model", "guidance", "clips", "worst clip at full scale", "same, hard cut at ±1 (before)",
         "clips at full scale before", "clips scaled down", "largest raw peak"],
        [[r["model"], f"`{r['expression']}`", r["n"], f"{100 * r['clipped_max']:.3f} %",
          f"{100 * r['old_clipped_max']:.3f} %", r["old_full_scale_clips"], r["limited_clips"],
          f"{r['raw_peak_max']:.2f}"] for r in unique], fmt=str)


def main() -> None:
    p = report_args(__doc__.splitlines()[0], 32, seed=4242)
    p.add_argument("--markdown-only", action="store_true", help="rewrite the table from the JSON")
    p.add_argument("--models", nargs="*", default=[*WORD_MODELS, "music_flow"],
                   help="models to measure; the rows of others already in the JSON are kept")
    args = p.parse_args()
    if args.markdown_only:
        rows = json.loads((args.out / "audio_level.json").read_text())
        (args.out / "audio_level.md").write_text(markdown(rows))
        return
    torch.manual_seed(args.seed)
    old = args.out / "audio_level.json"
    kept = json.loads(old.read_text()) if old.is_file() else []
    rows = [r for r in kept if r["model"] not in args.models]
    for name in args.models:
        rows += (music_rows(args.n, args.seed, 30) if name == "music_flow"
                 else word_rows(name, args.n, args.seed, args.steps))
    write_report(args.out, "audio_level", rows, markdown(rows), indent=1)


if __name__ == "__main__":
    main()
