import json
import math

from click.testing import CliRunner

from dittomusic.cli import cli
from dittomusic.eval.classifier import train_classifier


def test_eval_model_report(tiny_dataset, tiny_model_path, tmp_path):
    root, _ = tiny_dataset
    clf = tmp_path / "clf.safetensors"
    train_classifier(root, clf, epochs=1, batch_size=8, progress=False)
    out = tmp_path / "report.json"
    r = CliRunner().invoke(cli, ["eval", "model", "--model", str(tiny_model_path), "--data", str(root),
                                 "--classifier", str(clf), "--per-collection", "2", "--steps", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    n = rep["settings"]["n"]
    assert n == rep["real"]["n"] == rep["generated"]["n"] and n >= 2
    for k in ("generated", "validation", "unconditional"):
        assert math.isfinite(rep["fad"][k]) and rep["fad"][k] >= -1e-6
    assert 0 <= rep["generated"]["collection_accuracy"] <= 1
    assert "| **all** |" in out.with_suffix(".md").read_text()
