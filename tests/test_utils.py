import torch

from dittomusic import utils


def test_machine_info_reports_what_a_wall_time_depends_on(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setattr(utils, "fast_bf16", lambda device: str(device) == "cpu")
        info = utils.machine_info()
        assert info["torch_threads"] == 1
        assert info["native_bf16_cpu"] is True
        monkeypatch.setattr(utils, "fast_bf16", lambda device: False)
        assert utils.machine_info()["native_bf16_cpu"] is False
    finally:
        torch.set_num_threads(before)
    assert isinstance(info["cpu"], str) and info["cpu"]
    assert info["cores"] >= 1
    assert info["torch"] == torch.__version__
    assert info["cuda"] is None or isinstance(info["cuda"], str)
