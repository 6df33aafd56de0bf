"""The mel autoencoder's training (exact resume, budget stop) and latent diffusion on top of it."""

import pytest
import torch

from dittomusic.checkpoint import load_tensors
from dittomusic.errors import DittoError
from dittomusic.train.autoencoder import (CKPT, AETrainConfig, export_autoencoder, load_autoencoder,
                                          swap_autoencoder, train_autoencoder)

TINY_AE = {"latent_channels": 8, "channels": [32, 48], "blocks": 1, "groups": 8}


def _cfg(data, out, steps=6, **kw):
    kw = {"warmup": 2, "crop_frames": 64, **kw}
    return AETrainConfig(data=str(data), out=str(out), steps=steps, batch_size=4, log_every=1, val_every=3,
                         val_clips=4, model=TINY_AE, **kw)


def test_resume_is_exact_and_export_sets_the_latent_scale(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    train_autoencoder(_cfg(root, tmp_path / "ref", steps=6), progress=False)
    # stop after 3 steps via a tiny schedule-preserving split: run 3, then resume to 6
    half = tmp_path / "half"
    train_autoencoder(_cfg(root, half, steps=6, max_cpu_hours=1e-9), progress=False)  # stops at once
    assert load_tensors(half / CKPT)[1]["step"] <= 1
    train_autoencoder(_cfg(root, half, steps=6), progress=False)
    a, b = load_tensors(tmp_path / "ref" / CKPT)[0], load_tensors(half / CKPT)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)

    out = export_autoencoder(tmp_path / "ref", tmp_path / "ae.safetensors")
    ae, meta = load_autoencoder(out)
    assert meta["kind"] == "autoencoder"
    from dittomusic.data.dataset import MelDataset

    ds = MelDataset(root, "train", random_crop=False)
    z = ae.encode(torch.stack([ds[i]["mel"] for i in range(min(8, len(ds)))]))
    assert 0.5 < float(z.std()) < 2.0  # scaled to about unit std for the diffusion model
    with pytest.raises(DittoError, match="not a dittomusic autoencoder"):
        from dittomusic.checkpoint import save_tensors

        save_tensors(tmp_path / "x.safetensors", {"w": torch.zeros(1)}, {"kind": "base"})
        load_autoencoder(tmp_path / "x.safetensors")


def test_training_improves_reconstruction(tiny_dataset, tmp_path):
    from dittomusic.data.dataset import MelDataset

    root, _ = tiny_dataset
    ds = MelDataset(root, "train", random_crop=False)
    mel = torch.stack([ds[i]["mel"] for i in range(4)])[..., :128]
    torch.manual_seed(0)
    from dittomusic.models.autoencoder import AutoencoderConfig, MelAutoencoder

    before = MelAutoencoder(AutoencoderConfig(n_mels=mel.shape[1], **TINY_AE)).eval()
    train_autoencoder(_cfg(root, tmp_path / "r", steps=80, lr=3e-3), progress=False)
    after, _ = load_autoencoder(tmp_path / "r" / CKPT)
    with torch.no_grad():
        e0 = (before.decoder(before.posterior(mel)[0]) - mel).abs().mean()
        e1 = (after.decoder(after.posterior(mel)[0]) - mel).abs().mean()
    assert e1 < 0.6 * e0, (e0, e1)


