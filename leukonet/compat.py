"""Known warnings from our dependencies, silenced where leukonet's own calls trigger them.

TensorFlow's tensors and variables implement ``__array__`` without NumPy 2's ``copy``
keyword, so every ``np.array(variable)`` Keras makes while saving a model, copying
weights or logging a step (keras/src/backend/tensorflow/core.py, ``convert_to_numpy``)
raises NumPy's DeprecationWarning: thousands per training run, none of them actionable
for a user. Only that message is silenced, only around those calls.
"""
import contextlib
import warnings

_ARRAY_COPY = r"__array__ implementation doesn't accept a copy keyword"


@contextlib.contextmanager
def no_array_copy_warning():
    """Silence NumPy's ``__array__`` copy-keyword DeprecationWarning (and nothing else)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_ARRAY_COPY, category=DeprecationWarning)
        yield
