import keras
import numpy as np
import pytest

from leukonet.train import features as F


def _loader(tmp_path, n=37, batch_size=4, views=2, dict_targets=False):
    paths = []
    for view in range(views):
        path = tmp_path / f"train_v{view}.npy"
        np.save(path, (np.arange(n * 6, dtype=np.float16).reshape(n, 2, 3) + 1000 * view))
        paths.append(path)
    labels = np.eye(3, dtype="float32")[np.arange(n) % 3]
    if dict_targets:
        targets = lambda rows: {"label": labels[rows], "aux": labels[rows][:, :2]}  # noqa: E731
    else:
        targets = lambda rows: labels[rows]  # noqa: E731
    return F.FeatureLoader(paths, targets, n, batch_size, shuffle=True, seed=3)


def test_each_epoch_reads_the_next_view_in_a_new_order(tmp_path):
    loader = _loader(tmp_path)
    first = np.concatenate([loader[i][0] for i in range(len(loader))])
    loader.on_epoch_end()
    second = np.concatenate([loader[i][0] for i in range(len(loader))])
    rows = lambda x: (x[:, 0, 0].astype(int) % 1000) // 6  # noqa: E731
    assert sorted(rows(first)) == sorted(rows(second)) == list(range(37))  # every row once
    assert (first < 1000).all() and (second >= 1000).all()  # view 0, then view 1
    assert list(rows(first)) != list(rows(second))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the tf.data feed is TensorFlow's")
@pytest.mark.parametrize("dict_targets", [False, True])
def test_the_tensorflow_feed_yields_the_loaders_batches_epoch_after_epoch(tmp_path, monkeypatch,
                                                                         dict_targets):
    monkeypatch.setattr(F, "STEPS_PER_EXECUTION", 3)  # 10 batches: chunks of 3, 3, 3, 1
    loader = _loader(tmp_path, dict_targets=dict_targets)
    reference = _loader(tmp_path, dict_targets=dict_targets)
    dataset = F.keras_input(loader)
    assert int(dataset.cardinality()) == len(loader) == 10
    for _ in range(3):  # epochs: view 0, view 1, view 0 again in a third order
        got = list(dataset.as_numpy_iterator())
        assert len(got) == len(reference)
        for index, (x, y) in enumerate(got):
            want_x, want_y = reference[index]
            np.testing.assert_array_equal(x, want_x)
            if dict_targets:
                assert set(y) == set(want_y)
                for key in y:
                    np.testing.assert_array_equal(y[key], want_y[key])
            else:
                np.testing.assert_array_equal(y, want_y)
        reference.on_epoch_end()
    assert got[-1][0].shape[0] == 37 % 4  # the last batch is short, as in the loader
