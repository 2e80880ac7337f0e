"""--ema: the moving average of the weights is what is validated and checkpointed, while
training (and a resumed run) goes on from the weights themselves."""
import keras
import numpy as np
import pytest

import leukonet
from leukonet.errors import LeukonetError
from leukonet.train import trainer as fit_module
from leukonet.train.run import RunDir
from tests.conftest import demo_fit_config
from tests.train._interrupt import InterruptAfterTwoEpochs

pytestmark = pytest.mark.slow


def _config(demo, tmp_path, **kw):
    base, root = demo
    return demo_fit_config(base, root, **{"run_dir": str(tmp_path / "run"), "ema": 0.8, **kw})


class _Spy(keras.callbacks.Callback):
    """Listed last: sees what the checkpoints saw at each epoch end, and what training starts
    from. ``slot`` is the optimizer's average variables: the average while training, the training
    weights while the average is swapped into the model."""

    def __init__(self, stop_at=None):
        super().__init__()
        self.begins, self.ends, self.stop_at = [], [], stop_at

    def on_train_begin(self, logs=None):
        self.begins.append([v.numpy().copy() for v in self.model.trainable_variables])

    def on_epoch_end(self, epoch, logs=None):
        slot = self.model.optimizer._model_variables_moving_average
        self.ends.append(dict(model=[v.numpy().copy() for v in self.model.trainable_variables],
                              slot=[v.numpy().copy() for v in slot]))
        if epoch == self.stop_at:
            self.model.stop_training = True  # as EarlyStopping does


def _spied(monkeypatch, *extra):
    original = fit_module._callbacks
    monkeypatch.setattr(fit_module, "_callbacks", lambda *a, **k: original(*a, **k) + list(extra))
    return original


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _differs(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(a, b))


def test_the_checkpoints_hold_the_average_and_training_resumes_from_the_weights(
        demo, tmp_path, monkeypatch):
    spy = _Spy()
    original = _spied(monkeypatch, spy, InterruptAfterTwoEpochs())
    with pytest.raises(KeyboardInterrupt):
        leukonet.fit(_config(demo, tmp_path, epochs=4, precise_bn=2))
    end = spy.ends[-1]  # epoch 2's end, when the run was killed
    assert _differs(end["model"], end["slot"])  # the average is not the weights
    last = leukonet.load_model(tmp_path / "run" / "last.keras")
    _assert_same([v.numpy() for v in last.trainable_variables], end["model"])

    monkeypatch.setattr(fit_module, "_callbacks", original)
    resumed = _Spy()
    _spied(monkeypatch, resumed)
    run = leukonet.fit(resume=tmp_path / "run")
    # BackupAndRestore's backup was taken before the swap: the resumed run trains on from
    # the training weights, with the average back in the optimizer's slot
    _assert_same(resumed.begins[0], end["slot"])
    assert run.metrics["epochs_run"] == 4
    final = resumed.ends[-1]
    _assert_same([v.numpy() for v in leukonet.load_model(run.path / "last.keras").trainable_variables],
                 final["model"])


def test_a_stage_stopped_early_hands_the_average_to_the_next(demo, tmp_path, monkeypatch):
    # Keras writes the average into the weights only after the last epoch of a fit; a stage
    # that stops early must still hand the next stage the average, as its checkpoint has it.
    spy = _Spy(stop_at=0)
    _spied(monkeypatch, spy)
    leukonet.fit(_config(demo, tmp_path, epochs=3, freeze_epochs=2))
    assert len(spy.begins) == 2  # stage 1 stopped after its first epoch, then stage 2
    stage1_end = spy.ends[0]
    trainable_in_stage1 = len(stage1_end["model"])  # the head only: the backbone was frozen
    assert _differs(stage1_end["model"], stage1_end["slot"])
    _assert_same(spy.begins[1][-trainable_in_stage1:], stage1_end["model"])


def test_without_ema_nothing_is_swapped(demo, tmp_path):
    callbacks = fit_module._callbacks(_config(demo, tmp_path, ema=0.0), RunDir(tmp_path / "run"),
                                      1, "val_loss")
    assert not any(type(c).__name__ == "EMAWeights" for c in callbacks)
    names = [type(c).__name__ for c in fit_module._callbacks(
        _config(demo, tmp_path), RunDir(tmp_path / "run"), 1, "val_loss",
        precise_bn=object())]
    # the order the two tests above depend on
    assert (names.index("BackupAndRestore") < names.index("EMAWeights")
            < names.index("PreciseBatchNorm") < names.index("AtomicCheckpoint"))


@pytest.mark.parametrize("ema", [1.0, -0.1])
def test_a_momentum_outside_0_1_is_a_one_line_error(demo, tmp_path, ema):
    with pytest.raises(LeukonetError, match=rf"--ema {ema}: expected a momentum 0 <= m < 1"):
        leukonet.fit(_config(demo, tmp_path, ema=ema))
    assert not (tmp_path / "run").exists()


def test_the_flag_reaches_the_config_over_a_preset():
    from leukonet.cli import build_parser
    from leukonet.cli.fit import base_config

    args = build_parser().parse_args(["fit", "--preset", "blood-cells-cpu", "--ema", "0.995"])
    assert base_config(args).ema == 0.995
    assert base_config(build_parser().parse_args(["fit", "--preset", "blood-cells-cpu"])).ema == 0
