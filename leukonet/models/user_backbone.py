"""Your own headless network as the backbone: ``leukonet.fit(backbone=<keras.Model>)`` or
``leukonet fit --backbone my_net.keras``.

The network is checked (a ``keras.Model`` taking an image batch ``(batch, h, w, 3)`` and
giving a feature map ``(batch, h', w', channels)``: no classification top), then copied once
into the run folder as ``RUN/backbone.keras``; the config records ``backbone =
"file:backbone.keras"`` (relative to the run folder, so the run can move) and its
preprocessing (``backbone_preprocessing``, default ``none``: the network receives RGB
0-255 as float). ``build_model`` loads that file (Keras safe mode) and nests it under
leukonet's preprocessing layer and head, so ``--resume``, the ensemble members and the fold
models rebuild from it, and the saved model.keras carries it.

In a config held in memory the path is absolute (``prepare`` and ``resolve`` make it so);
``keep`` copies the file into a run folder and gives the config.json form.

May import: leukonet.io, leukonet.config, leukonet.compat and leukonet.errors; Keras only
inside the functions (``import leukonet.train.fit`` stays free of Keras).
"""
import shutil
import tempfile
from pathlib import Path

from leukonet.config import parse_size
from leukonet.errors import LeukonetError

PREFIX = "file:"
FILE = "backbone.keras"
DEFAULT_PREPROCESSING = "none"  # the network receives RGB 0-255 as float, unchanged
LABEL = "custom"  # the name the run and the model take (a model is named leukonet_custom_<head>)


def is_file(backbone):
    """Whether ``backbone`` (a config's) names a network file, not a registry backbone."""
    return isinstance(backbone, str) and backbone.startswith(PREFIX)


def path_of(backbone) -> Path:
    return Path(backbone[len(PREFIX):])


def label(backbone):
    """A short name for logs and run names: the registry name, or ``custom``."""
    return LABEL if is_file(backbone) else str(backbone)


def as_spec(text, base="."):
    """``my_net.keras`` or ``file:my_net.keras`` (relative to ``base``) as an absolute
    ``file:`` backbone; any other text (a registry name) unchanged."""
    if not isinstance(text, str) or not (text.startswith(PREFIX) or text.endswith(".keras")):
        return text
    path = Path(text.removeprefix(PREFIX)).expanduser()
    return PREFIX + str(path if path.is_absolute() else (Path(base) / path).resolve())


def resolve(config, folder):
    """``config`` (read from ``folder``'s config.json) with a relative backbone file made
    absolute against that folder."""
    if is_file(config.backbone) and not path_of(config.backbone).is_absolute():
        return config.replace(backbone=PREFIX + str(Path(folder).resolve() / path_of(config.backbone)))
    return config


def keep(config, folder):
    """Copy a new run's backbone file into ``folder`` (atomically; once). Returns (the
    config to train with: the copy's absolute path; the config for config.json:
    ``file:backbone.keras``)."""
    from leukonet import io

    if not is_file(config.backbone):
        return config, config
    source, target = path_of(config.backbone), Path(folder) / FILE
    if source.resolve() != target.resolve():
        with io.atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    return config.replace(backbone=PREFIX + str(target.resolve())), config.replace(backbone=PREFIX + FILE)


def load(path, what=None):
    """The network in ``path``, loaded in Keras safe mode (no code from the file runs);
    ``what`` names it in an error (default ``--backbone PATH``)."""
    import keras

    import leukonet.models.preprocessing  # noqa: F401 - registers leukonet's layers

    path = Path(path)
    what = what or f"--backbone {path}"
    if not path.is_file():
        raise LeukonetError(f"--backbone {path}: no such file; pass a .keras file of your network "
                            "(model.save('my_net.keras')) or a name from `leukonet backbones`")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a file it cannot read
        first = str(e).splitlines()[0] if str(e) else ""
        hint = ("it holds a Lambda layer (code inside the file), which safe mode refuses; use a "
                "registered layer instead" if "Lambda" in str(e) or "safe_mode" in str(e) else
                "register its custom layers with @keras.saving.register_keras_serializable()")
        raise LeukonetError(f"{what}: cannot load it as a Keras model "
                            f"({type(e).__name__}: {first}); {hint}") from None


