import json
import os

import pandas as pd
import pytest

from leukonet.ablate import ablate, expand, parse_grid, plan, summarise
from leukonet.cli import main
from leukonet.config import FitConfig
from leukonet.errors import LeukonetError
from tests.conftest import demo_split


def test_grid_product_and_zip():
    grid = parse_grid(["image_size=240x320,150x200,90x120", "batch_size=20,50,100"])
    assert grid["image_size"] == [[240, 320], [150, 200], [90, 120]]
    assert len(expand(grid)) == 9
    zipped = expand(grid, zip_axes=True)
    assert zipped == [{"image_size": [240, 320], "batch_size": 20},
                      {"image_size": [150, 200], "batch_size": 50},
                      {"image_size": [90, 120], "batch_size": 100}]
    with pytest.raises(LeukonetError, match="same number of values"):
        expand(parse_grid(["lr=0.1,0.01", "seed=1,2,3"]), zip_axes=True)


def test_bad_axes_and_values():
    with pytest.raises(LeukonetError, match="'imagesize' is not a fit option; valid axes: .*image_size"):
        parse_grid(["imagesize=90x120"])
    with pytest.raises(LeukonetError, match="batch_size: 'big' is not a valid int"):
        parse_grid(["batch_size=20,big"])
    base = FitConfig(backbone="inception_resnet_v2")
    with pytest.raises(LeukonetError, match=r"cell 1 \(image_size=60x80\): .*minimum of 75"):
        plan(base, parse_grid(["image_size=240x320,60x80"]))
    with pytest.raises(LeukonetError, match="unknown backbone"):
        plan(base, parse_grid(["backbone=vgg16,vgg99"]))


def test_summary_over_seeds():
    table = pd.DataFrame(dict(cell=range(4), lr=["0.1", "0.1", "0.01", "0.01"], seed=["0", "1", "0", "1"],
                              val_accuracy=[0.8, 0.9, 0.5, 0.7]))
    out = summarise(table, ["lr", "seed"]).set_index("lr")
    assert out.loc["0.1", "val_accuracy"].startswith("0.8500 ± 0.07")
    assert out.loc["0.01", "seeds"] == 2


@pytest.mark.slow
def test_ablation_runs_records_failures_and_resumes(tmp_path, capsys):
    _, root = demo_split(tmp_path, (6, 2), 3)
    base = FitConfig(manifest=str(tmp_path / "train.csv"), val_manifest=str(tmp_path / "val.csv"),
                     data_root=str(root), image_size=[30, 40], backbone="simple_cnn", head="gap",
                     weights="none", epochs=1, batch_size=8, workers=1)
    grid = parse_grid(["batch_size=8,16,5000"])  # the last cell fails: larger than the data
    out = tmp_path / "abl"
    lines = []
    table = ablate(base, grid, out, test_manifest=tmp_path / "test.csv", log=lines.append)
    assert len(table) == 3
    assert table.loc[0, "error"] == "" and table.loc[0, "test_accuracy"] >= 0
    assert "larger than the" in table.loc[2, "error"]
    # each cell against the first, paired over the test families, as `leukonet compare`
    diff = table.loc[1, "test_minus_first"]
    assert diff == pytest.approx(table.loc[1, "test_accuracy"] - table.loc[0, "test_accuracy"])
    assert table.loc[1, "test_minus_first_ci95_low"] <= diff <= table.loc[1, "test_minus_first_ci95_high"]
    assert pd.isna(table.loc[0, "test_minus_first"]) and pd.isna(table.loc[2, "test_minus_first"])
    assert set(pd.read_csv(out / "ablation.csv").columns) >= {
        "cell", "batch_size", "error", "val_accuracy", "test_accuracy", "epochs_run",
        "wall_seconds", "images_per_s", "peak_rss_mib"}
    assert (out / "ablation.png").is_file()
    lines.clear()
    again = ablate(base, grid, out, test_manifest=tmp_path / "test.csv", log=lines.append)
    assert "finished earlier, skipped" in lines[0] and "skipped" in lines[1] and "skipped" not in lines[2]
    assert again.loc[0, "val_accuracy"] == table.loc[0, "val_accuracy"]
    with pytest.raises(LeukonetError, match="another grid"):
        ablate(base, parse_grid(["batch_size=8,16"]), out)
    spec = json.loads((out / "ablation.json").read_text())
    assert spec["grid"] == {"batch_size": ["8", "16", "5000"]}
    assert main(["ablate", "--grid", "batch_size=8", "--out", str(tmp_path / "dry"), "--dry-run",
                 "--manifest", str(tmp_path / "train.csv")]) == 0
    assert "1 cells" in capsys.readouterr().out and not (tmp_path / "dry").exists()


@pytest.mark.slow
def test_killed_ablation_resumes_and_skips_finished_cells(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    _, root = demo_split(tmp_path, (6, 2), 3)
    out = tmp_path / "abl"
    args = [sys.executable, "-m", "leukonet", "ablate", "--grid", "lr=0.003,0.001,0.0003", "--out", str(out),
            "--manifest", str(tmp_path / "train.csv"), "--val-manifest", str(tmp_path / "val.csv"),
            "--data-root", str(root), "--image-size", "30x40", "--backbone", "simple_cnn", "--head", "gap",
            "--weights", "none", "--epochs", "1", "--batch-size", "8", "--workers", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        cells = sorted(out.glob("cell000_*")) if out.exists() else []
        if cells and (cells[0] / "metrics.json").is_file():
            break
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # the ablation and the cell it is running
    proc.wait()
    done_before = {p.name for p in out.glob("cell*") if (p / "metrics.json").is_file()}
    assert done_before and len(done_before) < 3
    lines = []
    # the options the command line gave, now through the API
    base = FitConfig(manifest=str(tmp_path / "train.csv"), val_manifest=str(tmp_path / "val.csv"),
                     data_root=str(root), image_size=[30, 40], backbone="simple_cnn", head="gap",
                     weights="none", epochs=1, batch_size=8, workers=1)
    table = ablate(base, parse_grid(["lr=0.003,0.001,0.0003"]), out, log=lines.append)
    skipped = [l for l in lines if "finished earlier, skipped" in l]
    assert len(skipped) == len(done_before)
    assert table["val_accuracy"].notna().all() and len(table) == 3
