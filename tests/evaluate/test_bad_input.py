"""Bad input to fit, predict, explain and evaluate: one line that says what to do, never a
traceback, a silent success or a silently wrong decode."""
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import leukonet
from leukonet.cli import main
from leukonet.errors import LeukonetError
from tests.conftest import demo_fit_config, demo_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    _, root = demo_split(base, (8, 3), 3)
    r = leukonet.fit(demo_fit_config(base, root, epochs=1, run_dir=str(base / "run")), verbose=0)
    return r, base, root


def _error_line(capsys, code, expected):
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err, err


def test_an_image_that_went_bad_after_the_build_stops_fit_in_one_line(run, tmp_path):
    r, base, root = run
    bad_root = tmp_path / "data"
    shutil.copytree(root, bad_root)
    victim = pd.read_csv(base / "train.csv")["path"].iloc[0]
    (bad_root / victim).write_bytes(b"garbage")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    done = subprocess.run(
        [sys.executable, "-m", "leukonet", "fit", "--manifest", str(base / "train.csv"),
         "--val-manifest", str(base / "val.csv"), "--data-root", str(bad_root), "--image-size",
         "30x40", "--backbone", "simple_cnn", "--head", "gap", "--weights", "none", "--epochs",
         "1", "--batch-size", "64", "--workers", "1", "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 2
    # TensorFlow's ~170-line PyFunc traceback is gone; leukonet's line is there, and logged
    assert "Traceback" not in done.stderr and "PyFunc" not in done.stderr, done.stderr[-3000:]
    assert f"error: {bad_root / victim}: not an image" in done.stderr
    assert f"{victim}: not an image" in (tmp_path / "run" / "train.log").read_text()


def test_predict_never_overwrites_without_asking_nor_writes_into_a_run(run, tmp_path, capsys):
    r, base, root = run
    image = sorted((root / "TEST").rglob("*.png"))[0]
    out = tmp_path / "p.csv"
    out.write_text("mine")
    _error_line(capsys, main(["predict", str(r.path), str(image), "-o", str(out)]),
                "p.csv: exists; pass --overwrite")
    assert out.read_text() == "mine"
    assert main(["predict", str(r.path), str(image), "-o", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    model = (r.path / "model.keras").read_bytes()
    _error_line(capsys, main(["predict", str(r.path), str(image), "-o", str(r.path / "model.keras"),
                              "--overwrite"]), "a file of the run")
    assert (r.path / "model.keras").read_bytes() == model


def test_predict_takes_a_manifest_without_labels_and_names_unreadable_files(run, tmp_path, capsys):
    r, base, root = run
    paths = pd.read_csv(base / "test.csv")["path"].head(4).tolist()
    (root / "broken.png").write_bytes(b"not a png")
    try:
        pd.DataFrame(dict(path=paths + ["broken.png"])).to_csv(tmp_path / "list.csv", index=False)
        assert main(["predict", str(r.path), "--manifest", str(tmp_path / "list.csv"),
                     "--data-root", str(root), "-o", str(tmp_path / "p.csv")]) == 0
        captured = capsys.readouterr()
        assert "unreadable: broken.png: not an image" in captured.err
        table = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
        assert (table["error"] == "").sum() == 4
        pd.DataFrame(dict(file=paths)).to_csv(tmp_path / "nopath.csv", index=False)
        _error_line(capsys, main(["predict", str(r.path), "--manifest", str(tmp_path / "nopath.csv"),
                                  "--data-root", str(root), "-o", str(tmp_path / "q.csv")]),
                    "no `path` column")
        # a single unreadable file: the reason, not only "no readable image"
        _error_line(capsys, main(["predict", str(r.path), str(root / "broken.png"), "-o",
                                  str(tmp_path / "one.csv")]),
                    "no readable image to predict (") 
    finally:
        (root / "broken.png").unlink()


def test_predict_and_explain_have_the_max_pixels_flag_they_advise(run, tmp_path, capsys):
    r, base, root = run
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 200), (200, 150, 150)).save(big)
    _error_line(capsys, main(["predict", str(r.path), str(big), "-o", str(tmp_path / "p.csv"),
                              "--max-pixels", "1000"]), "raise --max-pixels")
    assert main(["predict", str(r.path), str(big), "-o", str(tmp_path / "p.csv"),
                 "--max-pixels", "100000"]) == 0
    # a flat pink square is nothing like the training cells: that prediction warns so
    assert "out of domain: 1 of 1" in capsys.readouterr().err
    _error_line(capsys, main(["explain", str(r.path), str(big), "-o", str(tmp_path / "cam"),
                              "--max-pixels", "1000"]), "raise --max-pixels")


def test_explain_with_only_unreadable_images_fails_with_the_reasons(run, tmp_path, capsys):
    r, base, root = run
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"nope")
    _error_line(capsys, main(["explain", str(r.path), str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                              "-o", str(tmp_path / "cam")]), "no readable image to explain")


def test_explain_says_nothing_of_glyphs_the_font_lacks(run, tmp_path):
    r, base, root = run
    source = sorted((root / "TEST").rglob("*.png"))[0]
    odd = tmp_path / "細胞_🩸.png"
    shutil.copy(source, odd)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = r.explain([odd], out_dir=tmp_path / "cam")
    assert len(fig.leukonet_written) == 1
    assert not [w for w in caught if "Glyph" in str(w.message)], [(str(w.message), w.filename, w.lineno) for w in caught if "Glyph" in str(w.message)][:2]


def test_a_test_manifest_as_training_data_is_refused(run, tmp_path, capsys):
    r, base, root = run
    _error_line(capsys, main(["fit", "--manifest", str(base / "test.csv"), "--data-root", str(root),
                              "--backbone", "simple_cnn", "--weights", "none", "--run-dir",
                              str(tmp_path / "run")]), "rows are test rows")
    assert not (tmp_path / "run").exists()


def test_a_class_absent_from_an_evaluation_prints_n_a(run, tmp_path, capsys):
    r, base, root = run
    test = pd.read_csv(base / "test.csv")
    test[test["label"] != "synthetic_monocyte"].to_csv(tmp_path / "three.csv", index=False)
    shutil.copy(base / "classes.json", tmp_path / "classes.json")
    assert main(["evaluate", str(r.path), "--manifest", str(tmp_path / "three.csv"), "--data-root",
                 str(root), "-o", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("synthetic_monocyte"))
    assert "n/a" in row and "0.0000" not in row.split()[2:4]
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["per_class"]["synthetic_monocyte"]["recall"] is None


def test_pillow_bomb_warning_is_not_printed_for_an_image_we_reject(tmp_path):
    big = tmp_path / "big.png"
    Image.new("1", (10_000, 9_000)).save(big)  # 90 MP: past Pillow's warning, 1-bit: small
    code = ("from leukonet.data import images\n"
            "try:\n    images.open_rgb(%r)\nexcept images.ImageError as e:\n    print(e.reason)"
            % str(big))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("image too large (10000 x 9000")
    assert "DecompressionBombWarning" not in done.stderr and done.stderr == ""


def test_fit_warns_when_a_class_has_no_validation_images(run, tmp_path):
    r, base, root = run
    val = pd.read_csv(base / "val.csv")
    val[val["label"] != "synthetic_monocyte"].to_csv(tmp_path / "val.csv", index=False)
    shutil.copy(base / "classes.json", tmp_path / "classes.json")
    done = leukonet.fit(demo_fit_config(base, root, epochs=1, run_dir=str(tmp_path / "run"),
                                        val_manifest=str(tmp_path / "val.csv")), verbose=0)
    assert "no validation images of synthetic_monocyte" in (done.path / "train.log").read_text()
