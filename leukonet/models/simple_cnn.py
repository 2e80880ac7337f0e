"""simple_cnn: a small from-scratch CNN that trains in minutes on a CPU (the demo backbone)."""
import keras
from keras import layers


def build(input_shape, weights=None, widths=(32, 64, 96, 128), name="simple_cnn"):
    """Conv-BN-ReLU blocks, each halving the resolution; returns the last feature map."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, width in enumerate(widths, start=1):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        # momentum 0.9 (Keras: 0.99): a short CPU run takes few steps, and slow moving
        # averages then lag the weights, so validation (inference mode) looks far worse
        # than training. Seen on the demo and on blood-cells (../shared README).
        x = layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn")(x)
        x = layers.Activation("relu", name=f"block{i}_relu")(x)
        if i < len(widths):
            x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    return keras.Model(inputs, x, name=name)


def build_wide(input_shape, weights=None):
    """simple_cnn with twice the channels in the last two blocks (the blood-cells CPU recipe)."""
    return build(input_shape, weights, widths=(32, 64, 128, 256), name="simple_cnn_wide")