def test_latent_diffusion_trains_exports_and_generates(tiny_dataset, tmp_path):
    from dittomusic.generate import Pipeline
    from dittomusic.models.loading import load_model
    from dittomusic.train.base import TrainConfig, export_release, train

    root, _ = tiny_dataset
    train_autoencoder(_cfg(root, tmp_path / "ae", steps=3), progress=False)
    ae_file = export_autoencoder(tmp_path / "ae", tmp_path / "ae.safetensors")
    cfg = TrainConfig(data=str(root), out=str(tmp_path / "ld"), steps=3, batch_size=4, warmup=1, log_every=1,
                      val_every=2, val_clips=4, autoencoder=str(ae_file), timesteps="lognormal",
                      model={"width": 32, "depth": 2, "heads": 2, "patch_frames": 1, "denoise_head": 0})
    train(cfg, progress=False)
    meta = load_tensors(tmp_path / "ld" / "checkpoint.safetensors")[1]
    assert meta["model_config"]["n_mels"] == 8 and meta["model_config"]["sigma_data"] == 1.0
    release = export_release(tmp_path / "ld", tmp_path / "latent.safetensors")
    model, rmeta = load_model(release)
    assert model.ae is not None and model.frames_per_step == 2 and model.mel_bins == 160
    pipe = Pipeline(release)
    assert pipe.mel_cfg.clip_frames == cfg_clip(root)
    mel, audio = pipe.generate(None, n=1, seconds=2.0, steps=3, seed=0)
    assert mel.shape[1] == 160 and mel.shape[2] % 2 == 0 and abs(mel.shape[2] / pipe.mel_cfg.frame_rate - 2.0) < 0.1
    assert mel.min() >= -1 and mel.max() <= 1 and audio.shape[-1] > 0
    mel2, _ = pipe.generate(None, n=1, seconds=2.0, steps=3, seed=0)
    assert torch.equal(mel, mel2)

    # run folders do not outlive a machine: training continues from the release, in its latent
    cont = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "cont"), "autoencoder": str(release),
                          "init": str(release)})
    train(cont, progress=False)
    info = load_tensors(export_release(tmp_path / "cont", tmp_path / "cont.safetensors"))[1]["train"]
    assert info["steps"] == 3 and info["continued_from"]["steps"] == 3
    assert info["total_cpu_hours"] == pytest.approx(info["cpu_hours"] + info["continued_from"]["cpu_hours"], abs=2e-3)


def cfg_clip(root):
    from dittomusic.data.dataset import MelDataset

    return MelDataset(root, "train").clip_frames


def test_lognormal_timesteps_favour_low_noise():
    from dittomusic.train.base import _draw_t

    g = torch.Generator().manual_seed(0)
    t_ln = _draw_t("lognormal", g, 4000, 1000, 0.3)
    t_u = _draw_t("uniform", g, 4000, 1000, 0.3)
    assert 0 <= t_ln.min() and t_ln.max() <= 999
    assert (t_ln < 200).float().mean() > 2 * (t_u < 200).float().mean()
    t_mix = _draw_t("mixed", g, 4000, 1000, 0.3)
    high = [(t >= 800).float().mean().item() for t in (t_ln, t_mix, t_u)]
    assert high[0] + 0.03 < high[1] < high[2] - 0.03  # between the two, on both ends
    assert (t_mix < 200).float().mean() > (t_u < 200).float().mean() + 0.1
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(_draw_t("mixed", g1, 64, 1000, 0.3), _draw_t("mixed", g2, 64, 1000, 0.3))


