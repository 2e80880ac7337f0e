"""The `leukonet manifest` commands end to end, through the same main() the console script runs."""
import json

import pandas as pd

from leukonet.cli import main
from tests.conftest import write_tree


def test_build_split_subsample_audit_check(tmp_path, capsys):
    root = tmp_path / "data"
    write_tree(root, {"A": 12, "B": 12, "C": 12}, copies=3, split="TRAIN", seed=1)
    write_tree(root, {"A": 3, "B": 3, "C": 3}, copies=2, split="TEST", seed=2)
    (root / "TRAIN" / "A" / ".DS_Store").write_bytes(b"Bud1" + bytes(64))
    out = tmp_path / "m" / "manifest.csv"
    assert main(["manifest", "build", str(root), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "families: 45, 100.00% hold a single label" in text
    frame = pd.read_csv(out)
    assert set(frame["split"]) == {"TRAIN", "TEST"} and len(frame) == 126
    assert json.loads((out.parent / "classes.json").read_text())["classes"] == ["A", "B", "C"]
    rejects = pd.read_csv(out.parent / "manifest.rejects.csv")
    assert rejects["path"].tolist() == ["TRAIN/A/.DS_Store"]

    assert main(["manifest", "split", str(out), "--val", "0.25", "--seed", "0"]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "val" in text and "families" in text
    parts = {n: pd.read_csv(out.parent / f"{n}.csv") for n in ("train", "val", "test")}
    assert set(parts["test"]["path"]) == set(frame[frame["split"] == "TEST"]["path"])
    assert not set(parts["train"]["group"]) & set(parts["val"]["group"])
    assert main(["manifest", "split", str(out)]) == 2  # refuses to overwrite
    assert "pass --overwrite" in capsys.readouterr().err

    train = out.parent / "train.csv"
    assert main(["manifest", "subsample", str(train), "--fraction", "0.5", "0.1"]) == 0
    half = pd.read_csv(out.parent / "train_50pct.csv")
    tenth = pd.read_csv(out.parent / "train_10pct.csv")
    assert set(tenth["path"]) <= set(half["path"]) and set(tenth["label"]) == {"A", "B", "C"}

    assert main(["manifest", "audit", str(train), str(out.parent / "test.csv"),
                 "--root", str(root)]) == 0
    text = capsys.readouterr().out
    assert "OK: no link" in text.splitlines()[-1]
    assert main(["manifest", "audit", str(train), str(out.parent / "val.csv")]) == 0

    assert main(["manifest", "check", str(train), "--root", str(root)]) == 0
    victim = root / parts["train"]["path"].iloc[0]
    victim.unlink()
    assert main(["manifest", "check", str(train), "--root", str(root)]) == 1
    assert f"{parts['train']['path'].iloc[0]}: file not found" in capsys.readouterr().out


def test_audit_flags_a_leaky_pair(tmp_path, capsys):
    root = tmp_path / "data"
    write_tree(root, {"A": 4, "B": 4}, copies=3)
    out = tmp_path / "manifest.csv"
    assert main(["manifest", "build", str(root), "-o", str(out)]) == 0
    frame = pd.read_csv(out)
    frame.iloc[::2].to_csv(tmp_path / "x.csv", index=False)  # a naive row split
    frame.iloc[1::2].to_csv(tmp_path / "y.csv", index=False)
    capsys.readouterr()
    assert main(["manifest", "audit", str(tmp_path / "x.csv"), str(tmp_path / "y.csv"),
                 "--root", str(root)]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("LEAK")


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["manifest", "build", str(tmp_path / "nowhere"), "-o", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "does not exist" in err
    csv = tmp_path / "labels.csv"
    csv.write_text("file,cls\na.png,A\n")
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["manifest", "build", str(tmp_path), "-o", str(tmp_path / "m.csv"),
                 "--labels-csv", str(csv), "--path-column", "Image"]) == 2
    err = capsys.readouterr().err
    assert "no column 'Image' or 'label'" in err and err.count("\n") == 1
