"""build_model(config): preprocessing layer · backbone · head · one softmax per task.

The model takes plain 0-255 RGB (``image``), holds the backbone as one nested layer
named ``backbone`` (so freezing, fine-tuning and transfer find it by name) and outputs
``cell_type`` probabilities (plus the multi-task output when configured).

The backbone is a registry one (``registry.build_backbone``), or your own network from a
file (``backbone="file:..."``, ``leukonet.models.user_backbone``) with its own weights and
the preprocessing the config names (default ``none``).
"""
from pathlib import Path

import keras
from keras import layers

from leukonet.compat import no_array_copy_warning
from leukonet.errors import LeukonetError
from leukonet.models import heads, registry, user_backbone
from leukonet.models.preprocessing import Preprocess

BACKBONE_LAYER = "backbone"
OUTPUT = "cell_type"


def build_model(config, num_classes, image_size, aux_classes=None) -> keras.Model:
    """``config``: a FitConfig (backbone, head, head_filters, head_units, dropout,
    weights, multitask). ``image_size``: (height, width)."""
    h, w = image_size
    weights = str(config.weights or "none")
    image = keras.Input((h, w, 3), name="image")
    if user_backbone.is_file(config.backbone):  # your network, its own weights
        name = user_backbone.LABEL
        mode = config.backbone_preprocessing or user_backbone.DEFAULT_PREPROCESSING
        backbone = user_backbone.load(user_backbone.path_of(config.backbone))
        weights = "none" if weights == "imagenet" else weights
    else:
        spec = registry.get_backbone(config.backbone)
        registry.check_size(spec, image_size)
        name, mode = spec.name, spec.preprocessing
        backbone = registry.build_backbone(spec, (h, w, 3), "imagenet" if weights == "imagenet" else None)
    x = Preprocess(mode, name="preprocess")(image)
    backbone.name = BACKBONE_LAYER
    features = backbone(x)
    pooled = heads.apply_head(config.head, features, image, filters=config.head_filters,
                              dropout=config.dropout, units=config.head_units)
    # float32 outputs: softmax in float16 (mixed precision) loses too much.
    outputs = {OUTPUT: layers.Dense(num_classes, activation="softmax", dtype="float32",
                                    name=OUTPUT)(pooled)}
    if aux_classes:
        name = config.multitask["name"]
        outputs[name] = layers.Dense(len(aux_classes), activation="softmax", dtype="float32",
                                     name=name)(pooled)
    model = keras.Model(image, outputs if aux_classes else outputs[OUTPUT],
                        name=f"leukonet_{name}_{config.head}")
    if weights not in ("imagenet", "none"):
        load_backbone_weights(model, weights, name)
    return model


def load_backbone_weights(model, source, backbone_name):
    """Initialise the backbone from shipped weights (``pbc``), a weights file, an earlier
    run or a ``.keras`` model."""
    from leukonet.models import weights as shipped

    backbone = model.get_layer(BACKBONE_LAYER)
    path = Path(source)
    full = shipped.named(source)
    if full:
        entry = shipped.WEIGHTS[full]
        if entry.backbone != backbone_name:
            raise LeukonetError(f"--weights {source}: {entry.name} is a {entry.backbone} backbone; "
                                f"pass --backbone {entry.backbone} (not {backbone_name})")
        path = shipped.folder(source)
    if path.is_dir():
        path = path / "model.keras"
        if not path.is_file():
            raise LeukonetError(f"{source}: not a leukonet run directory (no model.keras)")
    if not path.is_file():
        raise LeukonetError(f"--weights {source}: no such file; use imagenet, none, shipped "
                            "weights (`leukonet backbones` lists them), a .h5 weights file, a "
                            ".keras model or a run directory")
    if path.suffix == ".keras":
        import leukonet.models.preprocessing  # noqa: F401 - registers Preprocess for loading

        other = keras.saving.load_model(path, compile=False)
        try:
            source_backbone = other.get_layer(BACKBONE_LAYER)
        except ValueError:
            raise LeukonetError(f"{path}: has no '{BACKBONE_LAYER}' layer; was it made by leukonet?") from None
        if source_backbone.count_params() != backbone.count_params():
            raise LeukonetError(f"{path}: its backbone does not match {backbone_name} "
                                "(different architecture); pick the same --backbone")
        with no_array_copy_warning():
            backbone.set_weights(source_backbone.get_weights())
        return
    try:
        backbone.load_weights(path)
    except Exception as e:  # noqa: BLE001 - h5py/keras raise many types for a wrong file
        raise LeukonetError(f"{path}: cannot load as {backbone_name} backbone weights "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                            "pass the '_notop' weights of the same architecture") from None
