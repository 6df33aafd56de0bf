"""The benchmark helpers that turn saved runs into the numbers the README quotes."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(ditto, d2, s_ditto, s_d2, task="structure"):
    metric = {"structure": "structure_mse", "melody": "melody_accuracy_pct"}[task]
    rows = {"ditto": {"per_target": ditto, "wall_per_clip_s": s_ditto, metric: float(np.mean(ditto))},
            "ditto2": {"per_target": d2, "wall_per_clip_s": s_d2, metric: float(np.mean(d2))}}
    # what ditto2_speed.py prints: a one-line progress record per task, then the indented report
    return json.dumps({task: rows}) + "\n" + json.dumps({"settings": {}, "tasks": {task: rows}}, indent=1)


def test_pool_counts_every_clip_of_every_run_once(tmp_path):
    pool = _load("ditto2_pool")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(_run([1.0, 4.0], [2.0, 1.0], 100.0, 5.0))
    b.write_text(_run([3.0, 2.0], [3.0, 5.0], 300.0, 15.0))
    out = pool.pool([pool.load_run(str(a)), pool.load_run(str(b))])["structure"]
    d, d2 = out["rows"]["ditto"], out["rows"]["ditto2"]
    assert out["runs"] == 2 and d["clips"] == d2["clips"] == 4
    assert d["mean"] == pytest.approx(2.5) and d2["mean"] == pytest.approx(2.75)
    assert d2["median"] == pytest.approx(2.5)
    assert d2["clips_as_good_as_ditto"] == 2  # 1 <= 4 and 3 <= 3, clip against its own DITTO clip
    assert d2["speedup"] == pytest.approx(200.0 / 10.0) and d2["mean_as_good_as_ditto"] is False


def test_pool_compares_melody_upwards(tmp_path):
    pool = _load("ditto2_pool")
    p = tmp_path / "m.json"
    p.write_text(_run([90.0, 95.0], [92.0, 84.0], 10.0, 1.0, task="melody"))
    rows = pool.pool([pool.load_run(str(p))])["melody"]["rows"]
    assert rows["ditto2"]["clips_as_good_as_ditto"] == 1 and rows["ditto2"]["mean_as_good_as_ditto"] is False
    # the paper's figure, 85 % and up: 92 counts, 84 does not
    assert rows["ditto2"]["within_paper_scale"] == 1 and rows["ditto"]["within_paper_scale"] == 2


def test_pool_rejects_a_file_that_is_not_a_report(tmp_path):
    pool = _load("ditto2_pool")
    p = tmp_path / "x.json"
    p.write_text('{"not": "a report"}')
    with pytest.raises(SystemExit, match="no ditto2_speed.py report"):
        pool.load_run(str(p))


def test_bakeoff_table_reads_eval_reports(tmp_path):
    bake = _load("base_bakeoff")
    rep = {"model": "m.safetensors", "model_train": {"steps": 700, "cpu_hours": 0.5}, "settings": {"n": 120},
           "accuracy_ratio": 0.81234, "fad_ratio_generated_over_validation": 2.345,
           "realism": {"ratio": {"grain": 1.21, "flatness_mean": 3.456, "prominence_db_mean": 0.5,
                                 "stability_mean": 0.9},
                       "texture_fad": 12.3, "c2st": {"accuracy": 0.9876}}}
    r = bake.row(rep, "latent")
    assert r["c2st"] == 0.988 and r["flatness_ratio"] == 3.46 and r["accuracy_ratio"] == 0.812
    md = bake.markdown([r, bake.row({**rep, "realism": None}, "old")])
    assert md.count("\n") == 3 and "| latent | 700 | 0.5 | 0.988 |" in md and "| old | 700 | 0.5 | – |" in md


def test_cold_start_summary_is_median_and_min_against_the_target():
    cold = _load("cold_start")
    row = cold.summarize([3.0, 1.0, 2.0], [0.5, 0.7, 0.6], target=2.0)
    assert row["wall_s"] == {"median": 2.0, "min": 1.0, "runs": [3.0, 1.0, 2.0]}
    assert row["cpu_s"] == {"median": 0.6, "min": 0.5} and row["meets_target"] is True
    assert cold.summarize([2.5], [1.0], target=2.0)["meets_target"] is False
    assert "target_s" not in cold.summarize([1.0], [1.0], target=None)


def test_cold_start_times_whole_processes(capsys):
    cold = _load("cold_start")
    rep = cold.main(["--runs", "2", "--warmup", "0", "--commands", "help"])
    assert json.loads(capsys.readouterr().out) == rep
    row = rep["commands"]["help"]
    assert row["argv"] == "dittomusic --help" and len(row["wall_s"]["runs"]) == 2
    assert 0 < row["wall_s"]["min"] <= row["wall_s"]["median"] and row["cpu_s"]["min"] > 0
    assert rep["runs"] == 2 and set(rep["load_avg_1m"]) == {"before", "after"}


def test_cold_start_stops_on_a_failing_command(tmp_path):
    cold = _load("cold_start")
    with pytest.raises(SystemExit, match=r"failed \(1\):\nError: checkpoint not found"):
        cold.main(["--runs", "1", "--warmup", "0", "--commands", "generate", "--model", str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="unknown command fly"):
        cold.main(["--commands", "help,fly"])


def test_paper_baselines_ms2c_counts_steps_to_threshold():
    mod = _load("paper_baselines")
    hist = [[9.0, 9.0], [3.0, 8.0], [1.5, 7.0], [1.0, 6.0]]
    steps, reached = mod.ms2c(hist, 2.0)
    assert steps == [2, 4] and reached == [True, False]  # a clip that never gets there counts K + 1


def test_app_latency_sorts_checkpoint_loads_by_phase():
    app = _load("app_latency")
    loads = [(1.0, 0.5, "/a/base.safetensors"), (5.0, 0.2, "/a/student_cd.safetensors"),
             (5.5, 0.3, "/a/base_v1.safetensors"), (6.0, 0.2, "/a/student_cd.safetensors")]
    s = app.load_summary(loads, interactive_at=4.0, later_jobs_at=7.0)
    assert s["startup"] == ["base.safetensors"] and s["startup_load_s"] == 0.5 and s["later_jobs"] == []
    assert s["to_first_job_done"] == ["student_cd.safetensors", "base_v1.safetensors", "student_cd.safetensors"]
    assert s["loaded_once"] and s["files_read_twice"] == ["student_cd.safetensors"]
    assert not app.load_summary(loads + [(9.0, 0.1, "/a/student_cd.safetensors")], 4.0, 7.0)["loaded_once"]
    assert app.served_in_order([11, 12, 13], [11, 12, 13]) and not app.served_in_order([11, 12, 13], [11, 13, 12])


def test_app_latency_measures_a_process_tree():
    import os

    app = _load("app_latency")
    pid = os.getpid()
    assert app.tree_pids(pid)[0] == pid and app.cpu_s(pid) > 0
    before = app.tree_rss_mb(pid)
    # A child's fresh pages: memory freed earlier in this process may be reused without growing its RSS.
    code = "import numpy as np, time; b = np.ones(25 << 20); time.sleep(0.6)"  # 200 MB, written
    with app.RssSampler(pid) as mem:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert mem.peak_mb >= before + 180


def test_convergence_reads_the_first_decode_within_a_tolerance():
    first_meet = _load("ditto2_convergence").first_meet
    history = [[0, [9.0, 5.0]], [5, [3.0, 6.0]], [10, [4.0, 0.5]]]  # [iteration, per-clip decoded loss]
    assert first_meet(history, 0, 3.5) == (5, 2, 3.0)
    assert first_meet(history, 1, 5.0) == (0, 1, 5.0)  # the unsteered decode already meets it
    assert first_meet(history, 0, 1.0) == (10, 3, 3.0)  # never met: all K, the best decode seen


def _text_eval_folder(path, prompts, rows, mel_shape, seed):
    path.mkdir()
    rng = np.random.default_rng(seed)
    json.dump({"config": {"real_clips": 120}, "prompts": [{"text": t} for t in prompts],
               "rows": {r: {"realism": {"texture_fad": 1.0}} for r in rows}}, (path / "text_eval.json").open("w"))
    for r in rows:
        np.save(path / f"mels_{r}.npy", rng.uniform(-1, 0.5, (len(prompts), *mel_shape)).astype(np.float32))


def test_text_realism_ci_pairs_rows_across_eval_folders(tiny_dataset, tmp_path, monkeypatch, capsys):
    from dittomusic.data.dataset import MelDataset

    root, _ = tiny_dataset
    shape = tuple(MelDataset(root, "test", random_crop=False)[0]["mel"].shape)
    prompts = [f"prompt {i}" for i in range(6)]
    _text_eval_folder(tmp_path / "full", prompts, ["b", "c"], shape, 0)
    _text_eval_folder(tmp_path / "variant", prompts, ["c"], shape, 1)
    ci = _load("text_realism_ci")

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["text_realism_ci", "--data", str(root), "--boot", "20", *args])
        ci.main()
        return json.loads(capsys.readouterr().out)

    own = run("--eval", str(tmp_path / "full"))
    cross = run("--eval", str(tmp_path / "variant"), "--against-eval", str(tmp_path / "full"))
    assert own["clips"] == cross["clips"] == 6 and own["texture_fad"]["b"] == pytest.approx(cross["texture_fad"]["b"])
    assert own["texture_fad"]["c"] != pytest.approx(cross["texture_fad"]["c"])  # c from the variant's folder
    assert cross["ratio"] == pytest.approx(cross["texture_fad"]["c"] / cross["texture_fad"]["b"])
    _text_eval_folder(tmp_path / "other", [p + "!" for p in prompts], ["c"], shape, 2)
    with pytest.raises(SystemExit, match="other prompts"):
        run("--eval", str(tmp_path / "other"), "--against-eval", str(tmp_path / "full"))


def test_uncond_steps_compares_each_row_with_its_conditionings_20_steps(tiny_dataset, monkeypatch, capsys):
    root, _ = tiny_dataset
    bench = _load("uncond_steps")
    monkeypatch.setattr(sys, "argv", ["uncond_steps", "--data", str(root), "--clips", "3", "--steps", "2",
                                      "--tagged-steps", "2", "--students", "ctd", "--batch", "2", "--device", "cpu"])
    bench.main()
    import torch

    assert torch.is_grad_enabled()  # it runs in-process: no global switch may leak into later tests
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["conditioning"], r["steps"]) for r in rows] == [
        ("unconditional", 20), ("unconditional", 2), ("tagged", 20), ("tagged", 2), ("unconditional", 4)]
    assert all(r["clips"] == 3 and r["texture_fad"] > 0 for r in rows)
    assert "vs_20_steps" not in rows[0] and "vs_20_steps" not in rows[2]  # the references themselves
    lo, hi = rows[1]["vs_20_steps"]["ci95"]
    assert lo <= rows[1]["vs_20_steps"]["ratio"] <= hi
    assert rows[1]["texture_fad"] != pytest.approx(rows[0]["texture_fad"])  # 2 steps sample differently


def test_text_tol_scores_real_clips_of_a_split_against_prompts_about_them(tiny_dataset, capsys):
    from dittomusic.data.dataset import MelDataset
    from dittomusic.errors import DittoError

    root, _ = tiny_dataset
    bench = _load("text_tol")
    val = len(MelDataset(root, "val", random_crop=False))
    out = bench.main(["--data", str(root), "--prompts", "500"])
    assert json.loads(capsys.readouterr().out.strip()) == out
    q = out["score"]
    assert out["split"] == "val" and out["clips"] == val  # capped at the split's clips
    assert q["p10"] <= q["p25"] <= q["p50"] <= q["p75"] <= q["p90"] and -1 <= q["p10"] and q["p90"] <= 1
    assert out["tol_at_median"] == pytest.approx(1 - q["p50"], abs=1e-4)
    test = bench.main(["--data", str(root), "--prompts", "3", "--split", "test"])
    assert test["clips"] == 3 and test["score"] != q  # other clips, other scores
    with pytest.raises(DittoError, match="split"):
        bench.main(["--data", str(root), "--split", "nosuch"])


def test_text_zero_shot_reads_each_row_by_the_classifier_and_both_claps(tmp_path, capsys):
    import torch

    from dittomusic.clap.scorer import load_scorer
    from dittomusic.models.loading import bundled_path

    bench = _load("text_zero_shot")
    colls = ["chorale", "folk song", "Irish folk tune"]
    prompts = [{"expected": {"collection": colls[i % 3]}} for i in range(5)] + [{"expected": {}}]
    hits = [True, False, True, True, False, True]
    res = {"prompts": prompts, "rows": {"c": {"label": "steered", "items": [{"collection_hit": h} for h in hits]},
                                        "d": {"label": "no mels", "items": []}}}
    (tmp_path / "text_eval.json").write_text(json.dumps(res))
    mels = np.random.default_rng(0).uniform(-1, 1, (6, 160, 64)).astype(np.float32)
    np.save(tmp_path / "mels_c.npy", mels)
    out = bench.main(["--eval", str(tmp_path)])
    assert out["prompts_naming_a_collection"] == 5 and out["collections"] == sorted(colls)
    assert list(out["rows"]) == ["c"]  # a row without mels is skipped
    h = out["rows"]["c"]["collection_hits"]
    assert h["classifier"] == 3  # the prompt naming no collection does not count
    phrases = ["an Irish folk tune", "a chorale", "a folk song"]  # sorted(colls): capitals first
    for name, path in (("steering_clap", None), ("second_clap", str(bundled_path("clap2")))):
        with torch.no_grad():
            pred = load_scorer(path).score(torch.from_numpy(mels[:5]), phrases).argmax(1).tolist()
        assert h[name] == sum(sorted(colls)[p] == prompts[i]["expected"]["collection"] for i, p in enumerate(pred))
    assert json.loads(capsys.readouterr().out.splitlines()[0]) == {"row": "c", **h, "of": 5}
