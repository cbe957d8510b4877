"""Tiny random-weight pipelines of every supported kind, built offline (tokenizers from a small
vocabulary written here; no downloads), for the tests, the overhead benchmark and trying the API.

``save_*`` write them with the libraries' ``save_pretrained``, as a user's folder would be.
Random weights: the pictures and sounds are noise; equality with the libraries is the point.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["a", "red", "blue", "cube", "ball", "cat", "dog", "on", "the", "grass", "make", "it", "snow",
         "piano", "happy", "sad", "rock", "drums", "loud", "quiet"]


def clip_tokenizer(folder: Path):
    """A ``CLIPTokenizer`` over :data:`WORDS` (each word one token), from files written here."""
    from transformers import CLIPTokenizer

    chars = sorted({c for w in WORDS for c in w})
    vocab = [*chars, *[c + "</w>" for c in chars]]
    merges = []
    for w in WORDS:  # merge each word left to right into one token
        cur = w[0]
        for i, c in enumerate(w[1:], 1):
            nxt = c + ("</w>" if i == len(w) - 1 else "")
            merges.append(f"{cur} {nxt}")
            cur = cur + nxt
            if cur not in vocab:
                vocab.append(cur)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(dict.fromkeys(vocab))}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=12)


def word_tokenizer():
    """A T5-style word-level fast tokenizer (``</s>`` appended) over :data:`WORDS`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")


