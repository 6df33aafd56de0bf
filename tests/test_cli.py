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
    assert f"content fingerprint {summary['fingerprint']}" in r.output
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


# ------------------------------------------------------------------ start-up

HEAVY = ("torch", "torch._dynamo", "librosa", "scipy.signal", "numba", "matplotlib")


def _env() -> dict:
    """The environment for a new interpreter that imports this checkout."""
    import os
    from pathlib import Path

    import dittomusic

    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(dittomusic.__file__).parents[1]),
                                                         os.environ.get("PYTHONPATH", "")]))


def _fresh_process(code: str) -> str:
    """Run python code in a new interpreter; its stdout."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _imported_after(argv: list[str]) -> list[str]:
    return _fresh_process(
        "import sys; from click.testing import CliRunner; from dittomusic.cli import cli\n"
        f"r = CliRunner().invoke(cli, {argv!r})\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))").split()


def test_help_imports_nothing_heavy():
    assert _imported_after(["--help"]) == []
    assert _imported_after(["generate", "--help"]) == []


def test_generate_imports_only_torch(tiny_model_path, tmp_path):
    # librosa.filters (the mel basis), scipy.signal, numba and matplotlib (the PNG) once took
    # ~3.5 s of a cold `dittomusic generate`, torch._dynamo (torch's compiler) 3 s more if
    # reached by accident; the PNG is still written
    out = tmp_path / "g.wav"
    assert _imported_after(["generate", "--model", str(tiny_model_path), "--steps", "2", "--seconds", "1",
                            "--out", str(out)]) == ["torch"]
    assert out.exists() and out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_main_exits_with_the_commands_status(tiny_model_path, tmp_path):
    # main() skips the interpreter teardown after generate/control: the outputs and the exit
    # status must survive that
    out = tmp_path / "m.wav"
    code = ("import sys; sys.argv = ['dittomusic', 'generate', '--model', {m!r}, '--steps', '2', '--seconds', '1', "
            "'--no-png', '--out', {o!r}]; from dittomusic.cli import main; main()")
    printed = _fresh_process(code.format(m=str(tiny_model_path), o=str(out)))
    assert printed.splitlines()[-1] == str(out) and out.exists() and not out.with_suffix(".png").exists()
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code.format(m=str(tmp_path / "none.safetensors"), o=str(out))],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 1 and "checkpoint not found" in r.stderr and "Traceback" not in r.stderr


def test_channel_lists_are_checked():
    from click.testing import CliRunner

    from dittomusic.cli import cli

    for args in (["train", "--data", ".", "--out", "x", "--arch", "unet1d", "--channels", "a,b"],
                 ["autoencoder", "train", "--data", ".", "--out", "x", "--channels", "0,4"]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code != 0 and "comma-separated positive integers" in r.output, r.output
