import keras
import numpy as np
import pytest

from leukonet.config import FitConfig
from leukonet.evaluate.gradcam import GradCAM
from leukonet.models.build import build_model

pytestmark = pytest.mark.slow


def _images(n, rng, size=48):
    """Noise everywhere; only the top-left 16x16 patch tells the class (red or blue)."""
    x = rng.uniform(60, 200, (n, size, size, 3)).astype("float32")
    y = rng.integers(0, 2, n)
    x[y == 0, 4:20, 4:20] = [230, 30, 30]
    x[y == 1, 4:20, 4:20] = [30, 30, 230]
    return x, y


def test_gradcam_peaks_on_the_discriminative_region():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = _images(256, rng)
    model = build_model(FitConfig(backbone="simple_cnn", head="gap", weights="none", dropout=0.0), 2, (48, 48))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    xt, yt = _images(20, np.random.default_rng(1))
    maps, probs = GradCAM(model)(xt)
    assert (probs.argmax(1) == yt).mean() >= 0.9
    peaks = [np.unravel_index(m.argmax(), m.shape) for m in maps]
    inside = np.mean([r < 26 and c < 26 for r, c in peaks])  # the patch, plus a receptive-field margin
    assert inside >= 0.8
    assert maps.shape == (20, 48, 48) and maps.min() >= 0 and maps.max() <= 1
