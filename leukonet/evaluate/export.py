"""export(): deployment artefacts through Keras' and TensorFlow's own exporters.

keras (.keras, safe-mode loadable), saved_model (TensorFlow Serving), tflite (mobile),
onnx (Keras' exporter; needs the ``tf2onnx`` and ``onnx`` packages).
"""
import importlib.util
import shutil
import warnings
from pathlib import Path

from leukonet import io
from leukonet.compat import no_array_copy_warning
from leukonet.errors import LeukonetError

FORMATS = ("keras", "saved_model", "tflite", "onnx")


def export(run, fmt, out=None):
    if fmt not in FORMATS:
        raise LeukonetError(f"unknown --format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    from leukonet import tf_only

    model = run.model
    import numpy as np

    # Keras' exporters trace a model that has been called at least once (an ensemble of
    # members that read images differently has one input per view).
    zeros = [np.zeros((1, *i.shape[1:]), np.float32) for i in model.inputs]
    model(zeros if len(zeros) > 1 else zeros[0])
    suffix = {"keras": ".keras", "tflite": ".tflite", "onnx": ".onnx", "saved_model": ""}[fmt]
    out = Path(out) if out else Path(run.out_dir) / "export" / f"model{suffix or '_saved_model'}"
    if fmt == "keras":
        with io.atomic_path(out) as tmp:
            with no_array_copy_warning():
                model.save(tmp)
    elif fmt == "saved_model":
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tf_only.export_saved_model(model, tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)  # a folder: built beside, then renamed into place
    elif fmt == "tflite":
        io.write_bytes(out, tf_only.export_tflite(model))
    else:
        missing = [m for m in ("tf2onnx", "onnx") if importlib.util.find_spec(m) is None]
        if missing:
            raise LeukonetError(f"--format onnx needs the package(s) {', '.join(missing)}: "
                                f"pip install {' '.join(missing)}")
        with io.atomic_path(out) as tmp, warnings.catch_warnings():
            # Keras' tf2onnx shim probes numpy for np.object (a FutureWarning on numpy 2)
            warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
            model.export(str(tmp), format="onnx", verbose=False)
    return out
