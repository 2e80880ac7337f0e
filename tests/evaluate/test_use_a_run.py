"""evaluate / predict / explain / export / report on a small trained run."""
import json

import numpy as np
import pandas as pd
import pytest

import leukonet
from leukonet.cli import main
from leukonet.errors import LeukonetError
from leukonet.evaluate.report import SECTIONS
from tests.conftest import demo_fit_config, demo_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    _, root = demo_split(base, (8, 3), 3)
    r = leukonet.fit(demo_fit_config(base, root, epochs=3, run_dir=str(base / "run")))
    return r, base, root


def test_evaluate_writes_metrics_tables_and_figures(run):
    r, base, root = run
    ev = r.evaluate(base / "test.csv", root, tta=2)
    test = pd.read_csv(base / "test.csv")
    assert ev.metrics["images"] == len(test)
    assert ev.tables["confusion"].to_numpy().sum() == len(test)
    for name in ("metrics.json", "predictions.csv", "per_class.csv", "confusion.csv",
                 "confusion_normalised.csv", "reliability.csv", "confusion.png", "reliability.png", "curves.png"):
        assert (ev.dir / name).is_file(), name
    saved = json.loads((ev.dir / "metrics.json").read_text())
    assert saved["accuracy"] == pytest.approx(ev.metrics["accuracy"])
    assert saved["tta"] == 2
    predictions = pd.read_csv(ev.dir / "predictions.csv")
    assert (predictions["predicted"] == predictions["label"]).mean() == pytest.approx(ev.metrics["accuracy"])
    assert set(ev.figures) >= {"confusion", "reliability", "curves"}
    # the test manifest has families: accuracy counted by family, written per family
    families = pd.read_csv(ev.dir / "families.csv")
    assert len(families) == saved["by_family"]["families"] == test["group"].nunique()
    assert families["images"].sum() == len(test)
    assert families["correct"].sum() == (predictions["predicted"] == predictions["label"]).sum()
    low, high = saved["by_family"]["accuracy_ci95_over_families"]
    assert low <= ev.metrics["accuracy"] <= high
    # each prediction names its family, so `leukonet compare` can pair evaluations by family
    by_path = test.set_index("path")["group"].astype(str)
    assert list(predictions["group"].astype(str)) == list(by_path[predictions["path"]])


