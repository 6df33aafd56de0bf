import json
import math

import pytest
from click.testing import CliRunner

from dittomusic.cli import cli
from dittomusic.errors import DittoError
from dittomusic.eval.control import ControlEvalConfig


def test_eval_control_tables_plots_and_resume(tiny_dataset, tiny_model_path, clf, tmp_path):
    root, _ = tiny_dataset
    out = tmp_path / "ev"
    args = ["eval", "control", "--data", str(root), "--out", str(out), "--model", str(tiny_model_path),
            "--classifier", str(clf), "--tasks", "intensity,outpaint", "--targets", "2", "--steps", "2",
            "--iters", "1"]
    r = CliRunner().invoke(cli, args + ["--methods", "default,ditto"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "control_eval.json").read_text())
    assert set(res["runs"]) == {"intensity/default", "intensity/ditto", "outpaint/default", "outpaint/ditto"}
    for run in res["runs"].values():
        assert run["n_clips"] == 2 and math.isfinite(run["fad"]) and run["wall_per_clip_s"] > 0
    assert res["runs"]["intensity/ditto"]["iterations"] == 1
    assert all("seam_ratio" in it for it in res["runs"]["outpaint/ditto"]["items"])
    md = (out / "README.md").read_text()
    assert "Table 3 form" in md and "Table 1 form: outpainting" in md and "| ditto |" in md
    assert "K = ditto 1 (by task)" in md  # the iterations each method's runs recorded
    # the share of clips within the paper's DITTO-2 figure (3.3 dB² for intensity), counted from the items
    row = res["tables"]["intensity"]["ditto"]
    inside = sum(it["intensity_mse_db2"] <= 3.3 for it in res["runs"]["intensity/ditto"]["items"])
    assert row["within_paper_scale"] == [inside, 2] and f"({inside}/2 ≤ 3.3)" in md
    assert "within_paper_scale" not in res["tables"]["outpaint"]["ditto"]  # painting has no paper figure
    for p in ("png/intensity_0.png", "png/intensity_1.png", "png/outpaint_0.png"):
        assert (out / p).stat().st_size > 1000
    # a re-run with one more method only runs that method
    stamp = res["runs"]["intensity/ditto"]["wall_s"]
    r = CliRunner().invoke(cli, args + ["--methods", "default,ditto,naive", "--tasks", "outpaint"])
    assert r.exit_code == 0, r.output
    res2 = json.loads((out / "control_eval.json").read_text())
    assert "outpaint/naive" in res2["runs"] and res2["runs"]["intensity/ditto"]["wall_s"] == stamp
    # --rescore-seams re-stitches from the saved mels: with unchanged stitching it reproduces the scores
    runs = res2["runs"]
    original = runs["outpaint/ditto"]["items"][0]["seam_ratio"]
    runs["outpaint/ditto"]["items"][0]["seam_ratio"] = -1.0
    (out / "control_eval.json").write_text(json.dumps(res2))
    r = CliRunner().invoke(cli, args + ["--methods", "default,ditto", "--tasks", "outpaint", "--rescore-seams"])
    assert r.exit_code == 0, r.output
    res3 = json.loads((out / "control_eval.json").read_text())
    assert res3["runs"]["outpaint/ditto"]["items"][0]["seam_ratio"] == pytest.approx(original, rel=1e-6)
    assert res3["runs"]["outpaint/ditto"]["wall_s"] == runs["outpaint/ditto"]["wall_s"]  # not regenerated
    # every metric is measured on vocoded audio, so one folder never mixes vocoders
    from dittomusic.audio.mel import MelConfig
    from dittomusic.audio.neural import ConvNeXtVocoder, VocoderConfig
    from dittomusic.checkpoint import save_tensors

    net = ConvNeXtVocoder(VocoderConfig.for_mel(MelConfig(), dim=16, intermediate=32, layers=1, n_fft=512))
    voc = save_tensors(tmp_path / "v.safetensors", net.state_dict(), {"vocoder_config": net.cfg.to_dict()})
    r = CliRunner().invoke(cli, args + ["--methods", "default,ditto,freedom", "--vocoder", str(voc)])
    assert r.exit_code == 1 and "holds runs measured with the" in r.output and "Traceback" not in r.output
    assert "intensity/freedom" not in json.loads((out / "control_eval.json").read_text())["runs"]


def test_eval_control_rejects_bad_config(tmp_path):
    with pytest.raises(DittoError, match="unknown eval task"):
        ControlEvalConfig(data=".", out=str(tmp_path), tasks=("tempo",))
    for bad in (0, 1):  # one clip has no FAD
        with pytest.raises(DittoError, match="--targets must be 2-"):
            ControlEvalConfig(data=".", out=str(tmp_path), targets=bad)


def test_eval_folder_shared_by_processes(tmp_path):
    """Processes sharing --out: saves merge each other's runs, and a (task, method) another live
    process claimed is skipped, while a dead process's claim is void."""
    import os
    import subprocess
    import sys

    from dittomusic.eval.control import _claim, _save

    res = tmp_path / "control_eval.json"
    mine = {"runs": {"intensity/default": {"a": 1}}}
    _save(res, mine)
    _save(res, {"runs": {"melody/ditto": {"b": 2}}})  # another process, which never saw ours
    assert set(json.loads(res.read_text())["runs"]) == {"intensity/default", "melody/ditto"}
    assert _claim(tmp_path, "melody/ditto", mine) == 0 and mine["runs"]["melody/ditto"] == {"b": 2}
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "claims").mkdir()
        (tmp_path / "claims" / "structure_ditto").write_text(str(sleeper.pid))
        assert _claim(tmp_path, "structure/ditto", mine) == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    assert _claim(tmp_path, "structure/ditto", mine) is None  # its process is gone: ours now
    assert (tmp_path / "claims" / "structure_ditto").read_text() == str(os.getpid())
