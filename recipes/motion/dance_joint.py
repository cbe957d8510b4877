"""Music and dance from one text request, in one command: music first, then a dance conditioned on it.

    OMP_NUM_THREADS=1 python recipes/motion/dance_joint.py --text "an energetic Irish dance" --n 4 \\
        --out samples/joint

The music model (``recipes/audio/checkpoints/music_flow.ckpt``, mel + Griffin-Lim) generates ``--n``
4-s clips from the request under ``cfg((style, instrument, text), 3)`` — it was never trained on the
caption alone, so the request's style and instrument labels are read from its words ("Irish",
"violin"; one drawn from the seed when the request names none); each clip's first 3.2 s go through the audio
plugin's ``audio/music`` encoder into the dance model (``dance_flow.ckpt``) with the same request
as its caption, under ``independent([music, text], [3, 2])``. The output folder holds the motion
plugin's files (GIF, BVH per sample, each sample's music cut to the clip, ``index.html`` playing
them together). Printed: the beat alignment of each dance with its own generated music's beats
(estimated from the audio) and, as the chance level, with another sample's music.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from framework.core import plugins
from framework.training.module import load
from modalities.audio.beats import estimate_beats, music_encoder, onset_envelope
from modalities.motion.dance.beat_align import beat_alignment

MUSIC = Path("recipes/audio/checkpoints/music_flow.ckpt")
DANCE = Path("recipes/motion/checkpoints/dance_flow.ckpt")


def labels_of(text: str, seed: int) -> dict[str, str]:
    """The music model's ``style`` and ``instrument`` named in ``text`` (else drawn from ``seed``)."""
    from modalities.audio.music import INSTRUMENTS, STYLES
    from modalities.audio.music_data import STYLE_WORDS

    words = text.lower()
    rng = torch.Generator().manual_seed(seed)
    style = next((s for s in STYLES if s in words or STYLE_WORDS[s].split()[-2].lower() in words), None)
    inst = next((i for i in INSTRUMENTS if i in words), None)
    return {"style": style or STYLES[int(torch.randint(len(STYLES), (1,), generator=rng))],
            "instrument": inst or INSTRUMENTS[int(torch.randint(len(INSTRUMENTS), (1,), generator=rng))]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", required=True)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--music", type=Path, default=MUSIC)
    p.add_argument("--dance", type=Path, default=DANCE)
    p.add_argument("--out", type=Path, default=Path("samples/joint"))
    args = p.parse_args()
    torch.set_num_threads(1)

    music_model = load(str(args.music)).eval()
    labels = labels_of(args.text, args.seed)
    print(f"music request: {labels} + the caption")
    song = music_model.sample({"text": args.text, **labels}, "cfg((style, instrument, text), 3)", n=args.n,
                              steps=args.steps, seed=args.seed)
    waves = song.media.reshape(args.n, -1)[:, : round(3.2 * 16000)]  # [n, 51200]

    dance_model = load(str(args.dance)).eval()
    raw = {"music": music_encoder(list(waves)), "text": args.text}  # the encoder keeps the waves
    out = dance_model.sample(raw, "independent([music, text], [3, 2])", n=args.n, steps=args.steps,
                             seed=args.seed)
    rows = [f"{args.text} #{i}" for i in range(args.n)]
    files = plugins.get("motion").write(out.media, args.out, rows=rows, title=args.text,
                                        conditions=dance_model.conditions(raw, args.n))
    beats = [estimate_beats(onset_envelope(w[None])[0]).times(3.2).numpy() for w in waves]
    own = beat_alignment(out.media, beats)
    other = beat_alignment(out.media, beats[1:] + beats[:1])
    tempi = [round(60 / float(b[1] - b[0])) if len(b) > 1 else None for b in beats]
    print(f"music tempi (estimated): {tempi} BPM")
    print(f"beat alignment with its own music {own:.3f}; with another sample's music {other:.3f}")
    for f in files:
        print(f"wrote {f}")


if __name__ == "__main__":
    main()
