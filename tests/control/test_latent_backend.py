"""Control methods on a tiny *latent* diffusion model (MelAutoencoder + MelDiT over its latents),
through the Backend protocol: features read the decoded mel, masks land on latent frames,
inversion goes through the encoder, and latents are never thresholded."""

import pytest
import torch

from dittomusic.backends import Backend
from dittomusic.control import get_control, intensity_preset
from dittomusic.control.methods import DRAFT_INVERT_STEPS, Settings, draft_start, run_control
from dittomusic.control.optimize import OptimConfig
from dittomusic.generate import Pipeline, make_tags

from ..conftest import make_vocab

DOWN = 2  # mel frames per latent frame
FR = 96  # mel frames (48 latent frames)


@pytest.fixture(scope="module")
def latent_model_path(tmp_path_factory):
    """A tiny random latent model saved as a release file: denoiser + its embedded autoencoder."""
    from dittomusic.checkpoint import save_tensors
    from dittomusic.models import MelDiT, ModelConfig
    from dittomusic.models.autoencoder import AutoencoderConfig, MelAutoencoder
    from dittomusic.models.loading import AE_PREFIX

    torch.manual_seed(0)
    ae = MelAutoencoder(AutoencoderConfig(n_mels=160, latent_channels=4, channels=[16, 16], blocks=1, groups=4))
    cfg = ModelConfig.for_vocab(make_vocab(), n_mels=4, clip_frames=64, sigma_data=1.0, width=32, depth=2, heads=2,
                                patch_frames=1, denoise_head=0)
    net = MelDiT(cfg)
    for m in (net.patch_out, net.ada_out, *[b.ada for b in net.blocks]):
        torch.nn.init.normal_(m.weight, std=0.05)
    tensors = {**net.state_dict(), **{AE_PREFIX + k: v for k, v in ae.state_dict().items()}}
    path = tmp_path_factory.mktemp("latent") / "latent.safetensors"
    save_tensors(path, tensors, {"kind": "base", "model_config": cfg.to_dict(), "schedule": "cosine",
                                 "autoencoder": {"model_config": ae.cfg.to_dict()}})
    return path


@pytest.fixture(scope="module")
def pipe(latent_model_path):
    return Pipeline(latent_model_path, "cpu", "griffinlim")


@pytest.fixture(scope="module")
def tags(pipe):
    return make_tags(pipe.vocab, collection="chorale")


def reference_mel(pipe, frames=2 * FR, seed=9):
    with torch.no_grad():
        return pipe.backend.sample(pipe.backend.noise(1, frames, seed), None, steps=3)[0]