def test_adversarial_decoder_finetune_keeps_the_latent_space(tiny_dataset, tmp_path):
    """--init + --freeze-encoder + --adversarial: the encoder (so every latent a diffusion model learned)
    stays bit-identical, the decoder and discriminators move, resume is exact, and the export of a latent
    model accepts the fine-tuned decoder but refuses an autoencoder with another encoder."""
    from dittomusic.models.loading import AE_PREFIX
    from dittomusic.train.base import TrainConfig, export_release, train

    root, _ = tiny_dataset
    train_autoencoder(_cfg(root, tmp_path / "ae", steps=3), progress=False)
    base = export_autoencoder(tmp_path / "ae", tmp_path / "ae.safetensors")
    ft = dict(init=str(base), freeze_encoder=True, adversarial=True, disc_width=4, lr=3e-3)
    train_autoencoder(_cfg(root, tmp_path / "ft", steps=4, **ft), progress=False)
    half = tmp_path / "half"
    train_autoencoder(_cfg(root, half, steps=4, max_cpu_hours=1e-9, **ft), progress=False)
    train_autoencoder(_cfg(root, half, steps=4, **ft), progress=False)
    a, b = load_tensors(tmp_path / "ft" / CKPT)[0], load_tensors(half / CKPT)[0]
    assert any(k.startswith("disc.") for k in a) and all(torch.equal(a[k], b[k]) for k in a)

    tuned = export_autoencoder(tmp_path / "ft", tmp_path / "ft.safetensors")
    t0, m0 = load_tensors(base)
    t1, m1 = load_tensors(tuned)
    assert all(torch.equal(t0[k], t1[k]) for k in t0 if k.startswith("encoder."))
    assert any(not torch.equal(t0[k], t1[k]) for k in t0 if k.startswith("decoder."))
    assert m0["model_config"]["latent_scale"] == m1["model_config"]["latent_scale"]

    cfg = TrainConfig(data=str(root), out=str(tmp_path / "ld"), steps=2, batch_size=4, warmup=1, log_every=1,
                      val_every=2, val_clips=4, autoencoder=str(base), timesteps="lognormal",
                      model={"width": 32, "depth": 2, "heads": 2, "patch_frames": 1, "denoise_head": 0})
    train(cfg, progress=False)
    rel = load_tensors(export_release(tmp_path / "ld", tmp_path / "m.safetensors", autoencoder=tuned))[0]
    assert all(torch.equal(rel[AE_PREFIX + k], t1[k]) for k in t1)
    train_autoencoder(_cfg(root, tmp_path / "other", steps=2, seed=1), progress=False)
    other = export_autoencoder(tmp_path / "other", tmp_path / "other.safetensors")
    with pytest.raises(DittoError, match="different encoder"):
        export_release(tmp_path / "ld", tmp_path / "m2.safetensors", autoencoder=other)
    # the same swap on a release, without its run folder
    plain = export_release(tmp_path / "ld", tmp_path / "plain.safetensors")
    swapped, meta = load_tensors(swap_autoencoder(plain, tuned, tmp_path / "sw.safetensors"))
    assert all(torch.equal(swapped[k], rel[k]) for k in rel) and meta["autoencoder"]["swapped_from"] == str(tuned)
    with pytest.raises(DittoError, match="different encoder"):
        swap_autoencoder(plain, other, tmp_path / "sw2.safetensors")
    with pytest.raises(DittoError, match="not a latent model"):
        swap_autoencoder(tuned, tuned, tmp_path / "sw3.safetensors")
    with pytest.raises(DittoError, match="needs --init"):
        train_autoencoder(_cfg(root, tmp_path / "bad", steps=2, freeze_encoder=True), progress=False)


def test_post_net_finetune_trains_only_the_post_net(tiny_dataset, tmp_path):
    """--post-channels + --freeze-decoder: encoder and decoder stay bit-identical, the post-net moves,
    and the exported autoencoder decodes through it; without --freeze-encoder it is refused."""
    root, _ = tiny_dataset
    train_autoencoder(_cfg(root, tmp_path / "ae", steps=3), progress=False)
    base = export_autoencoder(tmp_path / "ae", tmp_path / "ae.safetensors")
    post = {**TINY_AE, "post_channels": 4}
    cfg = _cfg(root, tmp_path / "post", steps=4, init=str(base), freeze_encoder=True, freeze_decoder=True,
               adversarial=True, disc_width=4, lr=3e-3)
    cfg.model = post
    train_autoencoder(cfg, progress=False)
    tuned = export_autoencoder(tmp_path / "post", tmp_path / "post.safetensors")
    t0, t1 = load_tensors(base)[0], load_tensors(tuned)[0]
    assert all(torch.equal(t0[k], t1[k]) for k in t0)
    assert any(k.startswith("post.") and v.abs().sum() > 0 for k, v in t1.items() if k.startswith("post.out"))
    ae0, _ = load_autoencoder(base)
    ae1, _ = load_autoencoder(tuned)
    assert ae1.post is not None
    z = torch.randn(1, TINY_AE["latent_channels"], 16)
    assert not torch.equal(ae0.decode(z), ae1.decode(z))
    bad = _cfg(root, tmp_path / "bad", steps=2, init=str(base), freeze_decoder=True)
    bad.model = post
    with pytest.raises(DittoError, match="--freeze-decoder"):
        train_autoencoder(bad, progress=False)


