"""Frozen-backbone fast path: backbone features computed once, then only the head trains.

``--freeze-backbone --cache-features`` runs the (frozen) backbone over every training
image once per augmented view (``--feature-views``) and every validation image once,
keeps the feature maps on disk (float16 ``.npy`` memory maps in the run directory) and
trains a head-only model on them. The head's weights are then copied by layer name into
the full model, which is what gets saved: ``model.keras`` still takes raw RGB images.

May import: keras, numpy, leukonet.io, leukonet.data, leukonet.models and leukonet.tf_only;
nothing from leukonet.train.
"""
import json

import keras
import numpy as np

from leukonet import io
from leukonet.compat import no_array_copy_warning
from leukonet.data.loader import epoch_order
from leukonet.models import heads
from leukonet.models.build import BACKBONE_LAYER, OUTPUT

STEPS_PER_EXECUTION = 16  # head-only train steps per Keras call (benchmarks/feature_cache.py)


def feature_extractor(model):
    """image → preprocessing → backbone feature map, sharing the model's layers."""
    image = model.input
    x = model.get_layer("preprocess")(image)
    return keras.Model(image, model.get_layer(BACKBONE_LAYER)(x), name="feature_extractor")


def head_model(config, feature_shape, num_classes, aux_classes=None):
    """The head alone, with the same layer names as in ``build_model``."""
    from keras import layers

    features = keras.Input(feature_shape, name="features")
    pooled = heads.apply_head(config.head, features, None, filters=config.head_filters,
                              dropout=config.dropout, units=config.head_units)
    outputs = {OUTPUT: layers.Dense(num_classes, activation="softmax", dtype="float32",
                                    name=OUTPUT)(pooled)}
    if aux_classes:
        name = config.multitask["name"]
        outputs[name] = layers.Dense(len(aux_classes), activation="softmax", dtype="float32",
                                     name=name)(pooled)
    return keras.Model(features, outputs if aux_classes else outputs[OUTPUT], name="head")


def copy_head(head, full):
    """Copy the head's weights into the full model, layer by layer (same names)."""
    for layer in head.layers:
        if layer.weights:
            with no_array_copy_warning():
                full.get_layer(layer.name).set_weights(layer.get_weights())
    return full


def cache_features(extractor, loader, folder, name, views=1, policy=None):
    """Write ``folder/<name>_v<k>.npy`` (float16) for each view; reuse complete ones."""
    from leukonet.console import progress
    from leukonet.data.augment import apply_policy, batch_seed

    folder.mkdir(parents=True, exist_ok=True)
    shape = tuple(int(d) for d in extractor.output.shape[1:])
    paths = []
    for view in range(views):
        path = folder / f"{name}_v{view}.npy"
        meta = folder / f"{name}_v{view}.json"
        paths.append(path)
        if path.is_file() and meta.is_file() and json.loads(meta.read_text())["rows"] == len(loader.paths):
            continue
        with io.atomic_path(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                            shape=(len(loader.paths), *shape))
            start = 0
            bar = progress(len(loader), f"cache features ({name}, view {view + 1}/{views})", "batch",
                           leave=False)
            for b in range(len(loader)):
                bar.update()
                x, _ = loader[b]
                if view > 0 and policy:  # view 0 is the clean image
                    x = apply_policy(policy, x, batch_seed(loader.seed, 10_000 + view, b))
                f = extractor.predict_on_batch(x)
                out[start:start + len(f)] = keras.ops.convert_to_numpy(f).astype(np.float16)
                start += len(f)
            bar.close()
            out.flush()
            del out
        io.write_json(meta, {"rows": len(loader.paths), "shape": list(shape)})
    return paths


class FeatureLoader(keras.utils.PyDataset):
    """Batches of cached features; each epoch reads the next augmented view."""

    def __init__(self, paths, targets_of, n, batch_size, shuffle=False, seed=0):
        super().__init__()
        self.arrays = [np.load(p, mmap_mode="r") for p in paths]
        self.targets_of, self.n, self.batch_size = targets_of, n, batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def __len__(self):
        return -(-self.n // self.batch_size)

    def on_epoch_end(self):
        self.epoch += 1

    def read(self, first, count, epoch):
        """Batches ``first`` .. ``first + count - 1`` of ``epoch``, concatenated in order."""
        order, b = epoch_order(self.n, self.shuffle, self.seed, epoch), self.batch_size
        # each batch's rows sorted: the memory map is read front to back within a batch
        rows = np.concatenate([np.sort(order[i * b:(i + 1) * b])
                               for i in range(first, min(first + count, len(self)))])
        array = self.arrays[epoch % len(self.arrays)]
        # float16 as stored: the model casts to its input dtype in the graph, where it is
        # cheap; numpy's float16 -> float32 conversion was most of this call's time.
        return array[rows], self.targets_of(rows)

    def __getitem__(self, index):
        return self.read(index, 1, self.epoch)


def keras_input(loader):
    """What Keras trains (or validates) the head on. On TensorFlow, a tf.data pipeline that
    reads STEPS_PER_EXECUTION batches per trip into Python: ``fit`` on the PyDataset itself
    pays tf.data's ``from_generator`` hand-off once per batch, a large part of a head
    step (1.1-1.3x per cached epoch, more on a busy machine: benchmarks/feature_cache.py).
    Other backends iterate the PyDataset directly."""
    if keras.backend.backend() != "tensorflow":
        return loader
    from leukonet import tf_only

    return tf_only.chunked_dataset(loader, STEPS_PER_EXECUTION)
