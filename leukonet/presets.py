"""Named recipes: plain dicts of ``FitConfig`` fields (``leukonet fit --preset NAME``).

Each preset says where its numbers come from; flags given with ``--preset`` override it.
"""
from leukonet.config import FitConfig
from leukonet.errors import LeukonetError

PRESETS = {
    # From scratch on 2 CPU cores in under an hour (benchmarks/results/accuracy_cpu.md:
    # attempt 6, 34.2 min, TEST 87.9 % on the old split; attempt 8, TEST 87.25 %, validation
    # 80.9 % on the shipped keypoint-linked split): a 96x96 crop around the stained
    # nucleus, a wider simple_cnn, cosine decay, strong colour jitter, BatchNorm statistics
    # re-estimated before each validation.
    "blood-cells-cpu": dict(
        backbone="simple_cnn_wide", head="gap", dropout=0.3, weights="none",
        image_size=[96, 96], nucleus_crop=0.83, batch_size=64,
        rotate=180.0, flip=True, zoom=0.1, shift=0.06, brightness=0.2, contrast=0.2,
        hue=0.02, saturation=0.2,
        epochs=16, lr=2e-3, lr_schedule="cosine", stop_patience=100, label_smoothing=0.1,
        precise_bn=20,
    ),
}
# The same recipe, cross-validated and then refit in one command, the hour on 2 CPU cores
# (accuracy_cpu.md, attempt 26: 46 min; out of fold 85.15 %, the refit model 85.52 % on
# TEST): 3 folds of whole families and a final model on all the rows, 6 epochs each (the
# four fits of 16 epochs would take ~2 hours here), so its validation number predicts TEST where
# one split misses by 5-8 points; TEST itself is ~2 points below the 16-epoch preset.
PRESETS["blood-cells-cpu-cv"] = dict(PRESETS["blood-cells-cpu"], folds=3, refit=True, epochs=6)


def preset_config(name) -> FitConfig:
    """The ``FitConfig`` of preset ``name``."""
    try:
        values = PRESETS[name]
    except KeyError:
        raise LeukonetError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
    return FitConfig.from_dict(values, source=f"preset {name}")
