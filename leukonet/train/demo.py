"""``leukonet fit --demo``: the built-in main job. Fine-tune the shipped PBC weights on a
small sample of REAL white blood cells that ships inside the package
(``leukonet/data/sample_blood_cells``, MIT-licensed, README there), then score it on
held-out cells from other source cells.

May import: leukonet.config, leukonet.presets, leukonet.io and leukonet.errors; nothing
from leukonet.train.
"""
import filecmp
import shutil
import time
from pathlib import Path

from leukonet.config import FitConfig
from leukonet.errors import LeukonetError

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample_blood_cells"
DEMO_DIR = Path("leukonet-demo")
# 20 passes over 288 images: ~50 s of training on 2 CPU cores (benchmarks/demo.py times it)
EPOCHS = 20


def copy_sample(workdir=DEMO_DIR) -> Path:
    """The sample copied to ``workdir`` (short paths for the commands a user runs next);
    files already there and identical are kept, a different file is never overwritten."""
    workdir = Path(workdir)
    if not (SAMPLE / "train.csv").is_file():
        raise LeukonetError(f"{SAMPLE}: the demo's sample is missing from this installation; "
                            f"reinstall leukonet (pip install -e .)")
    for src in sorted(p for p in SAMPLE.rglob("*") if p.is_file()):
        dest = workdir / src.relative_to(SAMPLE)
        if dest.exists():
            if not filecmp.cmp(src, dest, shallow=False):
                raise LeukonetError(f"{dest}: differs from the demo's sample; move {workdir} "
                                    f"away (or run from another folder) and run the demo again")
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return workdir


def demo_config(workdir=DEMO_DIR, **overrides) -> FitConfig:
    """Copy the sample under ``workdir``; return the run config: the CPU recipe for
    blood-cells (preset blood-cells-cpu) from the shipped PBC weights."""
    from leukonet.presets import PRESETS

    workdir = copy_sample(workdir)
    config = FitConfig.from_dict(dict(
        PRESETS["blood-cells-cpu"], weights="pbc", epochs=EPOCHS,
        manifest=str(workdir / "train.csv"), val_manifest=str(workdir / "val.csv"),
        data_root=str(workdir / "images"), name=f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
        extra={"note": "leukonet fit --demo: real blood cells (leukonet-demo/README.md), "
                       "fine-tuned from the shipped pbc weights"},
    ), source="the demo")
    return config.replace(**overrides) if overrides else config


def heldout_manifest(workdir=DEMO_DIR) -> Path:
    return Path(workdir) / "heldout.csv"
