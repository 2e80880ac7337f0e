import json
import os

import pandas as pd
import pytest
from PIL import Image

from leukonet.data import scan
from leukonet.errors import LeukonetError
from tests.conftest import write_tree


def _img(path, color=(200, 100, 50)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), color).save(path)


def test_class_folders(tree):
    root, truth = tree
    result = scan.scan_folder(root)
    assert {c.path for c in result.candidates} == set(truth)
    assert all(c.split is None for c in result.candidates)
    assert {c.label for c in result.candidates} == {"EOSINOPHIL", "LYMPHOCYTE", "NEUTROPHIL"}


def test_split_folders_and_filter(tmp_path):
    write_tree(tmp_path, {"A": 1, "B": 1}, copies=1, split="TRAIN")
    write_tree(tmp_path, {"A": 1, "B": 1}, copies=1, split="TEST", seed=1)
    write_tree(tmp_path, {"A": 1}, copies=1, split="EXTRA", seed=2)
    result = scan.scan_folder(tmp_path)
    assert {c.split for c in result.candidates} == {"TRAIN", "TEST", "EXTRA"}
    assert {c.label for c in result.candidates} == {"A", "B"}
    only = scan.scan_folder(tmp_path, splits=["train", "test"])
    assert {c.split for c in only.candidates} == {"TRAIN", "TEST"}
    with pytest.raises(LeukonetError, match="no split folder named nope"):
        scan.scan_folder(tmp_path, splits=["nope"])


def test_missing_and_empty_root(tmp_path):
    with pytest.raises(LeukonetError, match="does not exist"):
        scan.scan_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LeukonetError, match="is empty"):
        scan.scan_folder(tmp_path / "empty")


def test_no_class_folders_is_an_error(tmp_path):
    _img(tmp_path / "a.png")
    with pytest.raises(LeukonetError, match="no class folders"):
        scan.scan_folder(tmp_path)


def test_all_class_folders_empty_is_an_error(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    with pytest.raises(LeukonetError, match="no class folders found"):
        scan.scan_folder(tmp_path)


def test_empty_class_folder_warns(tmp_path):
    _img(tmp_path / "A" / "a.png")
    (tmp_path / "B").mkdir()
    result = scan.scan_folder(tmp_path)
    assert [c.label for c in result.candidates] == ["A"]
    assert any("B/ holds no images" in n for n in result.notes)


def test_too_deep_is_an_error(tmp_path):
    _img(tmp_path / "a" / "b" / "c" / "x.png")
    with pytest.raises(LeukonetError, match="nested 3 folders deep"):
        scan.scan_folder(tmp_path)


def test_file_outside_class_folders_is_rejected(tmp_path):
    _img(tmp_path / "A" / "a.png")
    (tmp_path / "notes.txt").write_text("hello")
    result = scan.scan_folder(tmp_path)
    assert [r["path"] for r in result.rejects] == ["notes.txt"]
    assert "outside" in result.rejects[0]["reason"]


def test_labels_differing_by_case_and_spaces_are_merged(tmp_path):
    for i in range(3):
        _img(tmp_path / "TRAIN" / "NEUTROPHIL" / f"{i}.png")
    _img(tmp_path / "TEST" / "neutrophil " / "x.png")
    _img(tmp_path / "TEST" / "LYMPHOCYTE" / "y.png")
    result = scan.scan_folder(tmp_path)
    assert sorted({c.label for c in result.candidates}) == ["LYMPHOCYTE", "NEUTROPHIL"]
    assert any("'neutrophil ' read as 'NEUTROPHIL'" in n for n in result.notes)


@pytest.mark.skipif(os.name != "posix", reason="raw byte file names are a POSIX thing")
def test_non_utf8_file_name(tmp_path):
    _img(tmp_path / "A" / "ok.png")
    raw = os.path.join(os.fsencode(tmp_path / "A"), b"caf\xe9.png")
    Image.new("RGB", (8, 6)).save(os.fsdecode(raw), format="PNG")
    result = scan.scan_folder(tmp_path)
    paths = sorted(c.path for c in result.candidates)
    assert paths == ["A/café.png", "A/ok.png"]
    assert any("not UTF-8" in n for n in result.notes)
    assert scan.resolve(tmp_path, "A/café.png").is_file()


def test_resolve_refuses_escaping_paths(tmp_path):
    for bad in ["../x.jpg", "/etc/passwd", "a/../../x.jpg", "C:/x.jpg", "./C:/x.jpg",
                "a//../x.jpg", "..", "//x.jpg"]:
        with pytest.raises(LeukonetError, match="escapes the data root"):
            scan.resolve(tmp_path, bad, row=7)
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "b..c.png").write_bytes(b"x")  # dots inside a name are fine
    for good in ["A/b..c.png", "./A/b..c.png", "A//b..c.png"]:
        assert scan.resolve(tmp_path, good).samefile(tmp_path / "A" / "b..c.png")


