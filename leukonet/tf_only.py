"""The one TensorFlow-specific module: tf.distribute, tf.GradientTape, SavedModel and TFLite
export, a tf.data feed for cached features, and a workaround for a TensorFlow graph leak in
repeated fits.

Everything else in leukonet is written against ``keras``/``keras.ops`` and runs on the
JAX backend too; TensorFlow is imported only inside these functions: by every fit on the
TensorFlow backend (``released_train_graphs``), by head training on cached features, and
when a user asks for ``--strategy`` other than ``default``, Grad-CAM on the TensorFlow
backend, or a SavedModel/TFLite export.
"""
import contextlib
import warnings

import keras

from leukonet.errors import LeukonetError

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


def make_strategy(name="default"):
    """The tf.distribute strategy for ``--strategy`` (None for ``default``). Make it once
    per run: variables built under one strategy object cannot meet another's."""
    if name not in STRATEGIES:
        raise LeukonetError(f"unknown --strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    if name == "default":
        return None
    if keras.backend.backend() != "tensorflow":
        raise LeukonetError(f"--strategy {name} needs KERAS_BACKEND=tensorflow "
                            f"(now {keras.backend.backend()}); use --strategy default")
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return _multiworker_strategy(tf)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _multiworker_strategy(tf):
    """MultiWorkerMirroredStrategy whose ``reduce`` accepts nested values.

    Two Keras 3.15 calls break the plain strategy (found by tests/test_backends.py): fit
    reduces the whole first (x, y) batch to build the model ("unsupported type PerReplica":
    the collective strategy does not map over tuples, MirroredStrategy does), and it
    averages scalar metrics with ``axis=0`` ("Invalid reduction dimension 0"). Reducing
    element by element, scalars over replicas only, is what Keras means in both.
    """
    from keras import tree

    class _MultiWorkerMirrored(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            base = super().reduce

            def one(v):
                rank = self.experimental_local_results(v)[0].shape.rank
                return base(reduce_op, v, None if rank == 0 else axis)

            return tree.map_structure(one, value)

    return _MultiWorkerMirrored()


def strategy_scope(strategy):
    """A context manager to build and compile the model under."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


@contextlib.contextmanager
def released_train_graphs():
    """Let the training steps traced inside the block be freed once the model is gone.

    Keras's TensorFlow optimizer sums gradients through ``ReplicaContext.all_reduce``, which
    wraps them in ``tf.custom_gradient``. Traced in a tf.function, that registers a
    ``CustomGradient-N`` entry in TensorFlow's global gradient registry which is never
    removed, and its closure holds the whole traced train step: each fit in one process kept
    7-18 MiB for good (the in-process leak of keras-team/keras#17458, measured with
    benchmarks/soak.py). A registered gradient is looked up only while a graph is being
    differentiated during tracing, and nothing differentiates through that all-reduce, so
    the entries the block added are dropped when it ends. Private TensorFlow API, hence
    guarded: if the registry moves, this does nothing.
    """
    registry = None
    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.framework import ops

        registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    before = set(registry) if isinstance(registry, dict) else None
    try:
        yield
    finally:
        if before is not None:
            for key in set(registry) - before:
                if isinstance(key, str) and key.startswith("CustomGradient-"):
                    registry.pop(key, None)


def chunked_dataset(loader, batches_per_read):
    """A tf.data pipeline over a ``FeatureLoader`` that yields its batches, epoch after
    epoch, but calls into Python once per ``batches_per_read`` batches (``loader.read``)
    and splits the chunk into batches in the graph."""
    import itertools

    import tensorflow as tf

    # Each pass (Keras starts one per epoch) takes the next epoch number when it starts:
    # a pass's view and shuffle never depend on when tf.data's prefetch ends the last one.
    passes = itertools.count(loader.epoch)

    def chunks():
        epoch = next(passes)
        for first in range(0, len(loader), batches_per_read):
            yield loader.read(first, batches_per_read, epoch)

    spec = tf.nest.map_structure(
        lambda a: tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype)),
        loader.read(0, 1, loader.epoch))
    dataset = tf.data.Dataset.from_generator(chunks, output_signature=spec)
    dataset = dataset.rebatch(loader.batch_size).prefetch(2)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(loader)))


def gradient(fn, x):
    """d fn(x) / dx with a GradientTape (Grad-CAM's TensorFlow branch)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x).numpy()


def _require_tf(what):
    if keras.backend.backend() != "tensorflow":
        raise LeukonetError(f"{what} needs KERAS_BACKEND=tensorflow (now {keras.backend.backend()})")


def export_saved_model(model, path):
    """A TensorFlow SavedModel with a ``serve`` endpoint (Keras' own exporter)."""
    _require_tf("--format saved_model")
    model.export(str(path), format="tf_saved_model", verbose=False)


def saved_model_predict(path, x):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # keep a reference: it owns the variables
    return loaded.serve(tf.constant(x, tf.float32)).numpy()


def export_tflite(model):
    """A TensorFlow Lite flatbuffer, converted from a SavedModel by TensorFlow's converter."""
    import tempfile

    _require_tf("--format tflite")
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        export_saved_model(model, tmp)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        return converter.convert()


def tflite_predict(path, x):
    import numpy as np
    import tensorflow as tf

    with warnings.catch_warnings():  # its move to ai_edge_litert: not the user's concern
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], np.asarray(x, np.float32))
    interpreter.invoke()
    return [interpreter.get_tensor(o["index"]) for o in out]
