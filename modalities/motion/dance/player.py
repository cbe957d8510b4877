"""Dance output: each motion with its music — WAV cut to the clip and an ``index.html`` player.

The page draws every sample's skeleton on a ``<canvas>`` from the joint positions it embeds
(projected with the GIF's camera) and takes the frame to draw from its ``<audio>`` element's
clock (``frame = ⌊currentTime · fps⌋``), so motion and music cannot drift apart: pausing,
seeking and looping move both. A dot flashes on each music beat (estimated from the WAV). The
page runs no code from outside itself. Opened as ``index.html#selftest`` it seeks every clip's
audio to 0.5, 1.23 and 2.9 s and writes, per seek, the audio time and the frame drawn into
``<pre id="selftest">`` (a headless browser's check that the two are in step).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from framework.core.atomic import atomic_write
from framework.core.plugins import api

from ..actions import FPS
from ..skeleton import PARENTS
from ..writers import _camera

__all__ = ["music_sources", "write_player"]

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:12px}} .s{{display:inline-block;margin:6px;vertical-align:top}}
canvas{{border:1px solid #ccc;display:block}} audio{{width:260px}} .cap{{font-size:12px;width:260px}}</style>
</head><body><h3>{title}</h3>
<p>Each figure is drawn from its music's clock: play, pause or seek a clip and the dance follows.
A red dot marks the music's beats.</p>
{cells}
<pre id="selftest"></pre>
<script>
const FPS = {fps}, PARENTS = {parents}, DATA = {data};
function draw(i) {{
  const d = DATA[i], c = document.getElementById('c' + i), a = document.getElementById('a' + i);
  const ctx = c.getContext('2d'), T = d.frames.length;
  const f = Math.max(0, Math.min(T - 1, Math.floor(a.currentTime * FPS)));
  c.dataset.frame = f;
  ctx.clearRect(0, 0, c.width, c.height);
  const P = d.frames[f];
  const px = p => [(p[0] - d.cx) * d.scale + c.width / 2, (p[1] - d.cy) * d.scale + c.height / 2];
  ctx.lineWidth = 3;
  for (let j = 1; j < P.length; j++) {{
    const s = px(P[PARENTS[j]]), e = px(P[j]);
    ctx.strokeStyle = d.side[j]; ctx.beginPath(); ctx.moveTo(s[0], s[1]);
    ctx.lineTo(e[0], e[1]); ctx.stroke();
  }}
  const h = px(P[15]); ctx.beginPath(); ctx.arc(h[0], h[1], 6, 0, 7); ctx.stroke();
  const t = a.currentTime;
  if (d.beats.some(b => Math.abs(b - t) < 0.06)) {{
    ctx.fillStyle = '#e33'; ctx.beginPath(); ctx.arc(14, 14, 8, 0, 7); ctx.fill();
  }}
  ctx.fillStyle = '#000'; ctx.fillText('frame ' + f + ' / ' + (T - 1), 4, c.height - 6);
}}
function loop() {{ DATA.forEach((_, i) => draw(i)); requestAnimationFrame(loop); }}
requestAnimationFrame(loop);
if (location.hash === '#selftest') {{  // seek every clip's audio and check the frame drawn
  const log = document.getElementById('selftest'), rows = [], times = [0.5, 1.23, 2.9];
  let pending = DATA.length * times.length;
  const seek = (i, k) => {{
    const a = document.getElementById('a' + i), c = document.getElementById('c' + i);
    a.addEventListener('seeked', function once() {{
      a.removeEventListener('seeked', once); draw(i);
      rows.push(JSON.stringify({{sample: i, time: a.currentTime, frame: +c.dataset.frame,
                                 expected: Math.min(DATA[i].frames.length - 1,
                                                    Math.floor(a.currentTime * FPS)),
                                 duration: a.duration, motion_seconds: DATA[i].frames.length / FPS}}));
      if (k + 1 < times.length) seek(i, k + 1);
      if (--pending === 0) log.textContent = rows.join('\\n');
    }});
    a.currentTime = times[k];
  }};
  DATA.forEach((_, i) => {{
    const a = document.getElementById('a' + i);
    if (a.readyState >= 1) seek(i, 0); else a.addEventListener('loadedmetadata', () => seek(i, 0));
  }});
}}
</script></body></html>
"""

