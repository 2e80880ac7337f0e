"""fit --folds K: folds of whole families, out-of-fold scores, the averaged model, resume."""
import numpy as np
import pandas as pd
import pytest

import leukonet
from leukonet.cli import main
from leukonet.errors import LeukonetError
from tests.conftest import demo_fit_config, demo_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("folds")
    _, root = demo_split(base, (6, 3), 3)
    config = demo_fit_config(base, root, epochs=1)
    run = leukonet.fit(config.replace(folds=3, run_dir=str(base / "cv")))
    return base, root, config, run


def _pool(base):
    return pd.concat([pd.read_csv(base / "train.csv"), pd.read_csv(base / "val.csv")],
                     ignore_index=True)


def test_each_family_is_validated_once_by_the_model_that_did_not_train_on_it(demo):
    base, root, _, run = demo
    pool = _pool(base)
    members = [leukonet.load_run(run.path / "members" / str(k)) for k in range(3)]
    seen = []
    for m in members:
        train, val = pd.read_csv(m.path / "train_manifest.csv"), pd.read_csv(m.path / "val_manifest.csv")
        assert not set(train["group"]) & set(val["group"])  # families stay whole
        assert sorted(train["path"].tolist() + val["path"].tolist()) == sorted(pool["path"])
        assert m.metrics["train_images"] == len(train)  # every non-fold row trained on
        seen += val["path"].tolist()
    assert sorted(seen) == sorted(pool["path"])  # each row validated exactly once

    table = pd.read_csv(run.path / "folds.csv")
    assert sorted(table["path"]) == sorted(pool["path"])
    # fold 1's rows carry member 1's own predictions
    from leukonet.data.loader import ManifestLoader

    fold1 = table[table["fold"] == 1].reset_index(drop=True)
    x, rows = ManifestLoader(fold1, root, (30, 40), 256, num_classes=4).load_batch(0)
    proba = members[1].model.predict_on_batch(x.astype(np.float32))
    classes = members[1].classes
    assert (np.asarray(classes)[proba.argmax(1)] == fold1["predicted"].to_numpy()[rows]).all()
    np.testing.assert_allclose(proba, fold1[[f"p_{c}" for c in classes]].to_numpy()[rows], atol=1e-4)

    cv = run.metrics["cv"]
    assert run.metrics["val_accuracy"] == pytest.approx(table["correct"].mean())
    assert cv["accuracy"] == run.metrics["val_accuracy"]
    assert [f["images"] for f in cv["folds"]] == [len(table[table["fold"] == k]) for k in range(3)]
    for f, m in zip(cv["folds"], members):
        assert f["accuracy"] == pytest.approx(m.metrics["val_accuracy"], abs=1e-6)
    assert cv["families"] == pool["group"].nunique()
    low, high = cv["accuracy_ci95_over_families"]
    assert low <= cv["accuracy"] <= high


def test_the_run_model_averages_the_fold_models_and_evaluates_on_test(demo, tmp_path):
    base, root, _, run = demo
    members = [leukonet.load_run(run.path / "members" / str(k)) for k in range(3)]
    test = pd.read_csv(base / "test.csv")
    from leukonet.data.loader import ManifestLoader

    x, _ = ManifestLoader(test, root, (30, 40), 256, num_classes=4).load_batch(0)
    x = x.astype(np.float32)
    outs = [m.model.predict_on_batch(x) for m in members]
    np.testing.assert_allclose(run.model.predict_on_batch(x), np.mean(outs, axis=0), atol=1e-6)
    assert run.config.folds == 3 and run.config.ensemble == 3
    ev = run.evaluate(base / "test.csv", root, figures=False)
    assert ev.metrics["images"] == len(test)
    assert ev.metrics["accuracy"] == pytest.approx(
        float((np.mean(outs, axis=0).argmax(1) == test["label_index"].to_numpy()).mean()))


def test_resume_trains_only_the_unfinished_fold(demo, tmp_path):
    base, _, config, _ = demo
    run_dir = tmp_path / "cv"
    leukonet.fit(config.replace(folds=2, run_dir=str(run_dir)))
    first = (run_dir / "members" / "0" / "model.keras").stat().st_mtime_ns
    # as if killed during fold 2: its metrics and the combined files never written
    for name in ("members/1/metrics.json", "metrics.json", "model.keras", "folds.csv"):
        (run_dir / name).unlink()
    again = leukonet.fit(resume=run_dir)
    assert (run_dir / "members" / "0" / "model.keras").stat().st_mtime_ns == first
    assert (run_dir / "members" / "1" / "metrics.json").is_file()
    assert len(pd.read_csv(run_dir / "folds.csv")) == len(_pool(base))
    assert again.metrics["cv"]["accuracy"] == again.metrics["val_accuracy"]


