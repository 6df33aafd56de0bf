"""The diffusers backend on tiny random AudioLDM / MusicLDM pipelines saved to a folder and loaded
back through open_backend("diffusers:DIR"): the Backend protocol, the pipeline's own sampling
reproduced, and DITTO steering it (loss falls, gradients reach x_T only, checkpointed memory flat
in the number of steps, seeds reproducible)."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded

from dittomusic.backends import Backend, open_backend, parse_backend  # noqa: E402
from dittomusic.errors import DittoError  # noqa: E402

from .tiny_pipelines import N_MELS, SAMPLE_RATE, save_tiny_pipeline  # noqa: E402

FR = 64  # mel frames: 0.64 s at 100 frames/s, latent [4, 32, 8]
PROMPT = "slow solo piano"


@pytest.fixture(scope="module", params=["audioldm", "musicldm", "audioldm2"])
def folder(request, tmp_path_factory):
    return save_tiny_pipeline(request.param, tmp_path_factory.mktemp(request.param) / "model")


@pytest.fixture(scope="module")
def backend(folder):
    return open_backend(f"diffusers:{folder}", device="cpu")


def _params(b):
    return [p for m in b.pipe.components.values() if isinstance(m, torch.nn.Module) for p in m.parameters()]


# ------------------------------------------------------------------ loading

def test_missing_weights_say_how_to_provide_a_local_folder(tmp_path):
    with pytest.raises(DittoError, match="huggingface-cli download .* --local-dir") as e:
        open_backend(f"diffusers:{tmp_path / 'nowhere'}", device="cpu")
    assert "diffusers:" in str(e.value) and "never downloads" in str(e.value)
    with pytest.raises(DittoError, match="no model_index.json"):
        open_backend(f"diffusers:{tmp_path}", device="cpu")
    with pytest.raises(DittoError, match="needs the model folder"):
        open_backend("diffusers", device="cpu")
    with pytest.raises(DittoError, match=r"unknown backend 'stable-audio'; choose from: dittomusic\[:MODEL.*; "
                                         r"diffusers:DIR \(a local AudioLDM"):
        open_backend("stable-audio:/x", device="cpu")
    with pytest.raises(DittoError, match="--model is for dittomusic's own models"):
        open_backend(f"diffusers:{tmp_path}", model="m.safetensors")
    with pytest.raises(DittoError, match="own HiFi-GAN"):
        open_backend(f"diffusers:{tmp_path}", vocoder="griffinlim")
    (tmp_path / "model_index.json").write_text('{"_class_name": "AudioLDMPipeline", "unet": ["diffusers", '
                                               '"UNet2DConditionModel"]}')
    with pytest.raises(DittoError, match="without downloading"):
        open_backend(f"diffusers:{tmp_path}", device="cpu")


def test_backend_specs_parse():
    assert parse_backend(None) == ("dittomusic", None) == parse_backend("default")
    assert parse_backend("diffusers:/a/b:c") == ("diffusers", "/a/b:c")
    assert parse_backend("dittomusic:m.safetensors") == ("dittomusic", "m.safetensors")
    assert parse_backend(" Diffusers:/x ") == ("diffusers", "/x") and parse_backend("diffusers") == ("diffusers", None)


def test_importing_the_backends_loads_neither_diffusers_nor_transformers():
    """The package imports every backend module to register it: the diffusers backend must import
    its libraries only when a pipeline is opened (cold start of every command)."""
    import subprocess
    import sys
    from pathlib import Path

    import dittomusic

    code = ("import sys, dittomusic.backends as b; assert 'diffusers' in b.available_backends(); "
            "print(' '.join(m for m in ('diffusers', 'transformers') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(dittomusic.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "", (r.stdout, r.stderr)


def _synthetic_music(sr: int, seconds: float, noise: float, rng) -> "np.ndarray":
    """Harmonic notes with decays over four octaves, a crescendo, and noise of relative level `noise`."""
    import numpy as np

    n = int(sr * seconds)
    y = np.zeros(n)
    pos = 0
    while pos < n:
        dur = int(sr * rng.uniform(0.15, 0.6))
        f0, amp, decay = 440 * 2 ** (rng.integers(-24, 13) / 12), rng.uniform(0.05, 0.3), rng.uniform(1, 6)
        t = np.arange(min(3 * dur, n - pos)) / sr
        tone = sum(0.6 ** h * np.sin(2 * np.pi * f0 * (h + 1) * t + rng.uniform(0, 6)) for h in range(6)
                   if f0 * (h + 1) < 0.49 * sr)
        y[pos:pos + len(t)] += amp * np.exp(-decay * t) * tone
        pos += dur
    ramp = np.linspace(0.2, 1.0, n)
    return (y * ramp + noise * rng.standard_normal(n) * ramp).astype(np.float32)


def test_mel_from_audio_is_the_pipelines_mel_on_the_backends_scale(backend):
    import numpy as np

    b = backend
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    mel = b.mel_from_audio(0.3 * np.sin(2 * np.pi * 400 * t), SAMPLE_RATE)
    assert mel.shape == (N_MELS, 1 + 2 * SAMPLE_RATE // 16) and mel.min() >= -1 and mel.max() <= 1
    from dittomusic.audio.mel import mel_frequencies

    centres = mel_frequencies(N_MELS + 2, 0, SAMPLE_RATE / 2)[1:-1]
    assert abs(centres[int(mel[:, 50].argmax())] - 400) < 60  # the tone's band is the loudest
    with pytest.raises(DittoError, match="shorter than half"):
        b.mel_from_audio(np.zeros(10), SAMPLE_RATE)


@pytest.mark.parametrize("noise", [0.0, 0.02, 0.1])
def test_the_pipelines_magnitude_mel_reads_as_the_waveforms_intensity(noise):
    """The calibration behind DB_OFFSET: AudioLDM's ln magnitude mel (16 kHz, n_fft 1024, hop 160,
    64 Slaney bands, reflect-padded STFT, 1e-5 floor) of synthetic music, mapped to dittomusic's
    scale, gives an intensity curve within 1.5 dB of the waveform's RMS curve (the metric)."""
    import numpy as np

    from dittomusic.backends.diffusers import ln_mel_to_unit, pipeline_mel_config
    from dittomusic.control.features import intensity_curve, intensity_curve_from_audio

    cfg = pipeline_mel_config(16000, 160, 64, 1024)
    assert (cfg.n_fft, cfg.fmax) == (1024, None)
    y = _synthetic_music(16000, 10.24, noise, np.random.default_rng(0))
    w = torch.from_numpy(y).double()
    mag = torch.stft(w, 1024, 160, window=torch.hann_window(1024, dtype=torch.float64), center=True,
                     pad_mode="reflect", return_complex=True).abs()
    ln = (torch.from_numpy(cfg.mel_basis()).double() @ mag).clamp_min(1e-5).log()
    curve = intensity_curve(ln_mel_to_unit(ln, cfg)[None].float(), cfg)[0].double().numpy()
    rms = intensity_curve_from_audio(y, 16000, cfg)
    k = min(len(curve), len(rms))
    d = curve[:k] - rms[:k]
    assert abs(d.mean()) < 1.5 and d.std() < 1.5, (d.mean(), d.std())