_CELL = """<div class="s"><canvas id="c{i}" width="260" height="260"></canvas>
<audio id="a{i}" src="{wav}" controls loop preload="auto"></audio><div class="cap">{label}</div></div>"""

_LEFT = {1, 4, 7, 10, 13, 16, 18, 20}
_RIGHT = {2, 5, 8, 11, 14, 17, 19, 21}


def music_sources(conditions) -> list[torch.Tensor | None]:
    """Per sample of a :class:`~framework.core.conditions.Conditions` batch, the waveform ``[S]``
    its ``music`` features were encoded from in this process
    (the audio plugin's ``source_of``), or ``None`` (absent, or given as features)."""
    source_of = api("audio/source_of")
    values, present = conditions.values["music"], conditions.present["music"]
    return [source_of(values[i]) if bool(present[i]) else None for i in range(values.shape[0])]


def write_player(positions: torch.Tensor, waves: Sequence[torch.Tensor | None], out: Path, *,
                 labels: Sequence[str] | None = None, title: str | None = None, fps: int = FPS) -> list[Path]:
    """Write ``music_XX.wav`` (each sample's music cut to the clip: ``T / fps`` s) and
    ``index.html`` playing each motion of ``positions`` ``[B, T, 22, 3]`` with its music in sync.

    Args:
        waves: per sample a mono 16-kHz waveform ``[S]`` (cut or padded to the clip) or ``None``
            (the sample gets a silent track, so its player still runs on a clock).
        labels: one caption per sample.
        title: the page's heading.

    Returns:
        the WAV files and the page.
    """
    estimate_beats, onset_envelope = api("audio/estimate_beats"), api("audio/onset_envelope")
    save_wav, sample_rate = api("audio/save_wav"), api("audio/sample_rate")
    out.mkdir(parents=True, exist_ok=True)
    pos = positions.detach().cpu().float().numpy()
    B, T = pos.shape[:2]
    samples = round(T / fps * sample_rate)
    files, cells, data = [], [], []
    colours = ["#1e5ac8" if j in _LEFT else "#c85a28" if j in _RIGHT else "#1e1e1e"
               for j in range(len(PARENTS))]
    for i in range(B):
        wave = waves[i] if i < len(waves) else None
        clip = torch.zeros(samples) if wave is None else torch.nn.functional.pad(
            wave.float().reshape(-1)[:samples], (0, max(0, samples - wave.numel())))
        files.append(save_wav(out / f"music_{i:02d}.wav", clip))
        beats = [] if wave is None else estimate_beats(onset_envelope(clip[None])[0]).times(T / fps).tolist()
        scr = _camera(pos[i])  # [T, 22, 2]
        lo, hi = scr.reshape(-1, 2).min(0), scr.reshape(-1, 2).max(0)
        data.append({"frames": np.round(scr.astype(np.float64), 3).tolist(), "cx": float((lo[0] + hi[0]) / 2),
                     "cy": float((lo[1] + hi[1]) / 2), "scale": 220.0 / max(float((hi - lo).max()), 1.2),
                     "side": colours, "beats": [round(b, 3) for b in beats]})
        label = labels[i] if labels is not None and i < len(labels) else f"sample {i}"
        note = "" if wave is not None else " (no music given: silent track)"
        cells.append(_CELL.format(i=i, wav=f"music_{i:02d}.wav", label=html.escape(str(label) + note)))
    page = _PAGE.format(title=html.escape(title or "dance"), cells="\n".join(cells), fps=fps,
                        parents=json.dumps(list(PARENTS)), data=json.dumps(data, separators=(",", ":")))
    files.append(atomic_write(out / "index.html", lambda tmp: tmp.write_text(page, encoding="utf-8")))
    return files