def test_compare_pairs_an_evaluation_with_another_of_the_same_manifest(run, tmp_path, capsys):
    r, base, root = run
    plain = r.evaluate(base / "test.csv", root, out_dir=tmp_path / "plain", figures=False)
    assert main(["evaluate", str(r.path), "--manifest", str(base / "test.csv"), "--data-root", str(root),
                 "--tta", "4", "--out", str(tmp_path / "tta")]) == 0
    tta = json.loads((tmp_path / "tta" / "metrics.json").read_text())
    assert tta["tta"] == 4
    out = tmp_path / "compare.json"
    assert main(["compare", str(tmp_path / "tta"), str(tmp_path / "plain"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["families"] == pd.read_csv(base / "test.csv")["group"].nunique()
    assert result["family_source"] == "families of the evaluated manifest"
    assert result["difference"] == pytest.approx(tta["accuracy"] - plain.metrics["accuracy"])
    assert result["wrong_in_both"] + result["wrong_only_a"] == round((1 - tta["accuracy"]) * len(pd.read_csv(base / "test.csv")))
    assert f"{100 * result['difference']:+.2f} points" in printed
    # a run directory is looked up under eval/<manifest name>
    assert main(["compare", str(r.path), str(tmp_path / "plain"), "--eval", "nosuch"]) == 2
    assert "run `leukonet evaluate" in capsys.readouterr().err


def test_evaluate_rejects_unknown_classes(run, tmp_path):
    r, base, root = run
    frame = pd.read_csv(base / "test.csv")
    frame.loc[0, "label"] = "synthetic_basophil"
    frame.to_csv(tmp_path / "odd.csv", index=False)
    with pytest.raises(LeukonetError, match="synthetic_basophil unknown to the model, which knows synthetic_eosinophil"):
        r.evaluate(tmp_path / "odd.csv", root)


def test_predict_differential_count_matches_the_csv(run, tmp_path, capsys):
    r, base, root = run
    folder = root / "TEST"
    (folder / "synthetic_monocyte" / "broken.png").write_bytes(b"not a png")
    try:
        out = tmp_path / "pred.csv"
        assert main(["predict", str(r.path), str(folder), "-o", str(out), "--min-confidence", "0.5"]) == 0
    finally:
        (folder / "synthetic_monocyte" / "broken.png").unlink()
    table = pd.read_csv(out, keep_default_na=False)
    counts = pd.read_csv(tmp_path / "pred.counts.csv", index_col=0)
    n_images = len(list(folder.rglob("*.png")))
    assert len(table) == n_images + 1
    assert table.loc[table["path"].str.endswith("broken.png"), "error"].iloc[0].startswith("not an image")
    predicted = table[table["error"] == ""]
    assert counts.loc["total", "count"] == len(predicted) == n_images
    assert counts.drop(index="total")["count"].sum() == n_images
    # images out of domain are counted apart; the classes count the rest
    flagged = predicted["out_of_domain"].astype(str) == "True"
    assert counts["count"].get("out of domain", 0) == flagged.sum()
    for label, row in counts.drop(index=["total", "out of domain"], errors="ignore").iterrows():
        assert row["count"] == (predicted.loc[~flagged, "predicted"] == label).sum()
    prob_cols = [c for c in table.columns if c.startswith("p_")]
    np.testing.assert_allclose(predicted[prob_cols].astype(float).sum(axis=1), 1.0, rtol=1e-4)
    assert "differential count" in capsys.readouterr().out


def test_explain_writes_overlays(run, tmp_path):
    r, base, root = run
    files = sorted((root / "TEST" / "synthetic_eosinophil").glob("*.png"))[:2]
    fig = r.explain(files, out_dir=tmp_path / "cam")
    assert len(fig.leukonet_written) == 2 and all(p.is_file() for p in fig.leukonet_written)


@pytest.mark.parametrize("fmt", ["keras", "saved_model", "tflite", "onnx"])
def test_export_round_trips(run, tmp_path, fmt):
    r, base, root = run
    if fmt == "onnx":
        pytest.importorskip("tf2onnx", reason="onnx export needs tf2onnx (pip install leukonet[onnx])")
        ort = pytest.importorskip("onnxruntime", reason="the round trip needs onnxruntime")
    out = r.export(fmt, tmp_path / f"model.{fmt}")
    x = np.random.default_rng(0).uniform(0, 255, (3, 30, 40, 3)).astype("float32")
    expected = r.model.predict(x, verbose=0)
    if fmt == "keras":
        got = leukonet.load_model(out).predict(x, verbose=0)
    elif fmt == "saved_model":
        from leukonet.tf_only import saved_model_predict

        got = np.asarray(saved_model_predict(out, x))
    elif fmt == "tflite":
        from leukonet.tf_only import tflite_predict

        got = tflite_predict(out, x)[0]
    else:
        session = ort.InferenceSession(str(out))
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_report_has_every_section(run):
    r, base, root = run
    r.evaluate(base / "test.csv", root)
    page = leukonet.load_run(r.path)
    from leukonet.evaluate.report import report

    html = report(page).read_text()
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in html
    assert html.count("data:image/png;base64,") >= 5
    assert "Leakage audit: OK" in html
    # the summary leads (data, model, headline with its interval); the configuration is last, folded
    order = [html.index(f"<h2>{s}</h2>") for s in SECTIONS]
    assert order == sorted(order) and SECTIONS[0] == "Summary" and SECTIONS[-1] == "Configuration"
    summary = html[order[0]:order[1]]
    assert "accuracy <b>" in summary and "95 % interval over" in summary and "Model: <b>" in summary
    assert "<table" in summary and "data:image/png" in summary  # per-class table, confusion matrix
    assert "<details><summary>config.json" in html[order[-1]:]
    assert "@media print" in html


def test_report_top_losses_say_the_true_thing(run, tmp_path):
    """An evaluation that made no error says so ("N of N right"), not "no evaluation yet"."""
    import shutil

    from leukonet.evaluate.report import _top_losses

    r, base, root = run
    ev = r.evaluate(base / "test.csv", root, out_dir=tmp_path / "e", figures=False)
    predictions = pd.read_csv(ev.dir / "predictions.csv")
    text = _top_losses(r, "e", ev.dir, ev.metrics)
    wrong = int((predictions["predicted"] != predictions["label"]).sum())
    if wrong:
        assert f"{wrong} of {len(predictions)} wrong" in text
    perfect = tmp_path / "perfect"
    shutil.copytree(ev.dir, perfect)
    predictions["predicted"] = predictions["label"]
    predictions.to_csv(perfect / "predictions.csv", index=False)
    text = _top_losses(r, "test", perfect, ev.metrics)
    assert f"no errors on test: {len(predictions)} of {len(predictions)} right" in text


def test_cli_errors(run, tmp_path, capsys):
    r, base, root = run
    (tmp_path / "empty_run").mkdir()
    assert main(["evaluate", str(tmp_path / "empty_run"), "--manifest", str(base / "test.csv"),
                 "--data-root", str(root)]) == 2
    assert "no model.keras here" in capsys.readouterr().err
    (tmp_path / "nothing").mkdir()
    assert main(["predict", str(r.path), str(tmp_path / "nothing"), "-o", str(tmp_path / "p.csv")]) == 2
    assert "no images found" in capsys.readouterr().err
    assert main(["export", str(r.path), "--format", "coreml"]) == 2
    assert "unknown --format 'coreml'" in capsys.readouterr().err


def test_report_renders_in_a_headless_browser(run, tmp_path):
    import shutil
    import subprocess

    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium here (Debian: apt-get install chromium); .ci/run installs it")
    r, base, root = run
    from leukonet.evaluate.report import report

    r.evaluate(base / "test.csv", root)
    page = report(leukonet.load_run(r.path), tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    subprocess.run([*flags, "--window-size=1200,3000", f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int32)
    assert pixels.shape[:2] == (3000, 1200)
    coloured = (pixels.max(axis=2) - pixels.min(axis=2) > 40).mean()
    assert coloured > 0.02  # the embedded figures drew (text alone is grey)
    # the first screen (1200x900) shows the headline: its confusion matrix drew there
    first = tmp_path / "first.png"
    subprocess.run([*flags, "--window-size=1200,900", f"--screenshot={first}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(first).convert("RGB"), dtype=np.int32)
    assert (pixels.max(axis=2) - pixels.min(axis=2) > 40).mean() > 0.01
    # and it prints to PDF
    pdf = tmp_path / "report.pdf"
    subprocess.run([*flags, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.read_bytes().count(b"/Type /Page") >= 2