def _labels(tmp_path, rows, columns=("file", "cls")):
    path = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def test_labels_csv(tmp_path):
    _img(tmp_path / "img" / "a.png")
    _img(tmp_path / "img" / "b.png")
    _img(tmp_path / "img" / "c.png")
    _img(tmp_path / "img" / "d.png")
    _img(tmp_path / "img" / "e.png")
    csv = _labels(tmp_path, [
        ["img/a.png", "N"], ["img\\b.png", "L"], ["img/c.png", ""], ["img/d.png", "N, L"],
        ["img/missing.png", "N"], ["img/e.png", "N,N"],
    ])
    result = scan.scan_labels_csv(tmp_path, csv, "file", "cls",
                                  label_map="N=NEUTROPHIL,L=LYMPHOCYTE")
    kept = {c.path: c.label for c in result.candidates}
    assert kept == {"img/a.png": "NEUTROPHIL", "img/b.png": "LYMPHOCYTE", "img/e.png": "NEUTROPHIL"}
    reasons = {r["path"]: r["reason"] for r in result.rejects}
    assert reasons["img/c.png"].startswith("no label (row 4)")
    assert reasons["img/d.png"].startswith("several labels")
    assert reasons["img/missing.png"].startswith("file not found")
    assert any("Windows separators" in n for n in result.notes)


def test_labels_csv_unmapped_code_is_rejected(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.png")
    csv = _labels(tmp_path, [["a.png", "1"], ["b.png", "9"]])
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"1": "NEUTROPHIL"}))
    result = scan.scan_labels_csv(tmp_path, csv, "file", "cls", label_map=str(mapping))
    assert [c.label for c in result.candidates] == ["NEUTROPHIL"]
    assert "not in --label-map" in result.rejects[0]["reason"]


def test_labels_csv_path_format(tmp_path):
    _img(tmp_path / "BloodImage_00007.jpg")
    csv = _labels(tmp_path, [["7", "NEUTROPHIL"]], columns=("Image", "Category"))
    result = scan.scan_labels_csv(tmp_path, csv, "Image", "Category",
                                  path_format="BloodImage_{:05d}.jpg")
    assert [c.path for c in result.candidates] == ["BloodImage_00007.jpg"]


def test_labels_csv_missing_columns(tmp_path):
    _img(tmp_path / "a.png")
    csv = _labels(tmp_path, [["a.png", "N"]])
    with pytest.raises(LeukonetError, match=r"no column 'path'.*columns are 'file', 'cls'"):
        scan.scan_labels_csv(tmp_path, csv, "path", "cls")


def test_labels_csv_escaping_path_names_the_row(tmp_path):
    _img(tmp_path / "a.png")
    csv = _labels(tmp_path, [["a.png", "N"], ["../x.jpg", "N"]])
    with pytest.raises(LeukonetError, match=r"labels.csv:3: path '../x.jpg' escapes"):
        scan.scan_labels_csv(tmp_path, csv, "file", "cls")


def test_label_map_forms(tmp_path):
    csv_map = tmp_path / "m.csv"
    csv_map.write_text("1,NEUTROPHIL\n2,LYMPHOCYTE\n")
    assert scan.read_label_map(str(csv_map)) == {"1": "NEUTROPHIL", "2": "LYMPHOCYTE"}
    assert scan.read_label_map("a=x, b=y") == {"a": "x", "b": "y"}
    with pytest.raises(LeukonetError, match="code=label"):
        scan.read_label_map("nonsense")
