import numpy as np
import pytest
from keras import ops

from leukonet.data.augment import apply_policy, build_policy
from leukonet.data.fused_augment import RandomGeometry, RandomStain


def _apply(layer, x, seed=0):
    t = layer.get_random_transformation(ops.convert_to_tensor(x), seed=seed)
    return ops.convert_to_numpy(layer.transform_images(ops.convert_to_tensor(x), t)), t


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (6, 20, 28, 3)).astype("float32")


def test_switched_off_layers_are_the_identity(batch):
    out, _ = _apply(RandomGeometry(0, False, 0, 0), batch)
    np.testing.assert_allclose(out, batch, atol=1e-3)
    out, _ = _apply(RandomStain(0, 0, 0, 0), batch)
    np.testing.assert_allclose(out, batch, atol=1e-3)
    assert build_policy(0, False, 0, 0, 0, 0, 0, 0) == []


def test_flips_alone_give_exact_mirror_images(batch):
    out, t = _apply(RandomGeometry(rotate=0, flip=True, zoom=0, shift=0), batch, seed=4)
    seen = set()
    for img, res, m in zip(batch, out, t):
        fx, fy = np.sign(m[0]), np.sign(m[4])
        want = img[:, ::-1] if fx < 0 else img
        want = want[::-1] if fy < 0 else want
        np.testing.assert_allclose(res, want, atol=1e-3)
        seen.add((fx, fy))
    assert len(seen) > 1  # random per image


def test_shift_moves_content_by_the_drawn_offset():
    x = np.zeros((4, 40, 40, 3), "float32")
    x[:, 18:22, 18:22] = 255.0
    out, t = _apply(RandomGeometry(rotate=0, flip=False, zoom=0, shift=0.1), x, seed=1)
    ys, xs = np.mgrid[:40, :40]
    for res, m in zip(out, t):
        w = res[..., 0]
        # output p samples input p + t: the square moves by -t
        np.testing.assert_allclose((w * xs).sum() / w.sum(), 19.5 - m[2], atol=0.05)
        np.testing.assert_allclose((w * ys).sum() / w.sum(), 19.5 - m[5], atol=0.05)


def test_quarter_turn_matches_numpy_rot90():
    x = np.random.default_rng(1).uniform(0, 255, (1, 15, 15, 3)).astype("float32")
    layer = RandomGeometry(rotate=0, flip=False, zoom=0, shift=0)
    t = layer.get_random_transformation(ops.convert_to_tensor(x), seed=0)
    t[0, [0, 1, 3, 4]] = [0, -1, 1, 0]  # q = R(90 deg) (p - c) + c
    c = 7.0
    t[0, 2], t[0, 5] = c + c, c - c
    out = ops.convert_to_numpy(layer.transform_images(ops.convert_to_tensor(x), t))
    np.testing.assert_allclose(out[0], np.rot90(x[0], k=1), atol=1e-3)


def test_stain_keeps_grey_grey_under_hue_and_luma_under_hue_and_saturation():
    rng = np.random.default_rng(2)
    x = rng.uniform(30, 220, (5, 8, 8, 3)).astype("float32")
    x[:, 0, 0] = 100.0  # one grey pixel
    out, _ = _apply(RandomStain(brightness=0, contrast=0, hue=0.2, saturation=0.3), x, seed=3)
    np.testing.assert_allclose(out[:, 0, 0], 100.0, atol=1e-2)
    luma = np.array([0.299, 0.587, 0.114])
    inside = (out > 0.5).all(-1) & (out < 254.5).all(-1)  # where no clipping happened
    np.testing.assert_allclose((out @ luma)[inside], (x @ luma)[inside], atol=1e-2)
    assert np.abs(out - x).mean() > 1.0


