"""The one TensorFlow-specific module: tf.distribute strategies for --strategy.

Everything else in leukonet is written against ``keras``/``keras.ops`` and runs on the
JAX and PyTorch backends too; only ``--strategy`` other than ``default`` needs
TensorFlow.
"""
import contextlib

import keras

from leukonet.errors import LeukonetError

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


def strategy_scope(name="default"):
    """A context manager to build and compile the model under."""
    if name not in STRATEGIES:
        raise LeukonetError(f"unknown --strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    if name == "default":
        return contextlib.nullcontext()
    if keras.backend.backend() != "tensorflow":
        raise LeukonetError(f"--strategy {name} needs KERAS_BACKEND=tensorflow "
                            f"(now {keras.backend.backend()}); use --strategy default")
    import tensorflow as tf

    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif name == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    return strategy.scope()
