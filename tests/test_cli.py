import json

from click.testing import CliRunner

from dittomusic.cli import cli


def test_help_lists_commands():
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0 and "dataset" in r.output and "demo" in r.output
    r = CliRunner().invoke(cli, ["dataset", "build", "--help"])
    assert r.exit_code == 0 and "--source" in r.output and "--small" in r.output


def test_bad_source_is_one_clear_line(tmp_path):
    r = CliRunner().invoke(cli, ["dataset", "build", "--out", str(tmp_path / "o"), "--source", str(tmp_path / "nope")])
    assert r.exit_code == 1
    assert "is not a directory" in r.output and "Traceback" not in r.output


def test_bad_soundfont_is_one_clear_line(tmp_path):
    r = CliRunner().invoke(cli, ["dataset", "build", "--out", str(tmp_path / "o"), "--small",
                                 "--soundfont", str(tmp_path / "x.sf2")])
    assert r.exit_code == 1 and "soundfont not found" in r.output and "Traceback" not in r.output


def test_stats_command(tiny_dataset, tmp_path):
    root, summary = tiny_dataset
    r = CliRunner().invoke(cli, ["dataset", "stats", str(root), "--png", str(tmp_path / "s.png"),
                                 "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert "hours per collection" in r.output and "hours per family" in r.output
    assert (tmp_path / "s.png").exists()
    assert json.loads((tmp_path / "s.json").read_text())["clips"] == summary["clips"]


def test_demo_writes_audio_and_png(tmp_path):
    import soundfile as sf

    from dittomusic.demo import run_demo

    res = run_demo(tmp_path / "demo", workers=1)
    audio, sr = sf.read(res["wav"])
    assert sr == 22050 and len(audio) > 6 * 22050 * 3 and abs(audio).max() > 0.01
    assert len(res["captions"]) == 6
    with open(res["png"], "rb") as f:
        assert f.read(4) == b"\x89PNG"


def test_atomic_outputs_get_umask_permissions(tmp_path):
    import os

    from dittomusic.utils import atomic_write_text

    import torch

    from dittomusic.checkpoint import save_tensors

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        save_tensors(tmp_path / "w.safetensors", {"a": torch.zeros(2)}, {})  # safetensors recreates the file
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
