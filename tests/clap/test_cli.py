import json

from click.testing import CliRunner

from dittomusic.cli import cli

from .conftest import WordHashEncoder


def test_clap_group_is_registered():
    r = CliRunner().invoke(cli, ["clap", "--help"])
    assert r.exit_code == 0
    for cmd in ("captions", "train", "export", "eval", "card", "score"):
        assert cmd in r.output


def test_train_export_eval_card_through_the_cli(synth, tmp_path, monkeypatch):
    from dittomusic.clap import eval as clap_eval

    root, caps = synth
    run = tmp_path / "run"
    args = ["clap", "train", "--data", str(root), "--captions", str(caps), "--out", str(run), "--steps", "3",
            "--batch-size", "8", "--crop-frames", "48", "--warmup", "1", "--val-every", "3", "--val-clips", "8",
            "--channels", "16", "--layers", "1", "--heads", "2", "--embed-dim", "32"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["clap", "export", str(run), str(tmp_path / "clap.safetensors")])
    assert r.exit_code == 0, r.output
    # the real eval prompts MiniLM, which these word-hash captions were not embedded with: a clear refusal
    r = CliRunner().invoke(cli, ["clap", "eval", "--data", str(root), "--captions", str(caps), "--weights",
                                 str(tmp_path / "clap.safetensors"), "--out", str(tmp_path / "rep.json")])
    assert r.exit_code != 0 and "trained on word-hash-test sentence embeddings" in r.output
    monkeypatch.setattr("dittomusic.clap.text.SentenceEncoder", WordHashEncoder)
    r = CliRunner().invoke(cli, ["clap", "eval", "--data", str(root), "--captions", str(caps), "--weights",
                                 str(tmp_path / "clap.safetensors"), "--split", "val",
                                 "--out", str(tmp_path / "rep.json"),
                                 "--classifier", str(tmp_path / "clap.safetensors")])
    assert r.exit_code != 0 and "not a dittomusic tag classifier" in r.output
    rep = clap_eval.evaluate_clap(tmp_path / "clap.safetensors", root, caps, classifier=False,
                                  encoder=WordHashEncoder(), split="val", progress=False)
    (tmp_path / "rep.json").write_text(json.dumps(rep))
    r = CliRunner().invoke(cli, ["clap", "card", "--report", str(tmp_path / "rep.json"), "--loss-png",
                                 str(run / "loss.png"), "--out", str(tmp_path / "card")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "card" / "README.md").read_text()
    assert "R@10" in md and "x chance" in md and "held-out phrasings" in md
    assert (tmp_path / "card" / "loss.png").exists()
    (tmp_path / "bad.json").write_text("{}")
    r = CliRunner().invoke(cli, ["clap", "card", "--report", str(tmp_path / "bad.json")])
    assert r.exit_code != 0 and "not a report of `dittomusic clap eval`" in r.output


def test_score_command_with_a_transformers_clap(tmp_path):
    import numpy as np

    from dittomusic.audio.io import save_wav

    from .test_scorer import _tiny_hf_clap

    folder = _tiny_hf_clap(tmp_path / "tiny")
    t = np.arange(22050) / 22050
    save_wav(tmp_path / "a.wav", 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32))
    r = CliRunner().invoke(cli, ["clap", "score", "--clap", str(folder), "--prompt", "organ", "--prompt", "a jig",
                                 str(tmp_path / "a.wav")])
    assert r.exit_code == 0, r.output
    assert len(r.output.strip().splitlines()) == 2 and "organ" in r.output
    r = CliRunner().invoke(cli, ["clap", "score", "--clap", str(tmp_path / "missing"), "--prompt", "x",
                                 str(tmp_path / "a.wav")])
    assert r.exit_code != 0 and "CLAP not found" in r.output
