"""The loader keeps enough batches in flight for its workers."""
import pandas as pd

from leukonet.data.loader import ManifestLoader


def _loader(**kw):
    frame = pd.DataFrame({"path": ["a.png"], "label_index": [0]})
    return ManifestLoader(frame, ".", (30, 40), num_classes=1, **kw)


def test_queue_grows_with_the_workers():
    # Keras runs at most max_queue_size batches at once: a fixed 4 left 10 of 16 workers idle
    assert _loader(workers=16)._max_queue_size == 32
    assert _loader(workers=2)._max_queue_size == 4
    assert _loader(workers=16, max_queue_size=8)._max_queue_size == 8
