"""The out-of-domain check: a run describes its training images; every prediction path
scores images against that description and flags those unlike them."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import leukonet
from leukonet.cli import main
from leukonet.errors import LeukonetError
from leukonet.evaluate import domain as D
from leukonet.evaluate.predict import OUT_OF_DOMAIN, differential_count
from tests.conftest import demo_fit_config, demo_split


def test_fit_domain_passes_its_own_and_flags_a_shifted_set():
    rng = np.random.default_rng(0)
    means = rng.normal(0, 3, (3, 16))
    y = rng.integers(0, 3, 3000)
    x = means[y] + rng.normal(0, 1, (3000, 16))
    val = means[rng.integers(0, 3, 1000)] + rng.normal(0, 1, (1000, 16))
    test = means[rng.integers(0, 3, 1000)] + rng.normal(0, 1, (1000, 16))
    d = D.fit_domain(x, y, val)
    assert d.info["val_pass"] == pytest.approx(0.95, abs=0.002)
    _, flagged = d.flag(test)
    assert 0.02 < flagged.mean() < 0.09  # about 5 % of new in-domain rows
    other = test + 4.0  # another lab: the same classes, shifted features
    assert d.flag(other)[1].mean() > 0.99
    # the class-conditional score: a point between two class means is unlike both
    assert d.score((means[:1] + means[1:2]) / 2)[0] > d.threshold


def test_domain_saves_and_loads(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 8)), rng.integers(0, 2, 200)
    d = D.fit_domain(x, y, rng.normal(size=(50, 8)), info={"note": "t"})
    d.save(tmp_path)
    back = D.Domain.load(tmp_path)
    assert back.threshold == pytest.approx(d.threshold)
    np.testing.assert_allclose(back.score(x[:20]), d.score(x[:20]), rtol=1e-4)
    assert back.info["note"] == "t" and D.Domain.load(tmp_path / "nothing") is None
    (tmp_path / D.FILE).write_bytes(b"not an npz")
    with pytest.raises(LeukonetError, match="leukonet calibrate"):
        D.Domain.load(tmp_path)


def test_differential_count_counts_out_of_domain_apart():
    table = pd.DataFrame(dict(path=list("abcde"), predicted=["X", "Y", "X", "X", ""],
                              out_of_domain=[False, False, True, True, False],
                              error=["", "", "", "", "unreadable"]))
    counts = differential_count(table, ["X", "Y"])
    assert counts.loc["X", "count"] == 1 and counts.loc["Y", "count"] == 1
    assert counts.loc[OUT_OF_DOMAIN, "count"] == 2 and counts.loc["total", "count"] == 4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("domain")
    _, root = demo_split(base, (8, 3), 3)
    r = leukonet.fit(demo_fit_config(base, root, epochs=2, run_dir=str(base / "run")))
    # other images: flat noise, nothing like the drawn cells
    other = base / "other"
    other.mkdir()
    rng = np.random.default_rng(0)
    for k in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(other / f"n{k}.png")
    return r, base, root, other


def test_fit_stores_the_description_and_predict_flags_other_images(run, tmp_path, capsys):
    r, base, root, other = run
    assert (r.path / D.FILE).is_file()  # written at the end of fit
    d = r.domain
    assert d.info["val_pass"] >= 0.9 and d.info["train_images"] == len(pd.read_csv(base / "train.csv"))
    own = r.predict(manifest=base / "val.csv", data_root=root)
    assert {"domain_score", "out_of_domain"} <= set(own)
    assert own["out_of_domain"].mean() <= 0.2
    assert main(["predict", str(r.path), str(other), "-o", str(tmp_path / "p.csv")]) == 0
    captured = capsys.readouterr()
    table = pd.read_csv(tmp_path / "p.csv")
    assert table["out_of_domain"].all()
    assert "out of domain: 12 of 12 images" in captured.err and "--weights" in captured.err
    counts = pd.read_csv(tmp_path / "p.counts.csv", index_col=0)
    assert counts.loc[OUT_OF_DOMAIN, "count"] == 12


def test_evaluate_records_the_check(run, tmp_path, capsys):
    r, base, root, _ = run
    assert main(["evaluate", str(r.path), "--manifest", str(base / "test.csv"), "--data-root",
                 str(root), "-o", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["domain"]["images"] == m["images"] and "accuracy_in_domain" in m["domain"]
    assert "out of domain:" in capsys.readouterr().out
    assert "out_of_domain" in pd.read_csv(tmp_path / "ev" / "predictions.csv")


def test_explain_marks_out_of_domain_images(run, tmp_path, capsys):
    r, _, _, other = run
    assert main(["explain", str(r.path), str(other / "n0.png"), "-o", str(tmp_path / "x")]) == 0
    assert "out of domain: 1 of 1" in capsys.readouterr().err


def test_old_run_predicts_with_a_note_and_calibrate_adds_the_check(run, tmp_path, capsys):
    import shutil

    r, base, root, other = run
    old = tmp_path / "old"
    shutil.copytree(r.path, old)
    (old / D.FILE).unlink()
    assert main(["predict", str(old), str(other), "-o", str(tmp_path / "p.csv")]) == 0
    err = capsys.readouterr().err
    assert "no out-of-domain check" in err and f"leukonet calibrate {old}" in err
    assert "out_of_domain" not in pd.read_csv(tmp_path / "p.csv")
    assert main(["calibrate", str(old)]) == 0
    assert "validation images pass" in capsys.readouterr().out
    assert main(["calibrate", str(old)]) == 2  # exists: --overwrite to recompute
    assert "--overwrite" in capsys.readouterr().err
    again = leukonet.load_run(old).domain
    assert again.threshold == pytest.approx(r.domain.threshold, rel=1e-3)


def test_shipped_pbc_carries_its_description():
    d = leukonet.load_run("pbc").domain
    assert d is not None and d.means.shape[0] == 8
    assert d.info["train_images"] >= 4000 and d.info["val_pass"] == pytest.approx(0.95, abs=0.01)