def tiny_sd_components(prediction: str = "epsilon", in_channels: int = 4, scheduler: str = "DDIMScheduler",
                       tmp: Path | None = None, width: int = 8, size: int = 8) -> dict:
    """UNet2DConditionModel (channels ``width``, ``2·width``; latents ``size``²) + AutoencoderKL +
    CLIP text encoder / tokenizer (vocabulary files under ``tmp``) + a scheduler, seeded."""
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(width, 2 * width), layers_per_block=1, sample_size=size,
                                in_channels=in_channels, out_channels=4, norm_num_groups=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=16, attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, norm_num_groups=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4)
    tokenizer = clip_tokenizer(tmp / "clip-vocab")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2,
        num_hidden_layers=2, max_position_embeddings=12, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    extra = {"clip_sample": False, "set_alpha_to_one": False} if scheduler == "DDIMScheduler" else {}
    sched = getattr(diffusers, scheduler)(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                          prediction_type=prediction, **extra)
    return dict(unet=unet.eval(), vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def stable_diffusion(tmp: Path, pipeline: str = "StableDiffusionPipeline", **kwargs):
    """A tiny ``StableDiffusionPipeline`` (or InstructPix2Pix: 8 input channels) in memory."""
    import diffusers

    in_channels = 8 if "Pix2Pix" in pipeline else 4
    return getattr(diffusers, pipeline)(**tiny_sd_components(in_channels=in_channels, tmp=tmp, **kwargs))


def save_sd(folder: Path, pipeline: str = "StableDiffusionPipeline", **kwargs) -> Path:
    stable_diffusion(folder.parent, pipeline, **kwargs).save_pretrained(folder)
    return folder


def tiny_musicgen(melody: bool = False, do_sample: bool = False, width: int = 16, layers: int = 2):
    """A tiny MusicGen (or MusicGen-Melody): T5 text encoder, 4-codebook decoder (``width``,
    ``layers``), EnCodec (seeded); ``(model, tokenizer)``."""
    import transformers
    from transformers import EncodecConfig, MusicgenDecoderConfig, T5Config

    torch.manual_seed(0)
    V, K = 32, 4
    tokenizer = word_tokenizer()
    text = T5Config(vocab_size=len(tokenizer), d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)
    audio = EncodecConfig(hidden_size=16, num_filters=2, codebook_size=V, codebook_dim=16,
                          upsampling_ratios=[8, 8], num_lstm_layers=1, sampling_rate=8000)
    name = "MusicgenMelody" if melody else "Musicgen"
    dec_cls = getattr(transformers, f"{name}DecoderConfig") if melody else MusicgenDecoderConfig
    decoder = dec_cls(vocab_size=V, hidden_size=width, num_hidden_layers=layers, num_attention_heads=2,
                      ffn_dim=2 * width,
                      num_codebooks=K, pad_token_id=V, bos_token_id=V, decoder_start_token_id=V,
                      max_position_embeddings=512, eos_token_id=None)
    cfg_cls = getattr(transformers, f"{name}Config")
    extra = {"num_chroma": 12, "chroma_length": 6} if melody else {}
    config = cfg_cls(text_encoder=text, audio_encoder=audio, decoder=decoder, **extra)
    model = getattr(transformers, f"{name}ForConditionalGeneration")(config).eval()
    with torch.no_grad():  # random init barely conditions: make text and melody states count
        model.text_encoder.encoder.final_layer_norm.weight.mul_(20)
        if melody:
            model.audio_enc_to_dec_proj.weight.mul_(20)
    gc = model.generation_config
    gc.decoder_start_token_id, gc.pad_token_id, gc.bos_token_id, gc.eos_token_id = V, V, V, None
    gc.do_sample, gc.guidance_scale, gc.max_length = do_sample, 3.0, 512
    if do_sample:
        gc.top_k = 8
    return model, tokenizer


def save_musicgen(folder: Path, melody: bool = False, do_sample: bool = False) -> Path:
    model, tokenizer = tiny_musicgen(melody, do_sample)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sd3(tmp: Path, width: int = 16, layers: int = 1, size: int = 8):
    """A tiny ``StableDiffusion3Pipeline`` in memory: two CLIP encoders with projections (no T5), an
    ``SD3Transformer2DModel`` (``width`` = heads × 8, ``layers``), an ``AutoencoderKL`` and
    ``FlowMatchEulerDiscreteScheduler``."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(tmp / "clip-vocab")
    transformer = SD3Transformer2DModel(sample_size=size, patch_size=1, in_channels=4, num_layers=layers,
                                        attention_head_dim=8, num_attention_heads=width // 8,
                                        joint_attention_dim=32, caption_projection_dim=width,
                                        pooled_projection_dim=32, out_channels=4)

    def clip():
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2,
            num_hidden_layers=1, max_position_embeddings=12, projection_dim=16,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id)).eval()

    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, norm_num_groups=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4, shift_factor=0.06, scaling_factor=1.5)
    return StableDiffusion3Pipeline(transformer=transformer.eval(),
                                    scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae.eval(),
                                    text_encoder=clip(), tokenizer=tokenizer, text_encoder_2=clip(),
                                    tokenizer_2=tokenizer, text_encoder_3=None, tokenizer_3=None)


def save_sd3(folder: Path, **kwargs) -> Path:
    sd3(folder.parent, **kwargs).save_pretrained(folder)
    return folder


def amused(tmp: Path, width: int = 16, layers: int = 1):
    """A tiny ``AmusedPipeline`` in memory: ``UVit2DModel`` (``width``, ``layers``) over an 8×8
    grid of an 8-code ``VQModel``."""
    from diffusers import AmusedPipeline, AmusedScheduler, UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer = clip_tokenizer(tmp / "clip-vocab")
    transformer = UVit2DModel(hidden_size=width, use_bias=False, hidden_dropout=0.0, cond_embed_dim=16,
                              micro_cond_encode_dim=2, micro_cond_embed_dim=10, encoder_hidden_size=16,
                              vocab_size=9, codebook_size=8, in_channels=16, block_out_channels=width,
                              num_res_blocks=1, downsample=True, upsample=True, block_num_heads=1,
                              num_hidden_layers=layers, num_attention_heads=1, attention_dropout=0.0,
                              intermediate_size=2 * width, layer_norm_eps=1e-06, ln_elementwise_affine=True,
                              sample_size=8)
    vqvae = VQModel(act_fn="silu", block_out_channels=[8], down_block_types=["DownEncoderBlock2D"],
                    in_channels=3, latent_channels=8, layers_per_block=1, norm_num_groups=8,
                    num_vq_embeddings=8, out_channels=3, sample_size=8, up_block_types=["UpDecoderBlock2D"],
                    mid_block_add_attention=False, lookup_from_codebook=True)
    text = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2,
        num_hidden_layers=2, max_position_embeddings=12, projection_dim=16,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)).eval()
    return AmusedPipeline(vqvae=vqvae.eval(), tokenizer=tokenizer, text_encoder=text,
                          transformer=transformer.eval(), scheduler=AmusedScheduler(mask_token_id=8))


def save_amused(folder: Path, **kwargs) -> Path:
    amused(folder.parent, **kwargs).save_pretrained(folder)
    return folder
