import json
import subprocess
import sys
from pathlib import Path

import torch
from click.testing import CliRunner

from dittomusic.audio.mel import MelConfig
from dittomusic.audio.neural import ConvNeXtVocoder, VocoderConfig
from dittomusic.checkpoint import save_tensors
from dittomusic.cli import cli
from dittomusic.data.dataset import read_clips
from dittomusic.eval.vocoder import evaluate_vocoders, pick_test_clips, report_markdown

from ..conftest import TINY_VOCODER

ROOT = Path(__file__).resolve().parents[2]


def _weights(tmp_path):
    torch.manual_seed(0)
    net = ConvNeXtVocoder(VocoderConfig.for_mel(MelConfig(), **TINY_VOCODER))
    path = tmp_path / "vocoder.safetensors"
    save_tensors(path, {k: v.half() for k, v in net.state_dict().items()},
                 {"kind": "vocoder", "vocoder_config": net.cfg.to_dict(),
                  "train": {"steps": 3, "cpu_hours": 0.001, "train_hours": 0.02}, "train_config": {"lr": 5e-4}})
    return path


def test_test_clips_come_with_their_original_audio(tiny_dataset):
    root, _ = tiny_dataset
    clips = pick_test_clips(root, 3)
    test_ids = {r["clip_id"] for r in read_clips(root, "test")}
    assert len(clips) == 3 and all(c["row"]["clip_id"] in test_ids for c in clips)
    assert len({c["row"]["collection"] for c in clips}) == 3  # round-robin over collections
    for c in clips:
        assert c["mel"].shape == (160, 512) and c["audio"].shape == (511 * 256,)
    again = pick_test_clips(root, 1, clip_ids=[clips[1]["row"]["clip_id"]])[0]
    assert torch.equal(again["audio"], clips[1]["audio"])


def test_benchmark_compares_both_vocoders_on_the_same_clips(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    report, example = evaluate_vocoders(root, _weights(tmp_path), clips=2, progress=False)
    gl, nn_ = report["vocoders"]["griffinlim"], report["vocoders"]["neural"]
    assert report["clips"] == 2 and set(example) == {"original", "griffinlim", "neural"}
    # an untrained vocoder is far worse than Griffin-Lim: the comparison can fail
    assert nn_["mel_spectral_convergence"] > gl["mel_spectral_convergence"]
    assert report["targets"]["distances_2x_better"] is False
    assert 0 < gl["mel_spectral_convergence"] < 0.3 and gl["seconds_per_clip"] > 0
    md = report_markdown(report)
    assert "| Griffin-Lim / neural |" in md and "mel spectral convergence" in md and "**not met**" in md


def test_card_command_writes_readme_and_figures(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    weights = _weights(tmp_path)
    bench = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vocoder.py"), "--data", str(root), "--weights",
                            str(weights), "--clips", "2", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert bench.returncode == 0, bench.stderr[-2000:]
    report = json.loads(bench.stdout)
    (tmp_path / "bench.json").write_text(bench.stdout)
    out = tmp_path / "card"
    r = CliRunner().invoke(cli, ["vocoder", "card", "--data", str(root), "--weights", str(weights), "--report",
                                 str(tmp_path / "bench.json"), "--out", str(out), "--note", "a sanity note"])
    assert r.exit_code == 0, r.output
    md = (out / "README.md").read_text()
    assert "Griffin-Lim" in md and "a sanity note" in md and "0.02 h of train pieces" in md
    assert f"{report['vocoders']['neural']['mrstft_distance']:.3f}" in md
    assert (out / "spectrograms.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "report.json").read_text())["clips"] == 2