def check(network, what="backbone"):
    """Refuse (one line) what cannot be a backbone; returns its fixed input size (h, w), or
    None when it takes any size."""
    import keras

    if not isinstance(network, keras.Model):
        hint = (" (call it: e.g. keras.applications.MobileNetV2(include_top=False, weights=None, "
                "input_shape=(96, 96, 3)))"
                if callable(network) and not isinstance(network, keras.layers.Layer) else "")
        raise LeukonetError(f"backbone={type(network).__name__}: not a keras.Model; pass a backbone "
                            f"name (`leukonet backbones`), a .keras file or your own headless "
                            f"keras.Model{hint}")
    try:
        inputs, outputs = list(network.inputs), list(network.outputs)
    except (AttributeError, ValueError):
        inputs = outputs = []
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[-1] != 3:
        shape = [tuple(i.shape) for i in inputs] if len(inputs) != 1 else tuple(inputs[0].shape)
        raise LeukonetError(f"{what}: its input {shape or 'is unknown'} is not an "
                            "image batch (batch, height, width, 3); pass a network that takes RGB "
                            "images (e.g. input_shape=(96, 96, 3))")
    if len(outputs) != 1 or len(outputs[0].shape) != 4:
        shape = [tuple(o.shape) for o in outputs] if len(outputs) != 1 else tuple(outputs[0].shape)
        raise LeukonetError(f"{what}: its output {shape} is not a feature map "
                            "(batch, height, width, channels); pass the network without its "
                            "classification top (include_top=False)")
    h, w = inputs[0].shape[1:3]
    return (int(h), int(w)) if h is not None and w is not None else None


def prepare(config):
    """A new run whose backbone is your network (a ``keras.Model``, or a ``.keras`` file):
    the network checked, its input size settled, and a copy in a temporary folder that the
    run folders copy (``keep``). Returns (config, that folder or None): the caller removes
    the folder when fit is done."""
    backbone = config.backbone
    if isinstance(backbone, str):
        backbone = as_spec(backbone)
        if not is_file(backbone):
            return config, None
        network, what = load(path_of(backbone)), f"--backbone {path_of(backbone)}"
    else:
        network, what = backbone, f"backbone {getattr(backbone, 'name', '')}".strip()
    fixed = check(network, what)
    size = _size(config.image_size, fixed, what)
    folder = Path(tempfile.mkdtemp(prefix="leukonet-backbone-"))
    try:
        target = folder / FILE
        if isinstance(backbone, str):
            shutil.copyfile(path_of(backbone), target)  # the file as given: its source may go
        else:
            from leukonet.compat import no_array_copy_warning

            try:
                with no_array_copy_warning():
                    network.save(target)
            except Exception as e:  # noqa: BLE001 - Keras raises many types for what it cannot save
                first = str(e).splitlines()[0] if str(e) else ""
                raise LeukonetError(f"{what}: cannot be saved as a .keras file ({type(e).__name__}: "
                                    f"{first}); give its custom layers a get_config() and "
                                    "@keras.saving.register_keras_serializable()") from None
            load(target, what)  # what cannot come back from the file fails here, not mid-run
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    weights = "none" if str(config.weights or "none") == "imagenet" else config.weights  # its own
    return config.replace(backbone=PREFIX + str(target), image_size=size, weights=weights,
                          backbone_preprocessing=config.backbone_preprocessing
                          or DEFAULT_PREPROCESSING), folder


def _size(image_size, fixed, what):
    size = parse_size(image_size)
    if fixed is None:
        if size == "default":
            raise LeukonetError(f"{what} takes images of any size: pass --image-size HxW (e.g. "
                                "96x96) or native")
        return size
    h, w = fixed
    if size == "default" or size == [h, w]:
        return [h, w]
    given = "native" if size == "native" else f"{size[0]}x{size[1]}"
    raise LeukonetError(f"--image-size {given}: {what} takes {h}x{w} images (its fixed input "
                        f"shape); leave --image-size out or pass {h}x{w}")
