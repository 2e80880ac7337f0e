import keras
import numpy as np

from leukonet.train.callbacks import PreciseBatchNorm


class _Batches:
    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i], None


def _model():
    inp = keras.Input((4,))
    x = keras.layers.BatchNormalization(momentum=0.99, name="bn_live")(inp)
    frozen = keras.layers.BatchNormalization(name="bn_frozen")
    frozen.trainable = False
    out = keras.layers.Dense(2)(frozen(x))
    return keras.Model(inp, out)


def test_statistics_become_the_mean_over_clean_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0 * i, 1.0 + i, (16, 4)).astype("float32") for i in range(3)]
    model = _model()
    frozen_before = model.get_layer("bn_frozen").moving_mean.numpy().copy()
    cb = PreciseBatchNorm(_Batches(batches), batches=2)  # only the first two are used
    cb.set_model(model)
    cb.on_test_begin()
    live = model.get_layer("bn_live")
    np.testing.assert_allclose(live.moving_mean.numpy(),
                               np.mean([b.mean(0) for b in batches[:2]], axis=0), rtol=1e-5)
    np.testing.assert_allclose(live.moving_variance.numpy(),
                               np.mean([b.var(0) for b in batches[:2]], axis=0), rtol=1e-4)
    assert live.momentum == 0.99  # restored for training
    np.testing.assert_array_equal(model.get_layer("bn_frozen").moving_mean.numpy(), frozen_before)


def test_a_run_without_validation_re_estimates_at_each_epoch_end():
    rng = np.random.default_rng(1)
    batches = [rng.normal(5.0, 2.0, (16, 4)).astype("float32") for _ in range(2)]
    for at_epoch_end in (False, True):
        model = _model()
        cb = PreciseBatchNorm(_Batches(batches), batches=2, at_epoch_end=at_epoch_end)
        cb.set_model(model)
        cb.on_epoch_end(0)
        mean = model.get_layer("bn_live").moving_mean.numpy()
        if at_epoch_end:
            np.testing.assert_allclose(mean, np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-5)
        else:  # validation's on_test_begin does it instead
            np.testing.assert_array_equal(mean, np.zeros(4, "float32"))
