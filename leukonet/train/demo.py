"""``leukonet fit --demo``: the built-in main job on the SYNTHETIC demo data set."""
import time
from pathlib import Path

from leukonet.config import FitConfig

DEMO_DIR = Path("leukonet-demo")


def demo_config(workdir=DEMO_DIR, **overrides) -> FitConfig:
    """Make the demo data and its manifests under ``workdir``; return the run config."""
    from leukonet.data.demo import make_demo_data
    from leukonet.data.manifest import Manifest

    workdir = Path(workdir)
    data = make_demo_data(workdir / "data")
    manifests = workdir / "manifests"
    if not (manifests / "val.csv").is_file():
        m = Manifest.from_folder(data).dedup().group()
        for name, part in m.split(val=0.2, seed=0).items():  # TEST folder -> test.csv
            part.to_csv(manifests / f"{name}.csv", overwrite=True, rejects=False)
    config = FitConfig(
        manifest=str(manifests / "train.csv"), val_manifest=str(manifests / "val.csv"),
        data_root=str(data), image_size=[60, 80], batch_size=32, backbone="simple_cnn",
        head="gap", weights="none", dropout=0.2, epochs=12, lr=3e-3, lr_patience=2,
        stop_patience=5, name=f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
        extra={"note": "SYNTHETIC demo data (leukonet fit --demo)"},
    )
    return config.replace(**overrides) if overrides else config
