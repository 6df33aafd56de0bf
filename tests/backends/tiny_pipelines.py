"""Tiny random AudioLDM / MusicLDM pipelines built offline, the way diffusers' own pipeline tests
build theirs (small UNet2DConditionModel, AutoencoderKL, CLAP text encoder, SpeechT5HifiGan), and
saved to a folder with safetensors, as a downloaded model folder would be."""

from __future__ import annotations

import json
from pathlib import Path

import torch

N_MELS = 16  # vocoder model_in_dim = the VAE image's width
SAMPLE_RATE = 1600  # with hop 16: 100 mel frames a second, like the real 16 kHz / hop 160 models
UPSAMPLE = (4, 4)  # HiFi-GAN upsampling: hop 16


def _byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to 256+."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def tiny_tokenizer(folder: Path):
    """A byte-level BPE RobertaTokenizer with only the 256 byte symbols and no merges."""
    from transformers import RobertaTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for ch in _byte_symbols():
        vocab.setdefault(ch, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=24)


def tiny_components(family: str, tmp: Path) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import (ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig, ClapTextModelWithProjection,
                              SpeechT5HifiGan, SpeechT5HifiGanConfig)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(16, 32), class_embed_type="simple_projection", projection_class_embeddings_input_dim=16,
        class_embeddings_concat=True, norm_num_groups=8, attention_head_dim=4)
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, prediction_type="epsilon")
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, norm_num_groups=8,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4)
    torch.manual_seed(0)
    text_cfg = ClapTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=16, intermediate_size=32,
                              layer_norm_eps=1e-5, num_attention_heads=2, num_hidden_layers=1, pad_token_id=1,
                              vocab_size=300, projection_dim=16, max_position_embeddings=40)
    if family == "audioldm":
        text_encoder = ClapTextModelWithProjection(text_cfg)
    else:  # MusicLDM: the whole CLAP model, text features through get_text_features
        audio_cfg = ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=64, intermediate_size=37,
                                    layer_norm_eps=1e-5, depths=[2, 2], num_attention_heads=[2, 2],
                                    num_hidden_layers=2, hidden_size=192, patch_size=2, patch_stride=2,
                                    patch_embed_input_channels=4)
        text_encoder = ClapModel(ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(),
                                            projection_dim=16))
    tokenizer = tiny_tokenizer(tmp / "tok")
    torch.manual_seed(0)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=N_MELS, sampling_rate=SAMPLE_RATE, upsample_initial_channel=16, upsample_rates=list(UPSAMPLE),
        upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False))
    comps = dict(unet=unet, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                 vocoder=vocoder)
    if family == "musicldm":
        from transformers import ClapFeatureExtractor

        comps["feature_extractor"] = ClapFeatureExtractor()  # defaults: nothing to download
    return comps


def tiny_t5_tokenizer():
    """A T5 (Unigram) tokenizer over single letters, built from a vocab list: nothing to download."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces += [(c, -3.0) for c in letters] + [("\u2581" + c, -2.5) for c in letters]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=24)


def tiny_audioldm2_components(tmp: Path) -> dict:
    """AudioLDM2: CLAP and T5 text encoders, a projection into a GPT-2 that generates the 8 tokens
    the UNet cross-attends to, alongside the T5 states (AudioLDM2UNet2DConditionModel)."""
    from diffusers import AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5EncoderModel

    comps = tiny_components("musicldm", tmp)  # the same VAE, CLAP, tokenizer, vocoder, scheduler
    torch.manual_seed(0)
    comps["unet"] = AudioLDM2UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=([None, 16, 24], [None, 16, 24]), norm_num_groups=8, attention_head_dim=4)
    torch.manual_seed(0)
    comps["text_encoder_2"] = T5EncoderModel(T5Config(vocab_size=64, d_model=24, d_ff=32, d_kv=8, num_heads=2,
                                                      num_layers=1))
    comps["tokenizer_2"] = tiny_t5_tokenizer()
    torch.manual_seed(0)
    # diffusers 0.42 declares GPT2LMHeadModel (released folders name GPT2Model: the backend handles both)
    lm = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=1, vocab_size=64, n_ctx=64, n_positions=64,
                                    bos_token_id=0, eos_token_id=0))
    lm.config.max_new_tokens = 8
    comps["language_model"] = lm
    torch.manual_seed(0)
    comps["projection_model"] = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=24,
                                                         langauge_model_dim=16)
    return comps


def tiny_pipeline(family: str, tmp: Path):
    from diffusers import AudioLDM2Pipeline
    from diffusers.pipelines.deprecated.audioldm import AudioLDMPipeline
    from diffusers.pipelines.deprecated.musicldm import MusicLDMPipeline

    if family == "audioldm2":
        return AudioLDM2Pipeline(**tiny_audioldm2_components(tmp))
    cls = {"audioldm": AudioLDMPipeline, "musicldm": MusicLDMPipeline}[family]
    return cls(**tiny_components(family, tmp))


def save_tiny_pipeline(family: str, folder: Path) -> Path:
    """The tiny pipeline saved as a model folder (model_index.json + safetensors)."""
    folder = Path(folder)
    tiny_pipeline(family, folder.parent / (folder.name + "_tok")).save_pretrained(folder, safe_serialization=True)
    return folder