def test_folds_refusals_and_the_cli(demo, tmp_path, capsys):
    base, root, config, _ = demo
    with pytest.raises(LeukonetError, match="the fold models are the ensemble; drop --ensemble"):
        leukonet.fit(config.replace(folds=3, ensemble=2, run_dir=str(tmp_path / "a")))
    with pytest.raises(LeukonetError, match="--folds 0: expected a number of folds >= 2"):
        leukonet.fit(config.replace(folds=0, run_dir=str(tmp_path / "b")))
    with pytest.raises(LeukonetError, match="--folds with --multitask"):  # refused before training
        leukonet.fit(config.replace(folds=2, multitask={"name": "n", "map": {}},
                                    run_dir=str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()
    families = _pool(base)["group"].nunique()
    with pytest.raises(LeukonetError, match=f"only {families} families"):
        leukonet.fit(config.replace(folds=families + 1, run_dir=str(tmp_path / "c")))
    assert not (tmp_path / "c").exists()  # refused before the run folder is made
    for name in ("train", "val"):  # manifests without families
        pd.read_csv(base / f"{name}.csv").drop(columns="group").to_csv(tmp_path / f"{name}.csv",
                                                                       index=False)
    with pytest.raises(LeukonetError, match=r"train.csv has rows without a `group` \(family\)"):
        leukonet.fit(config.replace(folds=2, manifest=str(tmp_path / "train.csv"),
                                    val_manifest=str(tmp_path / "val.csv"), run_dir=str(tmp_path / "d")))
    assert not (tmp_path / "d").exists()
    args = ["fit", "--manifest", config.manifest, "--val-manifest", config.val_manifest,
            "--data-root", str(root), "--image-size", "30x40", "--batch-size", "16",
            "--backbone", "simple_cnn", "--head", "gap", "--weights", "none", "--epochs", "1",
            "--workers", "1", "--folds", "2", "--run-dir", str(tmp_path / "cli")]
    assert main(args) == 0
    assert "cross-validation accuracy: " in capsys.readouterr().out
    assert (tmp_path / "cli" / "members" / "1" / "model.keras").is_file()
    assert main(args[:-1] + [str(tmp_path / "cli-refit"), "--refit"]) == 0
    assert "cross-validation accuracy (the refit model's estimate): " in capsys.readouterr().out
    assert (tmp_path / "cli-refit" / "refit" / "model.keras").is_file()


def test_folds_of_a_manifest_with_a_test_folder_leave_the_test_rows_out(tmp_path):
    m, root = demo_split(tmp_path, (4, 2), 2)
    m.to_csv(tmp_path / "all.csv", overwrite=True, rejects=False)
    is_test = m.frame["split"].str.lower().eq("test")
    assert is_test.any()
    run = leukonet.fit(manifest=str(tmp_path / "all.csv"), data_root=str(root), image_size=[30, 40],
                       batch_size=8, backbone="simple_cnn", head="gap", weights="none", epochs=1,
                       workers=1, folds=2, run_dir=str(tmp_path / "cv"))
    table = pd.read_csv(run.path / "folds.csv")
    assert set(table["path"]) == set(m.frame["path"][~is_test])  # every other row, once
    assert len(table) == int((~is_test).sum())


def test_refit_scores_the_recipe_out_of_fold_then_trains_the_run_model_on_every_row(demo, tmp_path):
    base, root, config, _ = demo
    run = leukonet.fit(config.replace(folds=2, refit=True, epochs=2, precise_bn=2,
                                      run_dir=str(tmp_path / "cv")))
    pool = _pool(base)
    members = [leukonet.load_run(run.path / "members" / str(k)) for k in range(2)]
    for m in members:  # no validation: no epoch picked on the rows that score it
        assert "val_accuracy" not in m.metrics and m.metrics["best_epoch"] == 2
    table = pd.read_csv(run.path / "folds.csv")
    assert sorted(table["path"]) == sorted(pool["path"])
    assert run.metrics["val_accuracy"] == pytest.approx(table["correct"].mean())
    assert "estimates model.keras" in run.metrics["val_accuracy_is"]

    final = leukonet.load_run(run.path / "refit")
    assert sorted(pd.read_csv(final.path / "train_manifest.csv")["path"]) == sorted(pool["path"])
    assert run.metrics["refit"]["train_images"] == len(pool) == run.metrics["train_images"]
    assert run.metrics["train_seconds"] == pytest.approx(
        sum(r.metrics["train_seconds"] for r in [*members, final]), abs=0.2)
    test = pd.read_csv(base / "test.csv")
    from leukonet.data.loader import ManifestLoader

    x, _ = ManifestLoader(test, root, (30, 40), 256, num_classes=4).load_batch(0)
    x = x.astype(np.float32)
    np.testing.assert_array_equal(run.model.predict_on_batch(x), final.model.predict_on_batch(x))
    assert run.config.folds == 2 and run.config.refit and run.config.ensemble == 1
    ev = run.evaluate(base / "test.csv", root, figures=False)
    assert ev.metrics["images"] == len(test)

    # killed while refitting: resume trains the final model only
    stamps = [(m.path / "model.keras").stat().st_mtime_ns for m in members]
    for name in ("refit/metrics.json", "metrics.json", "model.keras"):
        (run.path / name).unlink()
    again = leukonet.fit(resume=run.path)
    assert [(m.path / "model.keras").stat().st_mtime_ns for m in members] == stamps
    assert (run.path / "model.keras").is_file()
    assert again.metrics["val_accuracy"] == pytest.approx(run.metrics["val_accuracy"])