def test_prompts_come_from_the_clis_caption_and_refuse_tags(backend):
    from dittomusic.backends.diffusers import Prompt

    b = backend
    assert b.parse_prompt(caption=PROMPT) == Prompt(PROMPT) and b.parse_prompt(PROMPT, negative_prompt="noise") == \
        Prompt(PROMPT, "noise")
    assert b.parse_prompt() == Prompt(None) == b.parse_prompt(caption=PROMPT, unconditional=True)
    assert b.describe_prompt(Prompt(PROMPT, "noise")) == f"prompt: {PROMPT!r} (negative: 'noise')"
    assert b.describe_prompt(b.parse_prompt(unconditional=True)) == "prompt: unconditional"
    with pytest.raises(DittoError, match='conditioned on text: use --caption .*"folk song, violin".* '
                                         "--collection, --instruments"):
        b.parse_prompt(collection="folk song", instruments="violin")
    with pytest.raises(DittoError, match="needs a prompt"):
        b.parse_prompt(unconditional=True, negative_prompt="noise")
    # what parse_prompt returns is what make_cond takes: unconditional is the empty prompt only
    assert b.make_cond(b.parse_prompt(), 2).cond is None and b.make_cond(b.parse_prompt(PROMPT), 2).cond is not None


# ------------------------------------------------------------------ the protocol

