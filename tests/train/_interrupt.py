"""A kill mid-run for the resume tests of fit and --ema."""
import keras


class InterruptAfterTwoEpochs(keras.callbacks.Callback):
    """A kill (KeyboardInterrupt) at the end of epoch 2, after the callbacks before it."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt
