"""Backbone registry: name → constructor, input sizes, preprocessing mode, Grad-CAM layer.

Specs are plain data (timm-style registry); ``build_backbone`` turns one into a
headless ``keras.Model`` that maps preprocessed pixels to a feature map.
"""
import importlib
import warnings
from dataclasses import dataclass

from leukonet.errors import LeukonetError


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    constructor: str  # "module:function"; keras.applications ones take include_top/weights
    default_size: tuple  # (height, width) the backbone is usually trained at
    min_size: int  # smallest side the architecture accepts
    preprocessing: str  # a Preprocess mode
    gradcam_layer: str | None  # last conv-like layer (None: the backbone's output)
    params: int  # parameters without the top, as built here (checked by a test)
    imagenet: bool = True  # ImageNet weights exist
    note: str = ""
    options: tuple = ()  # extra constructor arguments as (name, value) pairs, e.g. a width


def _app(cls):
    return f"keras.applications:{cls}"


BACKBONES = {s.name: s for s in [
    BackboneSpec("inception_resnet_v2", _app("InceptionResNetV2"), (299, 299), 75, "tf", "conv_7b_ac", 54_336_736,
                 note="the best published result on blood-cells (Conv head, 240x320)"),
    BackboneSpec("vgg16", _app("VGG16"), (224, 224), 32, "caffe", "block5_conv3", 14_714_688,
                 note="use --head gap: ~60 k head parameters instead of 120 M"),
    BackboneSpec("resnet50", _app("ResNet50"), (224, 224), 32, "caffe", "conv5_block3_out", 23_587_712),
    BackboneSpec("resnet50v2", _app("ResNet50V2"), (224, 224), 32, "tf", "post_relu", 23_564_800),
    BackboneSpec("mobilenet_v2", _app("MobileNetV2"), (224, 224), 32, "tf", "out_relu", 2_257_984),
    # Narrower MobileNetV2s (Keras' alpha; timm names them the same way). ImageNet weights
    # exist for these widths at 96-224 px; 0.35 has about the parameters of simple_cnn_wide.
    *(BackboneSpec(f"mobilenet_v2_{round(alpha * 100):03d}", _app("MobileNetV2"), (224, 224), 32, "tf",
                   "out_relu", params, options=(("alpha", alpha),), note=f"MobileNetV2 at width {alpha}")
      for alpha, params in ((0.35, 410_208), (0.5, 706_224), (0.75, 1_382_064))),
    BackboneSpec("efficientnet_b0", _app("EfficientNetB0"), (224, 224), 32, "none", "top_activation", 4_049_571,
                 note="rescales inside the model"),
    BackboneSpec("efficientnetv2_b0", _app("EfficientNetV2B0"), (224, 224), 32, "none", "top_activation", 5_919_312,
                 note="rescales inside the model"),
    BackboneSpec("densenet121", _app("DenseNet121"), (224, 224), 32, "torch", "relu", 7_037_504),
    BackboneSpec("xception", _app("Xception"), (299, 299), 71, "tf", "block14_sepconv2_act", 20_861_480),
    BackboneSpec("inception_v3", _app("InceptionV3"), (299, 299), 75, "tf", "mixed10", 21_802_784),
    BackboneSpec("convnext_tiny", _app("ConvNeXtTiny"), (224, 224), 32, "none", None, 27_820_128,
                 note="rescales inside the model"),
    BackboneSpec("resnet18", "leukonet.models.resnet18:build", (224, 224), 32, "torch", "conv5_block2_out",
                 11_186_112, imagenet=False, note="built here; from scratch"),
    BackboneSpec("simple_cnn", "leukonet.models.simple_cnn:build", (96, 128), 16, "tf", "block4_relu",
                 186_464, imagenet=False, note="built here; trains in minutes on a CPU"),
    BackboneSpec("simple_cnn_wide", "leukonet.models.simple_cnn:build_wide", (96, 96), 16, "tf", "block4_relu",
                 389_856, imagenet=False, note="built here; the blood-cells CPU recipe (--preset blood-cells-cpu)"),
]}


def list_backbones():
    return list(BACKBONES.values())


def get_backbone(name) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise LeukonetError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


def check_size(spec, image_size):
    h, w = image_size
    if min(h, w) < spec.min_size:
        raise LeukonetError(
            f"--image-size {h}x{w} is below {spec.name}'s minimum of {spec.min_size} px per side; "
            f"use at least {spec.min_size}x{spec.min_size} (usual: {spec.default_size[0]}x{spec.default_size[1]})"
        )


def build_backbone(spec, input_shape, weights=None):
    """Headless backbone on preprocessed input. ``weights``: "imagenet" or None."""
    module, fn = spec.constructor.split(":")
    ctor = getattr(importlib.import_module(module), fn)
    if module != "keras.applications":
        if weights == "imagenet":
            raise LeukonetError(f"{spec.name} has no ImageNet weights; use --weights none, a "
                                "weights file or an earlier leukonet run")
        return ctor(input_shape=input_shape, **dict(spec.options))
    kwargs = dict(include_top=False, weights=weights, input_shape=input_shape, **dict(spec.options))
    if spec.preprocessing == "none" and "include_preprocessing" in ctor.__code__.co_varnames:
        kwargs["include_preprocessing"] = True
    try:
        with warnings.catch_warnings():
            if weights is None:  # MobileNet's note about which ImageNet weights it would load
                warnings.filterwarnings("ignore", message=".*Weights for input shape",
                                        category=UserWarning)
            model = ctor(**kwargs)
    except Exception as e:  # noqa: BLE001 - download failures come as many types
        if weights != "imagenet":
            raise
        raise LeukonetError(
            f"could not get ImageNet weights for {spec.name} (offline? {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); download the '_notop' .h5 file for "
            f"keras.applications.{fn} on a connected machine into ~/.keras/models/, or pass "
            "--weights FILE.h5 / --weights none"
        ) from None
    model.name = spec.name  # keras>=3 allows renaming; the nested backbone is found by name
    return model