def test_a_pipeline_folder_is_a_backend_with_its_own_mel_config(backend):
    b = backend
    assert isinstance(b, Backend) and b.family in ("audioldm", "musicldm", "audioldm2")
    cfg = b.mel_cfg  # read off the pipeline: vocoder rate, its upsampling = hop, its input bins
    assert (cfg.sample_rate, cfg.hop_length, cfg.n_mels) == (SAMPLE_RATE, 16, N_MELS)
    # the dB window: the pipelines' ln-mel floor 1e-5 (-100 dB) to ln-mel 4.6 (+40 dB), calibrated +14 dB
    assert cfg.db_min == pytest.approx(-100.0 + 14.0) and cfg.db_max == pytest.approx(40.0 + 14.0)
    assert b.prediction == "epsilon" and not b.thresholding and b.time_dim == -2
    assert torch.equal(b.schedule.alphas_cumprod, b.pipe.scheduler.alphas_cumprod.double())
    assert b.latent_shape(FR) == (4, FR // 2, N_MELS // 2) and b.frames_for(0.64) == FR
    assert b.frames_to_latent(torch.arange(3, 10)).tolist() == [2, 3, 4]
    with pytest.raises(DittoError, match="whole latent frames"):
        b.latent_shape(FR + 1)
    # every module frozen: DITTO's gradients can only reach x_T
    assert all(not p.requires_grad for p in _params(b))
    # the same seed gives the same x_T, another seed another
    assert torch.equal(b.noise(2, FR, 3), b.noise(2, FR, 3)) and not torch.equal(b.noise(1, FR, 3), b.noise(1, FR, 4))


def test_decode_encode_and_vocoder_shapes(backend):
    b = backend
    cond = b.make_cond(PROMPT, 2)
    with torch.no_grad():
        mel = b.sample(b.noise(2, FR, 0), cond, steps=3, guidance=2.5)
        assert mel.shape == (2, N_MELS, FR) and mel.min() >= -1 and mel.max() <= 1
        z = b.encode(mel)
        assert z.shape == (2, *b.latent_shape(FR))
        assert b.decode(z).shape == mel.shape
        audio = b.vocoder(mel)
    assert audio.shape == (2, FR * 16) and torch.isfinite(audio).all()
    # CFG: guidance 1 is the prompt alone, 0 the empty prompt alone; make_cond checks its batch
    x, t = b.noise(2, FR, 1), torch.full((2,), 500.0)
    with torch.no_grad():
        c1, c0, c3 = (b.model_fn(cond, g)(x, t) for g in (1.0, 0.0, 3.0))
    assert torch.allclose(c3, c0 + 3 * (c1 - c0), atol=1e-5)
    from dittomusic.backends.diffusers import Prompt

    neg = b.make_cond(Prompt(PROMPT, "noise"), 2)
    assert torch.equal(neg.cond["class_labels" if b.family != "audioldm2" else "encoder_hidden_states"],
                       cond.cond["class_labels" if b.family != "audioldm2" else "encoder_hidden_states"])
    assert not torch.equal(neg.uncond["encoder_hidden_states_1" if b.family == "audioldm2" else "class_labels"],
                           cond.uncond["encoder_hidden_states_1" if b.family == "audioldm2" else "class_labels"])
    with pytest.raises(DittoError, match="text prompt"):
        b.make_cond(object(), 2)
    with pytest.raises(DittoError, match="3 prompts for a batch of 2"):
        b.make_cond(["a", "b", "c"], 2)


@pytest.mark.parametrize("family", ["audioldm", "audioldm2"])  # MusicLDMPipeline.__call__ breaks on transformers 5
def test_sampling_reproduces_the_pipelines_own_call(family, tmp_path):
    """With the pipeline's scheduler set to what dittomusic's DDIM implements (trailing spacing,
    final alpha 1), pipe(prompt, latents=x_T) and vocoder(sample(x_T)) give the same audio."""
    from diffusers import DDIMScheduler

    b = open_backend(f"diffusers:{save_tiny_pipeline(family, tmp_path / 'm')}", device="cpu")
    p = b.pipe
    p.scheduler = DDIMScheduler.from_config(p.scheduler.config, timestep_spacing="trailing", set_alpha_to_one=True,
                                            steps_offset=0)
    x_T = b.noise(1, FR, 5)
    ref = p(PROMPT, latents=x_T.clone(), num_inference_steps=4, guidance_scale=2.5, audio_length_in_s=FR / 100,
            output_type="pt").audios
    with torch.no_grad():
        ours = b.vocoder(b.sample(x_T, b.make_cond(PROMPT, 1), steps=4, guidance=2.5))
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-4), (ours - ref).abs().max()


