import json

import keras
import numpy as np
import pandas as pd
import pytest

import leukonet
from leukonet.cli import main
from leukonet.config import FitConfig
from leukonet.data.manifest import Manifest
from leukonet.errors import LeukonetError
from leukonet.train import trainer as fit_module
from tests.conftest import demo_fit_config
from tests.train._interrupt import InterruptAfterTwoEpochs

pytestmark = pytest.mark.slow


def _config(demo, tmp_path, **kw):
    base, root = demo
    return demo_fit_config(base, root, **{"run_dir": str(tmp_path / "run"), **kw})


def test_two_epochs_beat_chance_and_write_the_run(demo, tmp_path):
    run = leukonet.fit(_config(demo, tmp_path, epochs=3))
    assert run.metrics["val_accuracy"] > 0.4  # 4 classes: chance is 0.25
    d = run.path
    for name in ("config.json", "model.keras", "last.keras", "history.csv", "summary.txt",
                 "metrics.json", "train.log", "train_manifest.csv", "val_manifest.csv"):
        assert (d / name).is_file(), name
    assert len(run.history) == 3
    config = json.loads((d / "config.json").read_text())
    assert config["image_size"] == [30, 40] and config["backbone"] == "simple_cnn"
    again = leukonet.load_run(d)
    x = np.zeros((1, 30, 40, 3), "float32")
    np.testing.assert_allclose(again.model.predict(x, verbose=0), run.model.predict(x, verbose=0))
    assert "parameters:" in (d / "summary.txt").read_text()


