"""Classification heads on a backbone's feature map: conv · gap · dense · bilstm.

Each head maps ``(features, image)`` to a pooled feature vector; ``build_model`` adds
one softmax per task on top, so the multi-task model shares the head's features.
"""
from keras import layers

from leukonet.errors import LeukonetError

HEADS = ("conv", "gap", "dense", "bilstm")


def conv_head(features, image, filters=128, dropout=0.3, units=None):
    """The published InceptionResNetV2 recipe: Conv2D → BatchNorm → MaxPool → Dropout → Flatten."""
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name="head_conv")(features)
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.MaxPooling2D(2, padding="same", name="head_pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Flatten(name="head_flatten")(x)


def gap_head(features, image, filters=None, dropout=0.3, units=None):
    """GlobalAveragePooling → Dropout: the VGG16 recipe (thousands, not millions, of weights)."""
    x = layers.GlobalAveragePooling2D(name="head_gap")(features)
    return layers.Dropout(dropout, name="head_dropout")(x)


def dense_head(features, image, filters=None, dropout=0.3, units=256):
    """GlobalAveragePooling → Dense(units, relu) → Dropout."""
    x = layers.GlobalAveragePooling2D(name="head_gap")(features)
    x = layers.Dense(units or 256, activation="relu", name="head_dense")(x)
    return layers.Dropout(dropout, name="head_dropout")(x)


def bilstm_head(features, image, filters=None, dropout=0.3, units=64):
    """CNN features plus two bidirectional LSTMs reading the grayscale image by rows and
    by columns (the CNN+RNN study), concatenated."""
    units = units or 64
    gray = layers.Rescaling(1 / 255.0, name="head_scale")(image)
    # A learned 1x1 projection to one channel: grayscale, with weights the data picks.
    gray = layers.Conv2D(1, 1, name="head_gray")(gray)
    h, w = image.shape[1], image.shape[2]
    rows = layers.Reshape((h, w), name="head_rows")(gray)
    cols = layers.Permute((2, 1), name="head_cols")(rows)
    by_rows = layers.Bidirectional(layers.LSTM(units), name="head_lstm_rows")(rows)
    by_cols = layers.Bidirectional(layers.LSTM(units), name="head_lstm_cols")(cols)
    cnn = layers.GlobalAveragePooling2D(name="head_gap")(features)
    x = layers.Concatenate(name="head_concat")([cnn, by_rows, by_cols])
    return layers.Dropout(dropout, name="head_dropout")(x)


_BUILDERS = {"conv": conv_head, "gap": gap_head, "dense": dense_head, "bilstm": bilstm_head}


def apply_head(name, features, image, filters=128, dropout=0.3, units=None):
    if name not in _BUILDERS:
        raise LeukonetError(f"unknown head {name!r}; choose one of: {', '.join(HEADS)}")
    return _BUILDERS[name](features, image, filters=filters, dropout=dropout, units=units)