def test_audioldm2_with_a_plain_gpt2_model(tmp_path):
    """Released AudioLDM2 folders name a GPT2Model, which has no generation utilities in
    transformers 5: the backend's own 8-token continuation gives the same conditioning as the
    pipeline's cached loop on GPT2LMHeadModel."""
    from dittomusic.backends.diffusers import DiffusersBackend

    from .tiny_pipelines import tiny_pipeline

    pipe = tiny_pipeline("audioldm2", tmp_path)
    ref = DiffusersBackend(pipe, "cpu").make_cond([PROMPT, "drums"], 2, negative_prompt="noise")
    pipe2 = tiny_pipeline("audioldm2", tmp_path)
    pipe2.register_modules(language_model=pipe2.language_model.transformer)
    got = DiffusersBackend(pipe2, "cpu").make_cond([PROMPT, "drums"], 2, negative_prompt="noise")
    for k in ref.cond:
        assert torch.allclose(got.cond[k].float(), ref.cond[k].float(), atol=1e-6), k
        assert torch.allclose(got.uncond[k].float(), ref.uncond[k].float(), atol=1e-6), k


# ------------------------------------------------------------------ DITTO through the backend

def _intensity_control(b, cond, seed):
    """A +-4 dB ramp around where the clip already is (a target the tiny model can reach)."""
    from dittomusic.control import get_control, intensity_preset
    from dittomusic.control.features import intensity_curve

    with torch.no_grad():
        level = float(intensity_curve(b.sample(b.noise(1, FR, seed), cond, steps=4, guidance=2.5), b.mel_cfg).mean())
    return get_control("intensity", target=intensity_preset("linear-rise", FR, level - 4, level + 4, b.mel_cfg),
                       cfg=b.mel_cfg)


def test_ditto_intensity_loss_falls_and_is_reproducible(backend):
    from dittomusic.control.methods import Settings, run_control
    from dittomusic.control.optimize import OptimConfig

    b = backend
    ctrl = _intensity_control(b, b.make_cond(PROMPT, 1), seed=1)
    s = Settings(steps=4, guidance=2.5, optim=OptimConfig(iters=6, lr=0.1))
    out = run_control(b, "ditto", ctrl, PROMPT, seed=1, batch=1, settings=s)
    r = out.report
    assert r["best_loss"][0] < 0.7 * r["initial_loss"][0], r["loss_history"]
    assert out.mel.shape == (1, N_MELS, FR) and out.clip_audio.shape == (1, FR * 16) and out.sr == SAMPLE_RATE
    assert r["items"][0]["intensity_mse_db2"] >= 0  # the waveform metric runs at the backend's rate and hop
    again = run_control(b, "ditto", ctrl, PROMPT, seed=1, batch=1, settings=s)
    assert torch.equal(again.x_T, out.x_T) and torch.equal(again.mel, out.mel)
    assert again.report["loss_history"] == r["loss_history"]


def test_gradients_reach_only_x_T(backend):
    b = backend
    cond = b.make_cond(PROMPT, 1)
    ctrl = _intensity_control(b, cond, seed=2)
    for p in _params(b):
        p.grad = None
    x = b.noise(1, FR, 2).requires_grad_(True)
    ctrl.loss(b.sample(x, cond, steps=3, guidance=2.5, checkpoint=True)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in _params(b))


def _saved_bytes(b, cond, ctrl, steps: int, checkpoint: bool) -> int:
    """Bytes autograd keeps for the backward of one DITTO loss evaluation (distinct storages)."""
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    x = b.noise(1, FR, 0).requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = ctrl.loss(b.sample(x, cond, steps=steps, guidance=2.5, checkpoint=checkpoint)).sum()
    loss.backward()
    return sum(seen.values())


