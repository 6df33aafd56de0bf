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


def test_card_describes_a_latent_model_and_the_bakeoff():
    from dittomusic.eval.card import _model_lines, bakeoff_markdown, bakeoff_row

    mc = {"arch": "mel_dit", "n_mels": 64, "patch_frames": 1, "width": 256, "depth": 8, "heads": 4,
          "prediction": "v_prediction", "sigma_data": 1.0, "clip_frames": 128}
    ae = {"model_config": {"n_mels": 160, "channels": [128, 192, 256], "blocks": 2, "latent_channels": 64,
                           "latent_scale": 0.9}, "train": {"steps": 10000, "cpu_hours": 1.2}}
    text = "\n".join(_model_lines({"model_config": mc, "autoencoder": ae}, 12_000_000))
    assert "latent diffusion" in text and "1/4 of the frame rate" in text and "512 mel frames" in text
    assert "latent" not in "\n".join(_model_lines({"model_config": {**mc, "n_mels": 160, "patch_frames": 4,
                                                                    "clip_frames": 512}}, None))
    rep = {"model": "m", "model_train": {"steps": 5, "cpu_hours": 0.5}, "accuracy_ratio": 0.8,
           "fad_ratio_generated_over_validation": 2.0, "settings": {"n": 60},
           "realism": {"c2st": {"accuracy": 0.9}, "texture_fad": 30.0,
                       "ratio": {"grain": 1.1, "flatness_mean": 2.0, "prominence_db_mean": 0.9, "stability_mean": 1.0}}}
    table = bakeoff_markdown([bakeoff_row(rep, "latent"), bakeoff_row({**rep, "realism": None}, "old")])
    assert "| latent | 5 | 0.5 | 0.9 | 1.1 | 2.0 |" in table and "| old | 5 | 0.5 | – |" in table


def test_card_bakeoff_option_refuses_files_that_are_not_eval_reports(tmp_path):
    import json

    import pytest

    from dittomusic.cli.evaluate import _bakeoff_reports
    from dittomusic.errors import DittoError

    good = tmp_path / "eval_latent.json"
    good.write_text(json.dumps({"accuracy_ratio": 0.5}))
    assert _bakeoff_reports([str(good)]) == [("latent", {"accuracy_ratio": 0.5})]
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(DittoError, match="not JSON"):
        _bakeoff_reports([str(tmp_path / "x.json")])
    (tmp_path / "y.json").write_text("[1, 2]")
    with pytest.raises(DittoError, match="not a report"):
        _bakeoff_reports([str(tmp_path / "y.json")])


def test_card_speed_section_names_the_vocoder_and_its_side_by_side_rival():
    from dittomusic.eval.card import speed_markdown

    sp = {"clip_seconds": 5.944, "vocoder": "NeuralVocoder", "vocoder_s": 0.25, "default": "dpmpp_2m-20-cfg2",
          "default_total_s": 0.9, "realtime_factor": 6.6, "cpu_count": 2,
          "samplers": {"dpmpp_2m-20-cfg2": {"sampling_s": 0.65}},
          "vocoders_s": {"NeuralVocoder": 0.25, "GriffinLimVocoder": 0.33}}
    text = "\n".join(speed_markdown(sp))
    assert "0.65 s to sample plus 0.25 s of the vocoder (neural), 0.90 s" in text
    assert "Griffin-Lim in the same run: 0.33 s." in text and text.count("in the same run") == 1
    old = {k: v for k, v in sp.items() if k not in ("vocoders_s", "default")}
    old["samplers"] = {"ddim-20-cfg3": {"sampling_s": 0.7}}
    assert "(ddim-20-cfg3) takes 0.70 s" in "\n".join(speed_markdown({**old, "vocoder": "GriffinLimVocoder"}))
    bf = "\n".join(speed_markdown({**sp, "precision": "bf16", "default_fp32_total_s": 1.06}))
    assert "(dpmpp_2m-20-cfg2, bf16) takes 0.65 s" in bf and "The same in fp32: 1.06 s in all." in bf
    assert "The same in fp32" not in "\n".join(speed_markdown({**sp, "precision": "fp32", "default_fp32_total_s": 0.9}))
