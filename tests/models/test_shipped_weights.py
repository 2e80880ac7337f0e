"""Shipped weights (leukonet/models/weights.py): by name, hash-checked, usable two ways."""
import json

import numpy as np
import pandas as pd
import pytest

import leukonet
from leukonet.cli import main
from leukonet.errors import LeukonetError
from leukonet.models import weights
from tests.conftest import demo_fit_config, demo_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A run of the shipped architecture on SYNTHETIC demo data, written as shipped weights
    into a temporary folder (``write_folder``, as the real ones are made)."""
    base = tmp_path_factory.mktemp("shipped")
    _, root = demo_split(base, (8, 3), 3)
    run = leukonet.fit(demo_fit_config(base, root, backbone="simple_cnn_wide", epochs=1,
                                       run_dir=str(base / "run")), verbose=0)
    digest = weights.write_folder(run.path, "simple_cnn_wide.test_v1",
                                  dict(backbone="simple_cnn_wide", description="a test",
                                       scope="a test", data={"source": "demo"},
                                       recipe="leukonet fit ...", metrics={"test": 0.5}),
                                  out=base / "weights")
    return base, root, run, digest


@pytest.fixture
def shipped(made, monkeypatch):
    base, root, run, digest = made
    entry = weights.ShippedWeights("simple_cnn_wide.test_v1", "simple_cnn_wide", digest, "test",
                                   aliases=("testnet",))
    monkeypatch.setattr(weights, "FOLDER", base / "weights")
    monkeypatch.setattr(weights, "WEIGHTS", {entry.name: entry})
    monkeypatch.setattr(weights, "ALIASES", {"testnet": entry.name})
    return base, root, run


def test_the_folder_is_a_run_without_optimizer_and_with_its_card(made):
    base, _, run, digest = made
    folder = base / "weights" / "simple_cnn_wide.test_v1"
    card = json.loads((folder / "card.json").read_text())
    assert card["sha256"] == digest == weights.sha256(folder / "model.keras")
    assert card["num_params"] == run.model.count_params()
    assert (folder / "model.keras").stat().st_size < (run.path / "model.keras").stat().st_size
    assert "# simple_cnn_wide.test_v1" in (folder / "README.md").read_text()
    shipped_model = leukonet.load_model(folder / "model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (2, 30, 40, 3)).astype("float32")
    np.testing.assert_allclose(shipped_model.predict(x, verbose=0), run.model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_a_name_gives_a_ready_classifier_and_outputs_go_here(shipped, tmp_path, capsys,
                                                              monkeypatch):
    base, root, run = shipped
    monkeypatch.chdir(tmp_path)
    images = sorted((root / "TEST").rglob("*.png"))[:5]
    assert main(["predict", "testnet", *map(str, images), "-o", "p.csv"]) == 0
    assert len(pd.read_csv("p.csv")) == 5
    assert main(["evaluate", "testnet", "--manifest", str(base / "test.csv"), "--data-root",
                 str(root)]) == 0
    assert (tmp_path / "testnet" / "eval" / "test" / "metrics.json").is_file()
    assert not (weights.FOLDER / "simple_cnn_wide.test_v1" / "eval").exists()  # not in the package
    assert main(["report", "testnet"]) == 0  # no manifests in the folder: its card instead
    page = (tmp_path / "testnet" / "report.html").read_text()
    assert "a test" in page and "no evaluation yet" not in page and "<h3>test</h3>" in page
    assert leukonet.load_run("testnet").classes == run.classes


def test_a_name_initialises_the_backbone_under_a_new_head(shipped, tmp_path, monkeypatch):
    base, root, run = shipped
    from leukonet.models.build import BACKBONE_LAYER, build_model

    # ./testnet/ holding only outputs of `leukonet evaluate testnet` is not a run folder:
    # the name still means the shipped weights
    monkeypatch.chdir(tmp_path)
    (tmp_path / "testnet" / "eval").mkdir(parents=True)

    config = demo_fit_config(base, root, backbone="simple_cnn_wide", weights="testnet")
    model = build_model(config, 3, (30, 40))  # 3 classes: a new head
    got = model.get_layer(BACKBONE_LAYER).get_weights()
    want = run.model.get_layer(BACKBONE_LAYER).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert model.output_shape[-1] == 3
    with pytest.raises(LeukonetError, match="is a simple_cnn_wide backbone; pass --backbone simple_cnn_wide"):
        build_model(config.replace(backbone="simple_cnn"), 3, (30, 40))
    # and through fit (the Python API; the CLI's --weights testnet is the same field), with
    # no backbone named: the weights bring theirs (the default backbone could not take them)
    given = {k: v for k, v in config.to_dict().items() if k != "backbone"}
    tuned = leukonet.fit(**dict(given, epochs=1, run_dir=str(tmp_path / "t")), verbose=0)
    assert tuned.config.weights == "testnet" and tuned.metrics["epochs_run"] == 1
    assert tuned.config.backbone == "simple_cnn_wide"
    assert main(["fit", "--manifest", config.manifest, "--val-manifest", config.val_manifest,
                 "--data-root", config.data_root, "--image-size", "30x40", "--weights",
                 "testnet", "--epochs", "1", "--workers", "1", "--run-dir",
                 str(tmp_path / "c")]) == 0
    assert leukonet.load_run(tmp_path / "c").config.backbone == "simple_cnn_wide"


def test_a_damaged_or_missing_file_is_one_line(shipped, tmp_path, capsys):
    base, root, run = shipped
    model = weights.FOLDER / "simple_cnn_wide.test_v1" / "model.keras"
    good = model.read_bytes()
    try:
        model.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")  # an LFS pointer
        code = main(["predict", "testnet", str(sorted((root / "TEST").rglob("*.png"))[0]), "-o",
                     str(tmp_path / "p.csv")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "its sha256 is not the one leukonet shipped" in err
        model.unlink()
        with pytest.raises(LeukonetError, match="the shipped model file is missing"):
            weights.folder("testnet")
    finally:
        model.write_bytes(good)
    with pytest.raises(LeukonetError, match="unknown weights 'nosuch'; shipped: simple_cnn_wide.test_v1, testnet"):
        weights.folder("nosuch")


def test_backbones_lists_the_shipped_weights(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    for w in weights.list_weights():
        assert w.name in out
        assert all(alias in out for alias in w.aliases)


def test_every_shipped_weight_matches_its_recorded_sha256_and_card():
    for w in weights.list_weights():
        folder = weights.folder(w.name)  # raises on a mismatch
        card = weights.card(w.name)
        assert card["sha256"] == w.sha256 and card["backbone"] == w.backbone
        for key in ("image_size", "classes", "recipe", "metrics", "license", "citation", "data",
                    "scope"):
            assert card.get(key), key
        assert (folder / "model.keras").stat().st_size <= 10 * 2**20
    total = sum(f.stat().st_size for f in weights.FOLDER.rglob("*") if f.is_file())
    assert total <= 10 * 2**20  # all shipped weight files together


def test_classes_the_shipped_model_does_not_know_are_one_line(shipped, tmp_path, capsys,
                                                              monkeypatch):
    base, root, run = shipped
    monkeypatch.chdir(tmp_path)
    frame = pd.read_csv(base / "test.csv").drop(columns="label_index", errors="ignore")
    frame.assign(label=frame["label"].str.upper()).to_csv("upper.csv", index=False)
    frame.assign(label="BAND_CELL").to_csv("other.csv", index=False)
    for manifest, fix in (("upper.csv", "differ only in case"), ("other.csv", "fine-tune on them")):
        code = main(["evaluate", "testnet", "--manifest", manifest, "--data-root", str(root)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "unknown to the model" in err and fix in err


def test_report_of_shipped_weights_leads_with_their_cards_test_result(tmp_path, monkeypatch):
    """Before any evaluation here, the page's headline is the test result the card records."""
    monkeypatch.chdir(tmp_path)
    assert main(["report", "pbc"]) == 0
    page = (tmp_path / "pbc" / "report.html").read_text()
    card = leukonet.load_run("pbc").path / "card.json"
    test = json.loads(card.read_text())["metrics"]["test_accuracy"]
    summary = page[page.index("<h2>Summary</h2>"):page.index("<h2>Data</h2>")]
    assert f"accuracy <b>{test:.1%}</b>" in summary and "interval over families" in summary