def test_texture_gan_trains_only_the_texture_network(tiny_dataset, tmp_path):
    """--texture-gan: encoder, decoder and discriminator inputs stay the frozen init's, only the texture network
    moves (exact resume), the exported autoencoder decodes with seeded texture; missing options are refused."""
    root, _ = tiny_dataset
    train_autoencoder(_cfg(root, tmp_path / "ae", steps=3), progress=False)
    base = export_autoencoder(tmp_path / "ae", tmp_path / "ae.safetensors")
    kw = dict(init=str(base), freeze_encoder=True, adversarial=True, texture_gan=True, disc_width=4, lr=3e-3)
    tiny = {**TINY_AE, "texture_channels": 4}

    def cfg(out, **extra):
        c = _cfg(root, tmp_path / out, steps=4, **{**kw, **extra})
        c.model = tiny
        return c
    train_autoencoder(cfg("tex"), progress=False)
    train_autoencoder(cfg("half", max_cpu_hours=1e-9), progress=False)
    train_autoencoder(cfg("half"), progress=False)
    a, b = load_tensors(tmp_path / "tex" / CKPT)[0], load_tensors(tmp_path / "half" / CKPT)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    tuned = export_autoencoder(tmp_path / "tex", tmp_path / "tex.safetensors")
    t0, t1 = load_tensors(base)[0], load_tensors(tuned)[0]
    assert all(torch.equal(t0[k], t1[k]) for k in t0)
    assert t1["texture_net.out.weight"].abs().sum() > 0
    ae, _ = load_autoencoder(tuned)
    z = torch.randn(1, TINY_AE["latent_channels"], 16)
    assert not torch.equal(ae.decode(z), ae.decode(z, texture=False))
    with pytest.raises(DittoError, match="--texture-gan"):
        train_autoencoder(cfg("bad", freeze_encoder=False), progress=False)
    with pytest.raises(DittoError, match="only --texture-gan trains"):
        train_autoencoder(cfg("bad1", texture_gan=False, adversarial=False), progress=False)
    bad = cfg("bad2")
    bad.model = TINY_AE
    with pytest.raises(DittoError, match="--texture-channels"):
        train_autoencoder(bad, progress=False)