def test_brightness_adds_and_contrast_keeps_channel_means():
    x = np.random.default_rng(3).uniform(60, 190, (4, 10, 10, 3)).astype("float32")
    out, t = _apply(RandomStain(brightness=0.1, contrast=0, hue=0, saturation=0), x, seed=5)
    np.testing.assert_allclose(out - x, np.broadcast_to(t["offset"][:, None, None, None], x.shape), atol=1e-3)
    out, t = _apply(RandomStain(brightness=0, contrast=0.2, hue=0, saturation=0), x, seed=6)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1e-2)
    spread = out.std(axis=(1, 2)) / x.std(axis=(1, 2))
    np.testing.assert_allclose(spread, np.broadcast_to(t["contrast"][:, None], spread.shape), atol=1e-3)


def test_policy_is_seeded_and_configs_round_trip(batch):
    policy = build_policy()
    a, b = apply_policy(policy, batch, 11), apply_policy(build_policy(), batch, 11)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, apply_policy(policy, batch, 12))
    assert a.min() >= 0 and a.max() <= 255
    for layer in policy:
        again = type(layer).from_config(layer.get_config())
        assert again.get_config() == layer.get_config()


def test_policy_on_uint8_batches_is_float32_and_not_rounded():
    """The loader hands uint8 batches to the policy: they are cast before any layer, so a
    geometry-only policy interpolates in float (not rounded to integers) and the result is
    the same as for a float copy; the input is left as it was."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (4, 20, 28, 3), dtype=np.uint8)
    before = pixels.copy()
    for policy in (build_policy(), build_policy(brightness=0, contrast=0, hue=0, saturation=0)):
        out = apply_policy(policy, pixels, 5)
        assert out.dtype == np.float32 and out.flags.writeable
        np.testing.assert_array_equal(out, apply_policy(policy, pixels.astype(np.float32), 5))
        assert out.min() >= 0 and out.max() <= 255
        assert np.any(out != np.round(out))  # bilinear resampling of uint8 stayed float
    np.testing.assert_array_equal(pixels, before)


@pytest.mark.parametrize("policy", [build_policy(), build_policy(rotate=30, flip=False, zoom=0.3, shift=0.2,
                                                                 brightness=0.3, contrast=0.3, hue=0.1,
                                                                 saturation=0.3)])
def test_opencv_kernels_give_the_keras_ops_pixels(policy, monkeypatch):
    """The loader's OpenCV path and the layers' keras.ops path (what runs where OpenCV is
    missing) give the same batch from the same seed: same sampling points, same black
    fill at the rotated corners, same colour matrix."""
    from leukonet.data import fused_augment

    pixels = np.random.default_rng(7).integers(0, 256, (5, 30, 44, 3), dtype=np.uint8)
    fast = apply_policy(policy, pixels, 21)
    monkeypatch.setattr(fused_augment, "cv2", None)
    reference = apply_policy(policy, pixels, 21)
    assert fast.dtype == reference.dtype == np.float32
    np.testing.assert_allclose(fast, reference, atol=0.02)
    assert (reference == 0).all(-1).mean() > 0.01  # the comparison covers fill pixels
    assert np.abs(reference - pixels).mean() > 5.0  # and the batch really was transformed


def test_opencv_path_handles_a_strided_batch():
    pixels = np.random.default_rng(8).integers(0, 256, (4, 20, 60, 3), dtype=np.uint8)[:, :, ::2]
    out = apply_policy(build_policy(), pixels, 3)
    assert out.shape == (4, 20, 30, 3)
    np.testing.assert_array_equal(out, apply_policy(build_policy(), np.ascontiguousarray(pixels), 3))


def test_augmenting_sets_opencv_to_one_thread_per_call(monkeypatch):
    """The loader's threads fill the cores; OpenCV's pool under them was 3x slower."""
    from leukonet.data import augment, fused_augment

    fused_augment.cv2.setNumThreads(2)
    monkeypatch.setattr(augment, "_OPENCV_THREADS_SET", False)
    apply_policy(build_policy(), np.zeros((2, 16, 16, 3), np.uint8), 0)
    assert fused_augment.cv2.getNumThreads() == 1