def test_non_empty_run_dir_needs_overwrite(demo, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(LeukonetError, match="run directory is not empty; pass --overwrite"):
        leukonet.fit(_config(demo, tmp_path, epochs=1))
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_resume_continues_from_the_saved_epoch(demo, tmp_path, monkeypatch):
    original = fit_module._callbacks
    monkeypatch.setattr(fit_module, "_callbacks", lambda *a, **k: original(*a, **k) + [InterruptAfterTwoEpochs()])
    with pytest.raises(KeyboardInterrupt):
        leukonet.fit(_config(demo, tmp_path, epochs=4))
    monkeypatch.setattr(fit_module, "_callbacks", original)
    d = tmp_path / "run"
    assert json.loads((d / "state.json").read_text())["last_epoch"] == 2
    assert not (d / "metrics.json").exists()
    run = leukonet.fit(resume=d)
    history = pd.read_csv(d / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]  # epochs 3-4 ran after the resume, once
    assert run.metrics["epochs_run"] == 4
    assert "resuming run" in (d / "train.log").read_text()


def test_a_resumed_run_reads_the_rows_and_augmentation_of_the_epochs_it_resumes_at(
        demo, tmp_path, monkeypatch):
    from leukonet.data.loader import ManifestLoader

    original = fit_module._callbacks
    monkeypatch.setattr(fit_module, "_callbacks", lambda *a, **k: original(*a, **k) + [InterruptAfterTwoEpochs()])
    with pytest.raises(KeyboardInterrupt):
        leukonet.fit(_config(demo, tmp_path, epochs=4))
    monkeypatch.setattr(fit_module, "_callbacks", original)
    epochs, getitem = set(), ManifestLoader.__getitem__

    def spy(self, index):
        if self.shuffle:  # the training loader
            epochs.add(self.epoch)
        return getitem(self, index)

    monkeypatch.setattr(ManifestLoader, "__getitem__", spy)
    leukonet.fit(resume=tmp_path / "run")
    # the shuffle order and augmentation seeds of epochs 3-4 (Keras's enqueuer may start on
    # the epoch after the last), never those of epochs 1-2 again
    assert {2, 3} <= epochs and not epochs & {0, 1}


def test_a_resumed_cached_run_reads_the_views_of_the_epochs_it_resumes_at(demo, tmp_path,
                                                                          monkeypatch):
    from leukonet.train import features

    original = fit_module._callbacks
    monkeypatch.setattr(fit_module, "_callbacks", lambda *a, **k: original(*a, **k) + [InterruptAfterTwoEpochs()])
    config = _config(demo, tmp_path, epochs=4, freeze_backbone=True, cache_features=True,
                     feature_views=2)
    with pytest.raises(KeyboardInterrupt):
        leukonet.fit(config)
    monkeypatch.setattr(fit_module, "_callbacks", original)
    epochs, read = set(), features.FeatureLoader.read

    def spy(self, first, count, epoch):
        if self.shuffle:  # the training features
            epochs.add(epoch)
        return read(self, first, count, epoch)

    monkeypatch.setattr(features.FeatureLoader, "read", spy)
    run = leukonet.fit(resume=tmp_path / "run")
    assert run.metrics["epochs_run"] == 4
    assert epochs == {2, 3}  # as an unbroken run would: epoch 2 view 0, epoch 3 view 1


def test_two_stage_fine_tuning_and_class_weights(demo, tmp_path):
    run = leukonet.fit(_config(demo, tmp_path, epochs=2, freeze_epochs=1, unfreeze=0.5,
                               class_weight="balanced"))
    log = (run.path / "train.log").read_text()
    assert "stage 1: backbone frozen" in log and "stage 2: fine-tuning" in log
    assert len(run.history) == 2


def test_class_weights_change_the_loss(demo, tmp_path):
    base, _ = demo
    frame = pd.read_csv(base / "train.csv")
    keep = frame[(frame["label_index"] != 0) | (frame.index % 4 == 0)]  # class 0 rare
    keep.to_csv(tmp_path / "imbalanced.csv", index=False)
    common = dict(manifest=str(tmp_path / "imbalanced.csv"), epochs=1)
    plain = leukonet.fit(_config(demo, tmp_path, run_dir=str(tmp_path / "a"), **common))
    weighted = leukonet.fit(_config(demo, tmp_path, run_dir=str(tmp_path / "b"),
                                    class_weight="balanced", **common))
    a, b = plain.history["loss"].iloc[0], weighted.history["loss"].iloc[0]
    assert abs(a - b) > 1e-3
    weights = fit_module._class_weight(FitConfig(class_weight="balanced"),
                                       dict(train=Manifest.read_csv(tmp_path / "imbalanced.csv")), None)
    assert weights[0] > 1.5 > weights[1]


def test_input_errors(demo, tmp_path):
    base, root = demo
    with pytest.raises(LeukonetError, match="--batch-size 100000 is larger"):
        leukonet.fit(_config(demo, tmp_path, batch_size=100000))
    frame = pd.read_csv(base / "val.csv")
    frame.loc[0, "label"] = "synthetic_basophil"
    frame.to_csv(tmp_path / "odd_val.csv", index=False)
    with pytest.raises(LeukonetError, match="classes the training manifest lacks"):
        leukonet.fit(_config(demo, tmp_path, val_manifest=str(tmp_path / "odd_val.csv")))
    train = pd.read_csv(base / "train.csv")
    train[train["label_index"] != 1].to_csv(tmp_path / "three.csv", index=False)
    (tmp_path / "classes.json").write_text((base / "classes.json").read_text())
    with pytest.raises(LeukonetError, match="no training images for class"):
        leukonet.fit(_config(demo, tmp_path, manifest=str(tmp_path / "three.csv")))
    with pytest.raises(LeukonetError, match="unknown key"):
        FitConfig.from_dict({"epochs": 1, "epoch": 2})


def test_nan_loss_stops_and_keeps_the_best(demo, tmp_path, monkeypatch):
    class _Poison(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.params and getattr(self, "_epoch", 0) == 1:
                logs["loss"] = float("nan")

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

    original = fit_module._callbacks
    # The poison runs before the NaN guard (appended last) sees the batch logs.
    monkeypatch.setattr(fit_module, "_callbacks", lambda *a, **k: [_Poison()] + original(*a, **k))
    with pytest.raises(LeukonetError, match=r"loss became NaN.*best checkpoint \(epoch \d\) is kept"):
        leukonet.fit(_config(demo, tmp_path, epochs=3))
    assert (tmp_path / "run" / "model.keras").is_file()


def test_cli_fit_and_resume_flags(demo, tmp_path, capsys):
    base, root = demo
    args = ["fit", "--manifest", str(base / "train.csv"), "--val-manifest", str(base / "val.csv"),
            "--data-root", str(root), "--image-size", "30x40", "--backbone", "simple_cnn",
            "--head", "gap", "--weights", "none", "--epochs", "1", "--batch-size", "16",
            "--run-dir", str(tmp_path / "cli")]
    assert main(args) == 0
    assert "validation accuracy" in capsys.readouterr().out
    assert main(["fit", "--resume", str(tmp_path / "cli"), "--epochs", "3"]) == 2
    assert "--resume takes no other flags" in capsys.readouterr().err
    assert main(args) == 2  # the run dir is not empty
    assert main(["fit", "--backbone", "nope", "--manifest", str(base / "train.csv"),
                 "--data-root", str(root)]) == 2
    assert "unknown backbone 'nope'" in capsys.readouterr().err


def test_fit_demo_main_job(tmp_path, monkeypatch, capsys):
    """`leukonet fit --demo` (shortened to 2 epochs here; the README runs the full one):
    real cells fine-tuned from pbc, a held-out score with its interval over families, and
    the next commands, which work as printed."""
    import re
    import shlex

    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--demo", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    held = re.search(r"held-out accuracy: ([\d.]+)% \(95 % interval over (\d+) held-out cells: "
                     r"([\d.]+)% to ([\d.]+)%\)", out)
    assert held, out
    acc, families, lo, hi = float(held[1]), int(held[2]), float(held[3]), float(held[4])
    assert lo <= acc <= hi and families == 30
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("demo-")
    config = json.loads((runs[0] / "config.json").read_text())
    assert config["weights"] == "pbc" and config["backbone"] == "simple_cnn_wide"
    evaluation = json.loads((runs[0] / "eval" / "heldout" / "metrics.json").read_text())
    assert evaluation["accuracy"] == pytest.approx(acc / 100, abs=6e-4)
    assert (tmp_path / "leukonet-demo" / "README.md").read_text().count("MIT License") == 1
    # the printed next commands run as they are
    nexts = [line.split("#")[0].strip() for line in out.splitlines() if line.startswith("  leukonet ")]
    assert [n.split()[1] for n in nexts] == ["evaluate", "predict", "report"]
    for command in nexts[1:]:
        assert main(shlex.split(command)[1:]) == 0, command
    assert (tmp_path / "counts.csv").is_file() and (runs[0] / "report.html").is_file()
    # --config reruns a run's config into a new run directory
    assert main(["fit", "--config", str(runs[0] / "config.json"), "--name", "again",
                 "--epochs", "1"]) == 0
    assert (tmp_path / "runs" / "again" / "model.keras").is_file()


def test_cached_features_train_the_head_and_save_a_full_model(demo, tmp_path):
    run = leukonet.fit(_config(demo, tmp_path, epochs=3, freeze_backbone=True, cache_features=True,
                               feature_views=2, head="conv", lr=1e-2))
    features = sorted(p.name for p in (run.path / "features").glob("*.npy"))
    assert features == ["train_v0.npy", "train_v1.npy", "val_v0.npy"]
    model = run.model  # the full model: raw images in
    assert model.input_shape == (None, 30, 40, 3)
    # the saved full model, fed raw images, scores what the head scored on cached features
    best = run.history.iloc[run.metrics["best_epoch"] - 1]
    assert abs(run.metrics["val_accuracy"] - best["val_accuracy"]) < 0.05
    with pytest.raises(LeukonetError, match="--cache-features needs --freeze-backbone"):
        leukonet.fit(_config(demo, tmp_path, run_dir=str(tmp_path / "x"), cache_features=True))


def test_cached_head_takes_every_step_and_follows_the_cosine_schedule(demo, tmp_path, monkeypatch):
    from leukonet.train import features

    heads = []

    def keep(*args, **kw):
        heads.append(features_head_model(*args, **kw))
        return heads[-1]

    features_head_model = features.head_model
    monkeypatch.setattr(features, "head_model", keep)
    steps = -(-len(pd.read_csv(demo[0] / "train.csv")) // 16)
    # several steps per call, and a last call with fewer
    spe = next(k for k in range(3, steps) if steps % k)
    monkeypatch.setattr(features, "STEPS_PER_EXECUTION", spe)
    leukonet.fit(_config(demo, tmp_path, epochs=3, freeze_backbone=True, cache_features=True,
                         lr=1e-2, lr_schedule="cosine"))
    head = heads[0]
    assert int(head.optimizer.iterations.numpy()) == 3 * steps
    # cosine decay to 0 over the epochs (it used to stay at --lr with cached features)
    assert float(head.optimizer.learning_rate.numpy()) < 1e-2 * 1e-3


def test_overlapping_train_and_val_warn(demo, tmp_path, caplog):
    base, _ = demo
    run = leukonet.fit(_config(demo, tmp_path, epochs=1, val_manifest=str(base / "train.csv")))
    assert "share" in (run.path / "train.log").read_text()
    assert "validation accuracy will be optimistic" in (run.path / "train.log").read_text()


def test_corrupt_image_mid_epoch(demo, tmp_path):
    base, root = demo
    frame = pd.read_csv(base / "train.csv")
    copy = tmp_path / "data"
    import shutil

    shutil.copytree(root, copy)
    victim = copy / frame["path"].iloc[5]
    victim.write_bytes(victim.read_bytes()[:60])
    with pytest.raises(LeukonetError, match=f"{frame['path'].iloc[5]}.*--skip-bad-images"):
        leukonet.fit(_config(demo, tmp_path, epochs=1, data_root=str(copy), workers=2))
    run = leukonet.fit(_config(demo, tmp_path, epochs=1, data_root=str(copy), workers=2,
                               skip_bad_images=True, overwrite=True))
    log = (run.path / "train.log").read_text()
    assert "skipped 1 unreadable image(s)" in log and frame["path"].iloc[5] in log


def test_cosine_schedule_precise_bn_and_nucleus_crop(demo, tmp_path):
    run = leukonet.fit(_config(demo, tmp_path, epochs=2, lr_schedule="cosine", precise_bn=2,
                               nucleus_crop=0.9, image_size=[24, 24]))
    assert len(run.history) == 2
    # Cosine decay reaches 0 at the last step (a plateau rule would still hold 3e-3).
    assert float(run.model.optimizer.learning_rate) < 3e-3 * 0.1
    # The saved model carries re-estimated statistics: not the initial 0 / 1.
    bn = [l for l in run.model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert bn and np.abs(bn[0].moving_mean.numpy()).sum() > 0
    ev = run.evaluate(str(demo[0] / "val.csv"), demo[1], figures=False)
    assert ev.metrics["images"] > 0


def test_without_validation_every_non_test_row_trains_and_the_last_epoch_is_kept(demo, tmp_path,
                                                                               capsys):
    base, root = demo
    m = Manifest.read_csv(base / "train.csv")
    frame = pd.concat([m.frame, pd.read_csv(base / "val.csv"), pd.read_csv(base / "test.csv")])
    frame.to_csv(tmp_path / "all.csv", index=False)  # split column: train, val and test rows
    run = leukonet.fit(_config(demo, tmp_path, manifest=str(tmp_path / "all.csv"), val_manifest=None,
                               val_fraction=0, epochs=2, precise_bn=2, lr_schedule="cosine"))
    trained = pd.read_csv(run.path / "train_manifest.csv")
    assert sorted(trained["path"]) == sorted(frame["path"][frame["split"] != "test"])
    assert "val_accuracy" not in run.metrics and run.metrics["val_images"] == 0
    assert run.metrics["train_accuracy"] == pytest.approx(run.history["accuracy"].iloc[-1])
    assert run.metrics["best_epoch"] == run.metrics["epochs_run"] == 2
    last = leukonet.load_model(run.path / "last.keras")
    for a, b in zip(run.model.get_weights(), last.get_weights()):  # model.keras: the last epoch
        np.testing.assert_array_equal(a, b)
    assert run.history["val_loss"].isna().all()  # (Keras' CSVLogger adds empty val_ columns)
    args = ["fit", "--manifest", str(tmp_path / "all.csv"), "--data-root", str(root),
            "--image-size", "30x40", "--batch-size", "16", "--backbone", "simple_cnn", "--head",
            "gap", "--weights", "none", "--epochs", "1", "--workers", "1", "--val-fraction", "0",
            "--run-dir", str(tmp_path / "cli")]
    assert main(args) == 0
    assert "no validation (last epoch kept)" in capsys.readouterr().out
    both = leukonet.ensemble([run.path, tmp_path / "cli"], out=tmp_path / "both")
    assert "val_accuracy" not in both.metrics  # no validation rows to score it on
    from leukonet.evaluate.report import report

    assert "Leakage audit" in report(run).read_text()  # an empty validation manifest reads


@pytest.mark.parametrize("change, message", [
    (dict(lr_schedule="step"), "--lr-schedule 'step': choose plateau or cosine"),
    (dict(val_fraction=1.0), r"--val-fraction 1.0: expected 0 <= fraction < 1 \(0: no validation\)"),
    (dict(val_manifest=None, val_fraction=0, freeze_backbone=True, cache_features=True),
     "--val-fraction 0 with --cache-features"),
    (dict(refit=True), r"--refit needs --folds K"),
    (dict(nucleus_crop=1.5), "--nucleus-crop 1.5: expected a fraction"),
    (dict(nucleus_crop=0.8, image_size="native"), "--image-size native with --nucleus-crop"),
    (dict(precise_bn=-1), "--precise-bn -1"),
    (dict(mixup=-0.2), "--mixup -0.2: expected a Beta alpha > 0"),
    (dict(mixup=0.2, freeze_backbone=True, cache_features=True), "--mixup with --cache-features"),
])
def test_bad_recipe_options_are_one_line_errors(demo, tmp_path, change, message):
    with pytest.raises(LeukonetError, match=message):
        leukonet.fit(_config(demo, tmp_path, **change))
    assert not (tmp_path / "run").exists()


def test_preset_then_flags(demo, tmp_path, capsys):
    from leukonet.presets import PRESETS, preset_config

    config = preset_config("blood-cells-cpu")
    assert config.backbone == "simple_cnn_wide" and config.nucleus_crop > 0
    assert set(PRESETS["blood-cells-cpu"]) <= set(FitConfig().to_dict())
    with pytest.raises(LeukonetError, match="unknown preset 'nope'; choose one of: blood-cells-cpu"):
        preset_config("nope")
    cv = preset_config("blood-cells-cpu-cv")  # the same recipe, cross-validated then refit
    assert cv.folds == 3 and cv.refit and cv == config.replace(folds=3, refit=True, epochs=cv.epochs)
    base, root = demo
    code = main(["fit", "--preset", "blood-cells-cpu", "--manifest", str(base / "train.csv"),
                 "--val-manifest", str(base / "val.csv"), "--data-root", str(root),
                 "--image-size", "24x24", "--epochs", "1", "--precise-bn", "1", "--batch-size", "16",
                 "--run-dir", str(tmp_path / "run")])
    assert code == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["backbone"] == "simple_cnn_wide" and saved["lr_schedule"] == "cosine"
    assert saved["epochs"] == 1 and saved["precise_bn"] == 1  # flags win over the preset
    assert main(["fit", "--preset", "blood-cells-cpu", "--config", str(tmp_path / "run" / "config.json")]) != 0
    assert "give --config or --preset, not both" in capsys.readouterr().err


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TensorFlow-backend leak")
def test_repeated_fits_in_one_process_free_their_traced_graphs(demo, tmp_path):
    """Keras's TF optimizer registers a tf.custom_gradient per traced train step in TF's global
    gradient registry, which kept every fit's graphs alive (7-18 MiB each in a notebook loop).
    After the first fit, further fits must not leave more live FuncGraphs behind."""
    import gc

    from tensorflow.python.framework.func_graph import FuncGraph

    def live_graphs():
        gc.collect()
        return sum(isinstance(o, FuncGraph) for o in gc.get_objects())

    leukonet.fit(_config(demo, tmp_path, epochs=1), verbose=0)
    first = live_graphs()
    for _ in range(2):
        leukonet.fit(_config(demo, tmp_path, epochs=1, overwrite=True), verbose=0)
    assert live_graphs() <= first


def test_pixel_cache_feeds_the_same_pixels_cold_and_warm(demo, tmp_path):
    # --cache-dir: the first fit fills the cache, the second reads only from it (its
    # entries are the raw pixels + CRC-32); both must train exactly as without a cache.
    base, root = demo
    cache = tmp_path / "cache"
    histories = []
    for name, cache_dir in (("plain", None), ("cold", cache), ("warm", cache)):
        run = leukonet.fit(_config(demo, tmp_path, run_dir=str(tmp_path / name), seed=3,
                                   cache_dir=str(cache_dir) if cache_dir else None))
        histories.append(run.history[["loss", "val_loss", "val_accuracy"]].to_numpy())
        if name == "cold":
            entries = sorted(cache.rglob("*.rgb"))
            rows = len(pd.read_csv(base / "train.csv")) + len(pd.read_csv(base / "val.csv"))
            assert len(entries) == rows and entries[0].stat().st_size == 30 * 40 * 3 + 4
            stamps = {e: e.stat().st_mtime_ns for e in entries}
    assert {e: e.stat().st_mtime_ns for e in stamps} == stamps  # the warm fit wrote nothing
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
    np.testing.assert_allclose(histories[2], histories[0], rtol=1e-5)
