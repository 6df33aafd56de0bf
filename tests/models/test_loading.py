"""Model loading: building without the random init gives the same network as building and copying."""

import pytest
import torch

from dittomusic.checkpoint import load_tensors, save_tensors
from dittomusic.errors import DittoError
from dittomusic.models import MelDiT, ModelConfig
from dittomusic.models.loading import load_model


def test_loaded_model_is_the_checkpoint_exactly(tiny_model_path):
    model, meta = load_model(tiny_model_path, "cpu")
    tensors, _ = load_tensors(tiny_model_path)
    ref = MelDiT(ModelConfig.from_dict(meta["model_config"]))
    ref.load_state_dict({k: v.float() for k, v in tensors.items()})
    ref.eval()
    assert set(model.state_dict()) == set(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert torch.equal(model.sigmas, ref.sigmas)  # non-persistent: computed, not loaded
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    torch.nn.Linear(2, 2)  # the random init is back for everyone else
    assert torch.nn.init.uniform_(torch.zeros(100)).abs().sum() > 0
    x, t = torch.randn(2, model.cfg.n_mels, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([10, 900])
    assert torch.equal(model(x, t), ref(x, t))


def test_a_checkpoint_missing_a_tensor_is_refused(tiny_model_path, tmp_path):
    tensors, meta = load_tensors(tiny_model_path)
    tensors.pop("patch_in.bias")
    save_tensors(tmp_path / "cut.safetensors", tensors, meta)
    with pytest.raises(DittoError, match="does not match its own model config"):
        load_model(tmp_path / "cut.safetensors", "cpu")


@pytest.mark.parametrize("edit, msg", [
    ({"width": 30}, "width = 30: expected a multiple of 2 x heads"),
    ({"heads": 0}, "heads = 0: expected an integer from 1"),
    ({"depth": "8"}, "depth = '8': expected an integer"),
    ({"sigma_data": float("nan")}, "sigma_data = nan: expected a positive number"),
    ({"prediction": "x0"}, "prediction = 'x0': expected v_prediction or epsilon"),
    ({"vocab": {"modes": ["major", "minor", "dorian"]}}, "vocab['modes'] = ['major', 'minor', 'dorian']: expected at "
                                                         "most 2 names (n_modes)"),
    ({"vocab": {"instruments": ["violin"]}}, "vocab['instruments'] = ['violin']: expected "),
    ({"clip_frames": 100}, "clip_frames = 100: expected a multiple of 8"),
])
def test_a_bad_model_config_names_the_field(tiny_model_path, tmp_path, edit, msg):
    tensors, meta = load_tensors(tiny_model_path)
    save_tensors(tmp_path / "m.safetensors", tensors, {**meta, "model_config": {**meta["model_config"], **edit}})
    with pytest.raises(DittoError, match="is not a usable dittomusic model") as e:
        load_model(tmp_path / "m.safetensors", "cpu")
    assert msg in str(e.value)
