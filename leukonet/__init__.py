"""leukonet: white-blood-cell image classifiers by transfer learning on Keras 3.

The public API. Names are imported on first use, so ``import leukonet`` stays fast and
the manifest tools never pay for importing Keras or TensorFlow.
"""
import importlib
import importlib.util
import os
import sys

__version__ = "0.1.0"

# TensorFlow's default CPU allocator hands every large tensor back to the OS and maps it
# afresh the next step: on 2 cores a third of training time went to page faults
# (benchmarks/README.md, "Training step"). Its pooling BFC allocator keeps them. Read when
# TensorFlow first allocates, so this must run before that; a value the user set wins.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
# TensorFlow logs a Python error raised while it reads a batch (a file that went bad
# after the manifest was built) as a ~170-line warning of its own, beside leukonet's one
# line (loader_errors). Level 2 keeps its errors and drops its warnings and notes; read
# when TensorFlow is imported; a value the user set wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_API = {
    "LeukonetError": "leukonet.errors",
    "Manifest": "leukonet.data.manifest",
    "make_demo_data": "leukonet.data.demo",
    "FitConfig": "leukonet.config",
    "fit": "leukonet.train.fit",
    "ensemble": "leukonet.train.ensemble",
    "load_run": "leukonet.train.run",
    "load_model": "leukonet.train.run",
    "Run": "leukonet.train.run",
    "list_backbones": "leukonet.models.registry",
    "compare": "leukonet.evaluate.compare",
}

__all__ = sorted(_API) + ["__version__"]


def _register_keras_objects():
    """Register every Keras object leukonet saves in a model (its preprocessing layer), so
    plain ``keras.saving.load_model`` (safe mode) reads any model leukonet wrote."""
    importlib.import_module("leukonet.models.preprocessing")


class _AfterKerasImport:  # a meta path finder (importlib.abc would import pathlib: +12 ms)
    """Registers leukonet's Keras objects right after Keras itself is imported, so that
    ``import leukonet`` stays cheap (the manifest commands never import Keras) and still
    lets ``keras.saving.load_model`` read leukonet's models, keras-hub's convention."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)  # once, and the real finders answer the lookup below
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module):
            original(module)
            _register_keras_objects()

        loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    _register_keras_objects()
elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterKerasImport())


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'leukonet' has no attribute {name!r}")
