"""MusicGen and MusicGen-Melody (transformers) as autoregressive models of polyguide.

The model's own modules do the work: the tokenizer and T5 text encoder encode ``text`` /
``negative_text``, the melody feature extractor turns ``melody`` audio into chroma, the decoder
(with its codebook heads) predicts the next frame of ``K`` codebooks, and EnCodec decodes the codes
to audio. Our autoregressive family runs the decoding loop: the codebook delay pattern (codebook
``k`` starts ``k`` steps late; the pattern's positions are fed the decoder's start token, as
``generate`` feeds them), a KV cache per guidance branch, and the guidance combination. With the
model's generation settings (greedy, or sampling with its temperature / top-k / top-p),
``cfg(text, w)`` gives ``generate(guidance_scale=w)``'s codes exactly.

``generate`` knows one guidance: conditional against "everything null" (zero text states; for
Melody also the null chroma). Here each condition is separate, so MusicGen-Melody samples
``independent([text, melody], [3, 2])`` (text and melody weighted apart) and MusicGen a negative
prompt, ``cond(negative_text) + 3*(cond(text) - cond(negative_text))``.

How a row is conditioned:
* MusicGen (cross-attention): text states and their attention mask; an absent ``text`` takes
  ``negative_text``'s where that is kept, else zero states with a zero mask (``generate``'s null).
* MusicGen-Melody (a prefix of the decoder): the projected chroma then the projected text states,
  built by the model's own ``_prepare_encoder_hidden_states_kwargs_for_generation``; an absent
  ``melody`` takes the null chroma, an absent ``text`` zero states (or ``negative_text``'s).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from framework.core.conditions import Conditions, ConditionSpec
from framework.core.errors import one_line
from framework.generators import Autoregressive
from framework.nn.adapters import HFCache
from framework.pretrained.base import PretrainedModel, last_rows, prompt_rows
from framework.pretrained.loading import PretrainedError, weights_kwargs

__all__ = ["EncoderDecoderRows", "MusicGen", "MusicGenMelody"]


class EncoderDecoderRows:
    """A transformers ``EncoderDecoderCache`` (self- and cross-attention) with the row operations
    the branch caches need (``select``, ``cat``, ``length``)."""

    def __init__(self, cache: Any = None) -> None:
        from transformers import DynamicCache, EncoderDecoderCache

        self.cache = cache if cache is not None else EncoderDecoderCache(DynamicCache(), DynamicCache())

    @property
    def length(self) -> int:
        return self.cache.get_seq_length()

    def _parts(self) -> tuple[HFCache, HFCache]:
        return HFCache(self.cache.self_attention_cache), HFCache(self.cache.cross_attention_cache)

    def select(self, rows: torch.Tensor) -> EncoderDecoderRows:
        from transformers import EncoderDecoderCache

        if self.length == 0:
            return EncoderDecoderRows()
        own, cross = self._parts()
        return EncoderDecoderRows(EncoderDecoderCache(own.select(rows).cache, cross.select(rows).cache))

    @staticmethod
    def cat(caches: list[EncoderDecoderRows]) -> EncoderDecoderRows:
        from transformers import EncoderDecoderCache

        if {c.length for c in caches} == {0}:
            return EncoderDecoderRows()
        parts = [c._parts() for c in caches]
        return EncoderDecoderRows(EncoderDecoderCache(HFCache.cat([p[0] for p in parts]).cache,
                                                      HFCache.cat([p[1] for p in parts]).cache))


class _Decoder:
    """``lm(tokens [N, L, K], t, conditions, cache=...) -> logits [N, L, K, V]`` over the model's
    decoder, as the autoregressive family calls networks (``new_cache`` too)."""

    def __init__(self, owner: MusicGen) -> None:
        self.owner = owner

    def new_cache(self):
        return self.owner.new_cache()

    def __call__(self, tokens, t, conditions: Conditions, cache=None, perturbations=None,
                 attention_mask=None) -> torch.Tensor:
        if perturbations is not None:
            raise PretrainedError("in-network perturbations are not supported on MusicGen's decoder")
        owner = self.owner
        N, L, K = tokens.shape
        start = owner.start_id
        ids = tokens.masked_fill(tokens >= owner.family.vocab_size, start)
        ids = ids.permute(0, 2, 1).reshape(N * K, L)  # the decoder's [B·K, L] layout
        kwargs = owner.condition_inputs(conditions, cache)
        out = owner.model(decoder_input_ids=ids, cache=None if cache is None else cache.cache,
                          use_cache=cache is not None, **kwargs)
        logits = out.logits
        if logits.shape[1] != L:
            logits = logits[:, -L:]  # Melody: the condition prefix's positions come first
        return logits.reshape(N, K, L, -1).permute(0, 2, 1, 3)


class MusicGen(PretrainedModel):
    """transformers ``MusicgenForConditionalGeneration``: conditions ``text``, ``negative_text``;
    samples are codes ``[B, K, T]`` (``T`` frames = steps), media audio ``[B, 1, samples]``."""

    pipeline_class = "MusicgenForConditionalGeneration"
    media = "audio"
    default_steps = 250
    text_conditions = ("text", "negative_text")

    def __init__(self, model: Any, tokenizer: Any, source: tuple[str, dict[str, Any]] | None = None) -> None:
        self.model, self.tokenizer, self.source = model.eval(), tokenizer, source
        dec = model.decoder.config
        if getattr(dec, "audio_channels", 1) != 1:
            raise PretrainedError(f"{self.pipeline_class} with {dec.audio_channels} audio channels (stereo) "
                                  f"is not supported; supported: mono MusicGen / MusicGen-Melody")
        gc = model.generation_config
        self.start_id = int(gc.decoder_start_token_id if gc.decoder_start_token_id is not None
                            else dec.decoder_start_token_id)
        sampling = bool(gc.do_sample)
        self.family = Autoregressive(
            vocab_size=dec.vocab_size, codebooks=dec.num_codebooks,
            temperature=float(gc.temperature or 1.0) if sampling else 0.0,
            top_k=int(gc.top_k) if sampling and gc.top_k else None,
            top_p=float(gc.top_p) if sampling and gc.top_p is not None and gc.top_p < 1.0 else None)
        self.default_guidance = f"cfg(text, {gc.guidance_scale or 3.0:g})"
        self.sample_rate = int(model.config.audio_encoder.sampling_rate)
        dim = self._text_dim()
        self.specs = {n: ConditionSpec(n, kind="sequence", dim=dim) for n in self.text_conditions}

    def _text_dim(self) -> int:
        return self.model.text_encoder.config.hidden_size + 1  # states + the attention mask

    @classmethod
    def load(cls, path_or_id: str, **kwargs: Any) -> MusicGen:
        import transformers
        from transformers import AutoTokenizer

        kw = {**weights_kwargs(path_or_id), "trust_remote_code": False}
        model = getattr(transformers, cls.pipeline_class).from_pretrained(path_or_id, **kw, **kwargs)
        tok_kw = {k: v for k, v in kw.items() if k != "use_safetensors"}
        try:
            tokenizer = AutoTokenizer.from_pretrained(path_or_id, **tok_kw)
        except (OSError, ValueError) as e:
            raise PretrainedError(f"{path_or_id}: no tokenizer for the text condition ({e}); save the "
                                  f"processor or tokenizer with save_pretrained next to the model") from None
        return cls(model, tokenizer, (path_or_id, tok_kw))

    @property
    def device(self) -> torch.device:
        """Where the model runs (looked up once: transformers walks the modules to find it)."""
        if getattr(self, "_device", None) is None:
            self._device = self.model.device
        return self._device

    def to(self, device: torch.device | str) -> MusicGen:
        self.model.to(device)
        self._device = None
        return self

    # ------------------------------------------------------------------ conditions
    def _texts(self, name: str, value: Any, n: int) -> list[str]:
        texts = [value] * n if isinstance(value, str) else list(value)
        if len(texts) != n or not all(isinstance(s, str) for s in texts):
            raise PretrainedError(f"condition {name!r} takes a prompt (a string) or {n} of them")
        return texts

    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` ``[n, S]`` as the processor makes them (padded batch)."""
        enc = self.tokenizer(texts, padding=True, return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    @torch.no_grad()
    def _text_value(self, texts: list[str]) -> torch.Tensor:
        """T5 states ``[n, S, D]`` with the attention mask as one more channel → ``[n, S, D + 1]``."""
        ids, mask = self.encode_text(texts)
        states = self.model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return torch.cat([states, mask[..., None].to(states.dtype)], dim=-1)

    def conditions(self, raw: Mapping[str, Any], n: int) -> Conditions:
        self.check_raw(raw)
        values, present = {}, {}
        for name in self.text_conditions:
            if raw.get(name) is not None:
                values[name] = self._text_value(self._texts(name, raw[name], n))
                present[name] = torch.ones(n, dtype=torch.bool, device=self.device)
        S = max((v.shape[1] for v in values.values()), default=1)
        for name in self.text_conditions:  # one length for every text condition: pad (mask 0)
            v = values.get(name)
            if v is None:
                values[name] = torch.zeros(n, S, self._text_dim(), device=self.device)
                present[name] = torch.zeros(n, dtype=torch.bool, device=self.device)
            elif v.shape[1] < S:
                values[name] = torch.cat([v, v.new_zeros(n, S - v.shape[1], v.shape[2])], dim=1)
        return Conditions(values, present)

    def _text_rows(self, conditions: Conditions) -> torch.Tensor:
        """Per row: ``text`` where kept, else ``negative_text`` where kept, else zeros (the null)."""
        return prompt_rows(conditions, torch.zeros((), device=self.device), "decoder")

    def condition_inputs(self, conditions: Conditions, cache: Any = None) -> dict[str, Any]:
        """Keyword arguments of the model's forward for these rows (every call: cross-attention;
        ``cache``, the rows' KV cache, does not matter here)."""
        from transformers.modeling_outputs import BaseModelOutput

        def make() -> dict[str, Any]:
            rows = self._text_rows(conditions)
            states, mask = rows[..., :-1], rows[..., -1].long()
            return {"encoder_outputs": BaseModelOutput(last_hidden_state=states), "attention_mask": mask}

        return last_rows(self).get(conditions, "decoder", make)  # the same rows every step of a run

    def new_cache(self):
        return EncoderDecoderRows()

    # ------------------------------------------------------------------ sampling
    def networks(self) -> dict[str, Any]:
        return {"main": _Decoder(self)}

    def sample_shape(self, steps: int, conditions: Conditions) -> tuple[int, ...]:
        return (self.family.codebooks, steps)

    def decode(self, samples: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """EnCodec's ``decode`` of codes ``[B, K, T]`` → audio ``[B, 1, samples]``, as ``generate``."""
        codec = self.model.audio_encoder
        return codec.decode(samples[None], audio_scales=[None] * samples.shape[0]).audio_values

    def passes(self) -> list[str]:
        m = self.model
        return [f"once: {type(self.tokenizer).__name__} + {type(m.text_encoder).__name__} for each prompt",
                f"per step: one {type(m.decoder).__name__} call over the branches' rows (a KV cache per "
                f"branch), our guidance on the {self.family.codebooks} codebooks' next-token log-probs, then "
                f"{'greedy choice' if self.family.temperature == 0 else 'sampling'}; the delay pattern adds "
                f"{self.family.codebooks - 1} steps",
                f"once: {type(m.audio_encoder).__name__}.decode of the codes"]


class MusicGenMelody(MusicGen):
    """transformers ``MusicgenMelodyForConditionalGeneration``: conditions ``text``,
    ``negative_text`` and ``melody`` (a WAV file or a waveform ``[samples]`` at the feature
    extractor's rate)."""

    pipeline_class = "MusicgenMelodyForConditionalGeneration"
    text_conditions = ("text", "negative_text")

    def __init__(self, model: Any, tokenizer: Any, source: tuple[str, dict[str, Any]] | None = None) -> None:
        super().__init__(model, tokenizer, source)
        self.specs["melody"] = ConditionSpec("melody", kind="sequence", dim=model.decoder.config.hidden_size)
        self._fe: Any = None

    def _text_dim(self) -> int:
        return self.model.decoder.config.hidden_size  # projected and masked states

    def feature_extractor(self) -> Any:
        """The folder's ``MusicgenMelodyFeatureExtractor`` (chroma from audio; it needs torchaudio),
        loaded on first use."""
        if self._fe is None:
            from transformers import MusicgenMelodyFeatureExtractor

            path, kw = self.source or (None, {})
            try:
                self._fe = (MusicgenMelodyFeatureExtractor.from_pretrained(path, **kw) if path is not None
                            else MusicgenMelodyFeatureExtractor())
            except ImportError as e:
                chroma = self.model.config.num_chroma
                raise PretrainedError(f"a melody as audio needs the model's feature extractor, which needs "
                                      f"torchaudio ({one_line(e)}); give the melody as chroma features "
                                      f"[frames, {chroma}] (a .npy file or a tensor)") from None
            except (OSError, ValueError) as e:
                raise PretrainedError(f"{path}: no melody feature extractor ({one_line(e)})") from None
        return self._fe

    def _prefix(self, ids: torch.Tensor, mask: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """The decoder prefix ``[n, C + S, H]`` from the model's own preparation (no guidance)."""
        from transformers import GenerationConfig

        kwargs: dict[str, Any] = {"attention_mask": mask}
        if features is not None:
            kwargs["input_features"] = features
        out = self.model._prepare_encoder_hidden_states_kwargs_for_generation(
            ids, kwargs, "input_ids", GenerationConfig(guidance_scale=None))
        return out["encoder_hidden_states"]

    @property
    def chroma_length(self) -> int:
        return int(self.model.config.chroma_length)

    @torch.no_grad()
    def _text_value(self, texts: list[str]) -> torch.Tensor:
        ids, mask = self.encode_text(texts)
        return self._prefix(ids, mask, None)[:, self.chroma_length:]

    @torch.no_grad()
    def _melody_value(self, value: Any, n: int) -> torch.Tensor:
        """A melody → its projected chroma prefix ``[n, C, H]``. ``value``: chroma features
        ``[frames, num_chroma]`` (tensor, array or ``.npy`` file, as the processor's
        ``input_features``), or audio (a WAV file or a waveform ``[samples]``) for the model's
        feature extractor."""
        chroma = int(self.model.config.num_chroma)
        if isinstance(value, (str, Path)) and str(value).endswith(".npy"):
            import numpy as np

            try:
                value = np.load(value, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise PretrainedError(f"melody {value}: not a readable .npy array ({one_line(e)})") from None
        feats = torch.as_tensor(value, dtype=torch.float32) if not isinstance(value, (str, Path)) else None
        if feats is None or feats.ndim == 1:  # audio: the model's own feature extractor
            fe = self.feature_extractor()
            if isinstance(value, (str, Path)):  # any rate: resampled to the feature extractor's
                from modalities.audio.features import read_wav

                value = read_wav(value, sample_rate=fe.sampling_rate)
            wave = torch.as_tensor(value, dtype=torch.float32).reshape(-1).cpu().numpy()
            feats = fe(wave, sampling_rate=fe.sampling_rate, return_tensors="pt")["input_features"]
        feats = feats[None] if feats.ndim == 2 else feats
        if feats.ndim != 3 or feats.shape[0] != 1 or feats.shape[-1] != chroma:
            raise PretrainedError(f"melody: chroma features have shape [frames, {chroma}]; got "
                                  f"{list(feats.shape)}")
        feats = feats.to(self.device)
        ids = torch.zeros(1, 1, dtype=torch.long, device=self.device)
        prefix = self._prefix(ids, torch.zeros_like(ids), feats)
        return prefix[:, :self.chroma_length].expand(n, -1, -1)

    @torch.no_grad()
    def null_melody(self, n: int) -> torch.Tensor:
        """The null chroma's projection ``[n, C, H]`` (``generate``'s unconditional audio)."""
        ids = torch.zeros(1, 1, dtype=torch.long, device=self.device)
        return self._prefix(ids, torch.zeros_like(ids), None)[:, :self.chroma_length].expand(n, -1, -1)

    def conditions(self, raw: Mapping[str, Any], n: int) -> Conditions:
        out = super().conditions({k: v for k, v in raw.items() if k != "melody"}, n)
        self.check_raw(raw)
        if raw.get("melody") is not None:
            out.values["melody"] = self._melody_value(raw["melody"], n)
            out.present["melody"] = torch.ones(n, dtype=torch.bool, device=self.device)
        else:
            out.values["melody"] = self.null_melody(n)
            out.present["melody"] = torch.zeros(n, dtype=torch.bool, device=self.device)
        return Conditions(out.values, out.present)

    def condition_inputs(self, conditions: Conditions, cache: Any = None) -> dict[str, Any]:
        """The prefix (first call of a sequence, ``cache`` empty or ``None``; it then lives in the
        KV cache)."""
        if cache is not None and cache.length > 0:
            return {}
        n = conditions.batch_size
        melody = torch.where(conditions.present["melody"].view(-1, 1, 1), conditions.values["melody"],
                             self.null_melody(n))
        return {"encoder_hidden_states": torch.cat([melody, self._text_rows(conditions)], dim=1)}

    def new_cache(self):
        return HFCache()
