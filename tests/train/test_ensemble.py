"""fit --ensemble N and leukonet ensemble: members, averaging, resume, and what is refused."""
import json

import numpy as np
import pandas as pd
import pytest

import leukonet
from leukonet.cli import main
from leukonet.errors import LeukonetError
from leukonet.train.run import load_model
from tests.conftest import demo_fit_config, demo_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("ens")
    _, root = demo_split(base, (6, 3), 3)
    config = demo_fit_config(base, root)
    run = leukonet.fit(config.replace(ensemble=2, run_dir=str(base / "ens")))
    return base, root, config, run


def _val_batch(base, root):
    from leukonet.data.loader import ManifestLoader

    frame = pd.read_csv(base / "val.csv")
    loader = ManifestLoader(frame, root, (30, 40), 64, num_classes=4)
    x, rows = loader.load_batch(0)
    return x.astype(np.float32), frame["label_index"].to_numpy()[rows]


def test_members_are_seeded_runs_and_the_model_averages_them(demo):
    base, root, _, run = demo
    members = [leukonet.load_run(run.path / "members" / str(k)) for k in (0, 1)]
    assert [m.config.seed for m in members] == [0, 1]
    assert all(m.config.ensemble == 1 for m in members)
    assert run.config.ensemble == 2 and run.config.image_size == [30, 40]
    x, y = _val_batch(base, root)
    outs = [m.model.predict_on_batch(x) for m in members]
    assert not np.allclose(outs[0], outs[1])  # two seeds, two different models
    np.testing.assert_allclose(run.model.predict_on_batch(x), np.mean(outs, axis=0), atol=1e-6)
    # the ensemble's validation score is its own, over every validation image
    metrics = run.metrics
    assert metrics["val_images"] == len(pd.read_csv(base / "val.csv")) == len(y)
    assert metrics["val_accuracy"] == pytest.approx(float((np.mean(outs, axis=0).argmax(1) == y).mean()))
    assert [m["val_accuracy"] for m in metrics["members"]] == [m.metrics["val_accuracy"] for m in members]
    assert [m["path"] for m in metrics["members"]] == ["members/0", "members/1"]


def test_an_ensemble_run_evaluates_explains_and_exports(demo, tmp_path):
    base, root, _, run = demo
    ev = run.evaluate(base / "test.csv", root, figures=False)
    assert ev.metrics["images"] == len(pd.read_csv(base / "test.csv"))
    files = sorted(p for p in root.rglob("*.png"))[:2]
    fig = run.explain(files, out_dir=tmp_path / "cam")
    assert len(fig.leukonet_written) == 2
    from leukonet.evaluate.gradcam import GradCAM, gradcam_for
    from leukonet.models.ensemble import members

    x, _ = _val_batch(base, root)
    maps, probs = gradcam_for(run.model)(x[:3])
    classes = probs.argmax(axis=1)
    each = [GradCAM(m)(x[:3], classes)[0] for m in members(run.model)]
    np.testing.assert_allclose(maps, np.mean(each, axis=0), atol=1e-6)
    out = run.export("keras", tmp_path / "ens.keras")
    np.testing.assert_allclose(load_model(out).predict_on_batch(x), run.model.predict_on_batch(x), atol=1e-6)


def test_resume_trains_only_the_unfinished_member(demo, tmp_path):
    base, root, config, _ = demo
    run_dir = tmp_path / "ens"
    leukonet.fit(config.replace(ensemble=2, epochs=1, run_dir=str(run_dir)))
    first = (run_dir / "members" / "0" / "model.keras").read_bytes()
    # as if killed while member 1 trained: its run has a config and nothing finished
    for name in ("metrics.json", "model.keras", "last.keras", "state.json", "history.csv"):
        (run_dir / "members" / "1" / name).unlink()
    (run_dir / "model.keras").unlink()
    import shutil

    shutil.rmtree(run_dir / "members" / "1" / "backup", ignore_errors=True)
    again = leukonet.fit(resume=str(run_dir))
    assert (run_dir / "members" / "0" / "model.keras").read_bytes() == first
    assert (run_dir / "members" / "1" / "metrics.json").is_file()
    assert again.model.name == "leukonet_ensemble"
    assert [m.name for m in again.model.layers[1:3]] == ["leukonet_simple_cnn_gap_member0",
                                                         "leukonet_simple_cnn_gap_member1"]
    assert json.loads((run_dir / "state.json").read_text()) == {"members_finished": 2}
    assert len(pd.read_csv(run_dir / "members" / "1" / "history.csv")) == 1


def test_cli_ensemble_combines_runs_and_refuses_mismatches(demo, tmp_path, capsys):
    base, root, config, run = demo
    a, b = run.path / "members" / "0", run.path / "members" / "1"
    assert main(["ensemble", str(a), str(b), "--out", str(tmp_path / "c")]) == 0
    assert "validation accuracy" in capsys.readouterr().out
    combined = leukonet.load_run(tmp_path / "c")
    saved = json.loads((tmp_path / "c" / "config.json").read_text())
    assert [m["path"] for m in saved["extra"]["ensemble_members"]] == [str(a.resolve()), str(b.resolve())]
    assert combined.metrics["val_accuracy"] == pytest.approx(run.metrics["val_accuracy"])
    # a resume of a combined ensemble just combines again
    assert leukonet.fit(resume=str(tmp_path / "c")).metrics["val_accuracy"] == pytest.approx(
        run.metrics["val_accuracy"])
    with pytest.raises(LeukonetError, match="already an ensemble"):
        leukonet.ensemble([run.path, a], tmp_path / "bad")
    with pytest.raises(LeukonetError, match="at least two runs"):
        leukonet.ensemble([a], tmp_path / "bad")
    with pytest.raises(LeukonetError, match="holds the run"):
        leukonet.ensemble([a, b], run.path, overwrite=True)
    assert (a / "model.keras").is_file()  # nothing of the members was removed
    with pytest.raises(LeukonetError, match="not a leukonet run directory"):
        leukonet.ensemble([a, tmp_path], tmp_path / "bad2")
    assert not (tmp_path / "bad2").exists()
    assert main(["fit", "--manifest", str(base / "train.csv"), "--data-root", str(root),
                 "--ensemble", "0", "--run-dir", str(tmp_path / "zero")]) == 2
    assert "--ensemble 0: expected a number of members >= 1" in capsys.readouterr().err


def test_ensemble_val_loss_is_the_loss_of_the_averaged_probabilities(demo):
    base, root, _, run = demo
    from leukonet.data.loader import ManifestLoader
    from leukonet.evaluate.predict import predict_loader

    frame = pd.read_csv(base / "val.csv")
    rows, proba = predict_loader(run.model, ManifestLoader(frame, root, (30, 40), 16, num_classes=4))
    picked = proba[np.arange(len(rows)), frame["label_index"].to_numpy()[rows]]
    assert run.config.label_smoothing == 0.0  # the members' loss is plain cross-entropy
    assert run.metrics["val_loss"] == pytest.approx(float(-np.log(picked).mean()), rel=1e-4)
    members = [leukonet.load_run(run.path / "members" / str(k)).metrics["val_loss"] for k in (0, 1)]
    assert run.metrics["val_loss"] not in members


def test_runs_that_cannot_be_averaged_are_refused_by_name(demo, tmp_path):
    import shutil

    _, _, _, run = demo
    a = run.path / "members" / "0"
    unfinished, multitask = tmp_path / "unfinished", tmp_path / "multitask"
    for copy in (unfinished, multitask):
        shutil.copytree(a, copy)
    (unfinished / "model.keras").unlink()
    config = json.loads((multitask / "config.json").read_text())
    config["multitask"] = {"name": "nucleus", "map": {}}
    (multitask / "config.json").write_text(json.dumps(config))
    with pytest.raises(LeukonetError, match=r"unfinished: no model.keras"):
        leukonet.ensemble([a, unfinished], tmp_path / "out")
    with pytest.raises(LeukonetError, match=r"multitask: a multi-task run"):
        leukonet.ensemble([a, multitask], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_members_that_read_images_differently_get_one_input_per_view(demo, tmp_path):
    """A member at another size with a nucleus crop: the ensemble takes both views, and
    evaluate / predict / TTA / export / resume feed each member its own."""
    from leukonet.data.loader import ManifestLoader
    from leukonet.evaluate.predict import predict_loader, tta_views

    base, root, config, run = demo
    a, b = run.path / "members" / "0", run.path / "members" / "1"
    cropped = leukonet.fit(config.replace(image_size=[24, 24], nucleus_crop=0.8, epochs=1,
                                          run_dir=str(tmp_path / "cropped")))
    mixed = leukonet.ensemble([a, cropped.path, b], tmp_path / "mixed")
    assert [tuple(i.shape[1:]) for i in mixed.model.inputs] == [(30, 40, 3), (24, 24, 3)]
    assert mixed.config.extra["views"] == [dict(image_size=[30, 40], nucleus_crop=0.0),
                                           dict(image_size=[24, 24], nucleus_crop=0.8)]
    assert mixed.config.image_size == [30, 40]
    frame = pd.read_csv(base / "test.csv")
    plain = ManifestLoader(frame, root, (30, 40), 64, num_classes=4)
    crop = ManifestLoader(frame, root, (24, 24), 64, num_classes=4, nucleus_crop=0.8)
    x, rows = plain.load_batch(0)
    xc, _ = crop.load_batch(0)
    members = [leukonet.load_run(p).model for p in (a, b)]
    expected = np.mean([members[0].predict_on_batch(x.astype(np.float32)),
                        cropped.model.predict_on_batch(xc.astype(np.float32)),
                        members[1].predict_on_batch(x.astype(np.float32))], axis=0)
    ev = mixed.evaluate(base / "test.csv", root, figures=True)
    got = pd.read_csv(ev.dir / "predictions.csv")
    np.testing.assert_allclose(got[[f"p_{c}" for c in mixed.classes]].to_numpy()[:len(rows)],
                               expected, atol=1e-5)
    assert ev.metrics["images"] == len(frame)
    # TTA flips every view alike
    views = [tta_views(v.astype(np.float32), 2) for v in (x, xc)]
    flipped = np.mean([mixed.model.predict_on_batch([views[0][t], views[1][t]]) for t in (0, 1)], axis=0)
    _, proba = predict_loader(mixed.model, mixed_loader := _loader_of(mixed, frame, root), tta=2)
    assert len(mixed_loader.loaders) == 2
    np.testing.assert_allclose(proba[:len(rows)], flipped, atol=1e-5)
    # predict on loose files; the ensemble's validation is its own
    files = sorted(root.rglob("*.png"))[:3]
    table = mixed.predict(files)
    assert len(table) == 3 and set(table["predicted"]) <= set(mixed.classes)
    assert 0 <= mixed.metrics["val_accuracy"] <= 1 and mixed.metrics["val_images"] == len(
        pd.read_csv(base / "val.csv"))
    # exported and reloaded it takes both inputs; a resume combines again, views and all
    out = mixed.export("keras", tmp_path / "mixed.keras")
    np.testing.assert_allclose(load_model(out).predict_on_batch([x.astype(np.float32), xc.astype(np.float32)]),
                               expected, atol=1e-5)
    again = leukonet.fit(resume=str(tmp_path / "mixed"))
    assert again.config.extra["views"] == mixed.config.extra["views"]
    # Grad-CAM cannot average maps of different pixels: refused in one line
    with pytest.raises(LeukonetError, match="read 2 views.*explain each member run"):
        mixed.explain(files)
    from leukonet.evaluate.report import report

    page = report(mixed).read_text()
    assert "<h2>Grad-CAM</h2><p>Grad-CAM averages" in page and "explain each member run" in page
    # a bare model file of such an ensemble has no views to read by
    assert main(["predict", str(tmp_path / "mixed" / "model.keras"), *map(str, files),
                 "--output", str(tmp_path / "p.csv")]) == 2


def _loader_of(run, frame, root):
    from leukonet.evaluate.predict import run_loader

    return run_loader(run.config, frame, len(run.classes), root, 64)