def test_a_latent_model_is_a_backend_in_mel_frames(pipe):
    b = pipe.backend
    assert isinstance(b, Backend) and b.is_latent and not b.thresholding
    assert b.mel_cfg.n_mels == 160 and b.clip_frames == 128 and b.frames_for(None) == 128
    frames = b.frames_for(1.5)
    assert frames % DOWN == 0 and abs(frames / b.mel_cfg.frame_rate - 1.5) < 0.05
    assert b.latent_shape(FR) == (4, FR // DOWN) and b.noise(2, FR, 0).shape == (2, 4, FR // DOWN)
    # a latent frame is masked only when all its mel frames are
    assert b.frames_to_latent(torch.arange(3, 10)).tolist() == [2, 3, 4]
    assert b.frames_to_latent(torch.arange(0, 10)).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(Exception, match="whole latent frames"):
        b.latent_shape(FR + 1)
    mel = b.sample(b.noise(1, FR, 0), None, steps=2)
    assert mel.shape == (1, 160, FR) and mel.min() >= -1 and mel.max() <= 1


def test_ditto_intensity_through_the_decoder(pipe, tags):
    ctrl = get_control("intensity", target=intensity_preset("linear-rise", FR, -40, -20), cfg=pipe.mel_cfg)
    s = Settings(steps=3, optim=OptimConfig(iters=4, lr=0.1))
    out = run_control(pipe, "ditto", ctrl, tags, seed=1, batch=2, settings=s)
    r = out.report
    assert out.x_T.shape == (2, 4, FR // DOWN) and out.mel.shape == (2, 160, FR)
    assert all(f < i for f, i in zip(r["final_loss"], r["initial_loss"]))
    # gradients reach x_T (through sampler and decoder) and nothing else
    b = pipe.backend
    x = b.noise(1, FR, 2).requires_grad_(True)
    ctrl.loss(b.sample(x, b.make_cond(tags, 1), steps=2, checkpoint=True)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in pipe.model.parameters())


def test_masks_land_on_latent_frames(pipe, tags):
    from dittomusic.control.methods.baselines import mask_hook, reference_latent

    b = pipe.backend
    ref = reference_mel(pipe)
    ctrl = get_control("outpaint", ref_mel=ref, overlap_s=0.3, frames=FR, cfg=pipe.mel_cfg)
    m = ctrl.masks
    lat = b.frames_to_latent(m.gen_idx)
    assert m.gen_idx.tolist() == list(range(len(m.gen_idx))) and lat.tolist() == list(range(len(m.gen_idx) // DOWN))
    # the reference is encoded on the clip's grid, so its latent frames are where the clip has them
    z = reference_latent(b, m)
    canvas = torch.full((1, 160, FR), -1.0)
    canvas[..., m.gen_idx] = ref[:, m.ref_idx]
    with torch.no_grad():
        assert torch.allclose(z, b.encode(canvas)[0][:, lat])
    # naive masking at the last step (no noise left) pins exactly those latent frames
    x = b.noise(1, FR, 0)
    hook = mask_hook(ctrl, b, x, 4, mix=1.0)
    y = hook(3, -1, x)
    keep = torch.ones(FR // DOWN, dtype=torch.bool)
    keep[lat] = False
    assert torch.allclose(y[0][:, lat], z) and torch.equal(y[0][:, keep], x[0][:, keep])
    # ditto_draft: the matched latent frames come from the inverted draft, the rest keep x_T's noise
    s = Settings(steps=3)
    encoded = []
    encode = b.encode
    b.encode = lambda mel: encoded.append(mel.shape) or encode(mel)
    try:
        start, inv = draft_start(b, ctrl, b.make_cond(tags, 1), x, s)
    finally:
        del b.encode
    assert (1, 160, FR) in encoded and inv.shape == x.shape  # the draft's mel is inverted through the encoder
    assert torch.equal(start[0][:, keep], x[0][:, keep]) and not torch.equal(start[0][:, lat], x[0][:, lat])


@pytest.mark.parametrize("task", ["outpaint", "inpaint"])
def test_painting_with_ditto_draft_and_freedom(pipe, tags, task, monkeypatch):
    import dittomusic.sampling.samplers as samplers

    ref = reference_mel(pipe)
    if task == "outpaint":
        ctrl = get_control("outpaint", ref_mel=ref, overlap_s=0.4, frames=FR, cfg=pipe.mel_cfg)
    else:
        ctrl = get_control("inpaint", ref_mel=ref, gap_start_s=1.0, gap_s=0.5, frames=FR, cfg=pipe.mel_cfg)
    s = Settings(steps=3, optim=OptimConfig(iters=3, lr=0.1))
    out = run_control(pipe, "ditto_draft", ctrl, tags, seed=3, settings=s, task=task)
    r = out.report
    assert r["final_loss"][0] < r["initial_loss"][0]
    assert r["model_calls"] == 3 * 3 * 2 + 3 + s.steps + DRAFT_INVERT_STEPS
    assert out.report["stitch_boundaries_s"] and "seam_ratio" in r["metrics"]
    # FreeDoM steers the decoded mel, on unthresholded latents
    seen = []
    post = samplers._postprocess_x0
    monkeypatch.setattr(samplers, "_postprocess_x0", lambda x0, th, *a: seen.append(th) or post(x0, th, *a))
    f = run_control(pipe, "freedom", ctrl, tags, seed=3, batch=1, settings=Settings(steps=6)).report["final_loss"]
    d = run_control(pipe, "default", ctrl, tags, seed=3, settings=Settings(steps=6)).report["final_loss"]
    assert seen and not any(seen)
    assert f[0] < d[0]