class _Smoother(torch.nn.Module):
    """A stand-in autoencoder whose 'decoder' is a 5-frame moving average: smoother than its input."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def encode(self, mel):
        return mel

    def decode(self, z, generator=None, texture=True):
        return torch.nn.functional.avg_pool1d(z, 5, 1, 2, count_include_pad=False)


def test_texture_calibration_restores_the_frame_to_frame_variance():
    from dittomusic.models.autoencoder import add_texture_noise
    from dittomusic.train.autoencoder import calibrate_texture

    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 6, 256)
    base = 0.3 * torch.sin(t + torch.arange(12).view(-1, 1)).expand(16, -1, -1)  # slow partial levels
    jitter = torch.linspace(0.005, 0.03, 12).view(1, -1, 1)  # 0.4-2.4 dB, more in high bins
    real = base + jitter * torch.randn(base.shape, generator=g)
    real[8:] -= 0.8  # quieter clips: another level bucket
    edges = [-0.25]
    std = calibrate_texture(_Smoother(), real, edges=edges, clip_db=100.0)
    assert std.shape == (12, 2) and std[-1, 0] > 3 * std[0, 0] and std[-1, 1] > 3 * std[0, 1]  # more in high bins
    smooth = _Smoother().decode(real)
    restored = add_texture_noise(smooth, std, edges, torch.Generator().manual_seed(1))
    var = lambda x: x.diff(dim=-1).square().mean(dim=(0, 2))  # noqa: E731
    assert torch.all(var(smooth) < 0.6 * var(real))
    assert torch.allclose(var(restored), var(real), rtol=0.15)


def test_texture_is_added_to_a_release_and_rejects_other_files(tiny_dataset, tmp_path):
    from click.testing import CliRunner

    from dittomusic.cli import cli

    root, _ = tiny_dataset
    train_autoencoder(_cfg(root, tmp_path / "ae", steps=3), progress=False)
    ae_file = export_autoencoder(tmp_path / "ae", tmp_path / "ae.safetensors")
    r = CliRunner().invoke(cli, ["autoencoder", "texture", str(ae_file), "--data", str(root),
                                  "--out", str(tmp_path / "tex.safetensors"), "--clips", "8"])
    assert r.exit_code == 0, r.output
    ae, meta = load_autoencoder(tmp_path / "tex.safetensors")
    assert meta["texture"]["clips"] == 8 and ae.texture_std.shape == (160, len(meta["model_config"]["texture_edges"]) + 1)
    assert ae.texture_std.max() > 0
    z = ae.encode(torch.zeros(1, 160, 64) - 0.5)
    assert not torch.equal(ae.decode(z), ae.decode(z, texture=False))
    r = CliRunner().invoke(cli, ["autoencoder", "texture", str(tmp_path / "ae" / CKPT), "--data", str(root),
                                  "--out", str(tmp_path / "x.safetensors"), "--clips", "8"])
    assert r.exit_code != 0 and "neither an exported autoencoder" in r.output
    assert not (tmp_path / "x.safetensors").exists()


def test_decoder_finetune_on_the_models_own_latents(tiny_dataset, tmp_path):
    """`autoencoder samples` writes a latent model's generated latents with its latent scale; a decoder
    fine-tune takes them as fakes (critic view, texture noise), keeps the encoder, resumes exactly, and
    refuses a pool from another latent space or options that need --adversarial or texture."""
    from dittomusic.checkpoint import save_tensors
    from dittomusic.train.autoencoder import add_texture, sample_latents
    from dittomusic.train.base import TrainConfig, export_release, train

    root, _ = tiny_dataset
    train_autoencoder(_cfg(root, tmp_path / "ae", steps=3), progress=False)
    plain = export_autoencoder(tmp_path / "ae", tmp_path / "ae.safetensors")
    tex, _ = add_texture(plain, root, tmp_path / "tex.safetensors", clips=8)
    cfg = TrainConfig(data=str(root), out=str(tmp_path / "ld"), steps=2, batch_size=4, warmup=1, log_every=1,
                      val_every=2, val_clips=4, autoencoder=str(tex), timesteps="lognormal",
                      model={"width": 32, "depth": 2, "heads": 2, "patch_frames": 1, "denoise_head": 0})
    train(cfg, progress=False)
    release = export_release(tmp_path / "ld", tmp_path / "m.safetensors")
    pool = sample_latents(release, root, tmp_path / "pool.safetensors", clips=3, steps=2, batch=2, progress=False)
    z, meta = load_tensors(pool)
    ae, ae_meta = load_autoencoder(tex)
    assert meta["kind"] == "latent_samples" and meta["latent_scale"] == ae.cfg.latent_scale
    assert z["latents"].shape[:2] == (3, TINY_AE["latent_channels"]) and torch.isfinite(z["latents"]).all()

    ft = dict(init=str(tex), freeze_encoder=True, adversarial=True, disc_width=4, lr=3e-3, disc_view="critic",
              adv_texture=True, gen_latents=str(pool), gen_batch=2)
    train_autoencoder(_cfg(root, tmp_path / "ft", steps=3, **ft), progress=False)
    half = tmp_path / "half"
    train_autoencoder(_cfg(root, half, steps=3, max_cpu_hours=1e-9, **ft), progress=False)
    train_autoencoder(_cfg(root, half, steps=3, **ft), progress=False)
    a, b = load_tensors(tmp_path / "ft" / CKPT)[0], load_tensors(half / CKPT)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a["model." + k].float(), v.float()) for k, v in ae.state_dict().items() if k.startswith("encoder."))
    # the generated fakes change what the decoder learns
    train_autoencoder(_cfg(root, tmp_path / "nogen", steps=3, **{**ft, "gen_latents": None}), progress=False)
    c = load_tensors(tmp_path / "nogen" / CKPT)[0]
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith("model.decoder."))

    save_tensors(tmp_path / "other.safetensors", z, {**meta, "latent_scale": meta["latent_scale"] * 2})
    with pytest.raises(DittoError, match="sample them from a model that works in this --init's latent"):
        train_autoencoder(_cfg(root, tmp_path / "bad", steps=2, **{**ft, "gen_latents": str(tmp_path / "other.safetensors")}),
                          progress=False)
    with pytest.raises(DittoError, match="add --adversarial"):
        train_autoencoder(_cfg(root, tmp_path / "bad2", steps=2, init=str(tex), freeze_encoder=True,
                               gen_latents=str(pool)), progress=False)
    with pytest.raises(DittoError, match="calibrated texture noise"):
        train_autoencoder(_cfg(root, tmp_path / "bad3", steps=2, **{**ft, "init": str(plain)}), progress=False)
    with pytest.raises(DittoError, match="not a diffusion model"):
        sample_latents(tex, root, tmp_path / "x.safetensors", clips=2, steps=1, progress=False)
