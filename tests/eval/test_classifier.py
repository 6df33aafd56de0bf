import torch

from dittomusic.eval.classifier import (ClassifierConfig, TagClassifier, load_classifier, predict, tag_metrics,
                                         train_classifier)


def test_tag_metrics_by_hand():
    pred = {"collection": torch.tensor([0, 1, 1, 2]), "families": torch.tensor([[1, 0], [1, 1], [0, 0], [0, 1]]).bool()}
    m = tag_metrics(pred, torch.tensor([0, 1, 0, 2]), torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]]), ["a", "b", "c"])
    assert m["collection_accuracy"] == 0.75
    assert m["collection_accuracy_per"] == {"a": 0.5, "b": 1.0, "c": 1.0}
    # tp = 3, predicted positives 4, true positives 4 -> F1 = 6 / 8
    assert m["family_micro_f1"] == 0.75


def test_embedding_is_the_penultimate_layer():
    net = TagClassifier(ClassifierConfig(collections=["a", "b"], families=["x", "y", "z"])).eval()
    mel = torch.rand(3, 160, 512) * 2 - 1
    out = net(mel)
    assert out["embedding"].shape == (3, 128)
    torch.testing.assert_close(net.head_collection(out["embedding"]), out["collection"])
    p = predict(net, mel, batch=2)
    assert p["embedding"].shape == (3, 128) and p["families"].dtype == torch.bool


def test_train_save_load(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    meta = train_classifier(root, tmp_path / "clf.safetensors", epochs=3, batch_size=8, progress=False)
    assert 0.0 <= meta["test"]["collection_accuracy"] <= 1.0 and meta["test"]["n"] > 0
    model, meta2 = load_classifier(tmp_path / "clf.safetensors")
    assert meta2["test"] == meta["test"] and model.cfg.collections == ["Irish folk tune", "chorale", "folk song"]
    assert not model.training


def test_classifier_learns_a_separable_batch():
    torch.manual_seed(0)
    net = TagClassifier(ClassifierConfig(collections=["low", "high"], families=["f"]))
    mel = torch.full((16, 160, 64), -0.8)
    y = torch.arange(16) % 2
    mel[y == 1, 100:120] = 0.6  # "high" clips have energy in upper bins
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(net(mel + 0.05 * torch.randn_like(mel))["collection"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    assert (predict(net, mel)["collection"] == y).all()