def test_checkpointing_keeps_memory_flat_in_the_number_of_steps(backend):
    b = backend
    cond = b.make_cond(PROMPT, 1)
    ctrl = _intensity_control(b, cond, seed=0)
    ck = {n: _saved_bytes(b, cond, ctrl, n, True) for n in (4, 16)}
    full = {n: _saved_bytes(b, cond, ctrl, n, False) for n in (4, 16)}
    latent = b.noise(1, FR, 0).numel() * 4
    # checkpointed: a step keeps only its input latent (and a few scalars); the decoder's and the
    # loss's activations are paid once, whatever the step count
    assert (ck[16] - ck[4]) / 12 <= 4 * latent, (ck, full)
    # without: every step keeps the UNet's activations
    assert (full[16] - full[4]) / 12 > 20 * latent, (ck, full)
    assert ck[16] < full[16] / 5


def test_ditto_outpainting_through_latent_masks(backend):
    """Painting: masks on mel frames land on the latent frames they fully cover (time axis -2);
    DITTO lowers the match loss, and naive masking writes the encoded reference there."""
    from dittomusic.control.methods import Settings, run_control
    from dittomusic.control.optimize import OptimConfig
    from dittomusic.control.tasks.painting import outpaint_control

    b = backend
    with torch.no_grad():
        # a reference 2 clips long, as a real one would be
        ref = b.sample(b.noise(1, 2 * FR, 7), b.make_cond(PROMPT, 1), steps=4, guidance=2.5)[0]
    ctrl = outpaint_control(ref, overlap_s=0.16, frames=FR, cfg=b.mel_cfg)
    s = Settings(steps=4, guidance=2.5, optim=OptimConfig(iters=5, lr=0.1))
    out = run_control(b, "ditto", ctrl, PROMPT, seed=3, settings=s)
    r = out.report
    assert r["best_loss"][0] < r["initial_loss"][0], r["loss_history"]
    assert out.audio[0].ndim == 1 and len(out.audio[0]) > out.clip_audio.shape[1]  # stitched to the reference
    naive = run_control(b, "naive", ctrl, PROMPT, seed=3, settings=s)
    plain = run_control(b, "default", ctrl, PROMPT, seed=3, settings=s)
    assert naive.report["final_loss"][0] < plain.report["final_loss"][0]


@pytest.mark.parametrize("task,options", [("melody", {"target_notes": "A4:0.32 C5:0.32"}),
                                          ("structure", {"target_pattern": "AB"})])
def test_ditto_melody_and_structure_read_the_backends_mel(backend, task, options):
    """Chroma and MFCC features on the pipeline's 16-bin, 1.6 kHz mel (not dittomusic's 160 bins)."""
    from dittomusic.control.methods import Settings, run_control
    from dittomusic.control.optimize import OptimConfig
    from dittomusic.control.tasks import TaskOptions, build_control

    b = backend
    ctrl = build_control(task, FR, TaskOptions(**options), b.mel_cfg)
    s = Settings(steps=3, guidance=2.5, optim=OptimConfig(iters=4, lr=0.1))
    r = run_control(b, "ditto", ctrl, PROMPT, seed=4, settings=s).report
    assert r["best_loss"][0] < r["initial_loss"][0], r["loss_history"]


def test_ditto2_is_refused_clearly(backend):
    from dittomusic.control.methods import Settings, run_control

    ctrl = _intensity_control(backend, backend.make_cond(PROMPT, 1), seed=0)
    with pytest.raises(DittoError, match="use --method ditto"):
        run_control(backend, "ditto2", ctrl, PROMPT, settings=Settings(steps=2))


def test_every_other_method_runs_through_the_backend(backend):
    """FreeDoM, masking baselines and DITTO from an inverted draft (encode + DDIM inversion)."""
    from dittomusic.control.methods import Settings, run_control
    from dittomusic.control.optimize import OptimConfig
    from dittomusic.control.tasks.painting import outpaint_control

    b = backend
    with torch.no_grad():
        ref = b.sample(b.noise(1, 2 * FR, 8), b.make_cond(PROMPT, 1), steps=3, guidance=2.5)[0]
    ctrl = outpaint_control(ref, overlap_s=0.16, frames=FR, cfg=b.mel_cfg)
    s = Settings(steps=3, guidance=2.5, optim=OptimConfig(iters=2, lr=0.1))
    for method in ("freedom", "multidiffusion", "multidiffusion50", "ditto_draft"):
        out = run_control(b, method, ctrl, PROMPT, seed=5, settings=s)
        assert out.mel.shape == (1, N_MELS, FR) and torch.isfinite(out.mel).all(), method
        assert out.x_T.shape == (1, *b.latent_shape(FR)), method
