"""The shipped PBC manifests against the images (skipped when ../pbc is absent)."""
from pathlib import Path

import pandas as pd
import pytest

from leukonet.data.manifest import Manifest

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]
SHIPPED = Path(__file__).resolve().parents[2] / "data_manifests" / "pbc"


def test_a_rebuild_gives_the_shipped_manifest_and_split(pbc):
    m = Manifest.from_folder(pbc).dedup().group()
    shipped = pd.read_csv(SHIPPED / "manifest.csv")
    built = m.frame.drop(columns="split")
    assert list(built["path"]) == list(shipped["path"])
    for column in ("label", "label_index", "sha1", "width", "height", "group"):
        assert (built[column].to_numpy() == shipped[column].to_numpy()).all(), column
    reasons = m.rejects.set_index("path")
    assert reasons.at["neutrophil/.DS_169665.jpg", "reason"].startswith("not an image")
    assert set(reasons.index[reasons["kind"] == "conflict"]) == {
        "eosinophil/EO_225902.jpg", "neutrophil/BNE_191112.jpg"}
    assert (reasons["kind"] == "duplicate").sum() == 16
    parts = m.split(val=0.15, test=0.15, seed=0)
    for name, part in parts.items():
        assert list(part.frame["path"]) == list(pd.read_csv(SHIPPED / f"{name}.csv")["path"]), name
