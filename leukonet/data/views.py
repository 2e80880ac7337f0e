"""Views: how a model reads an image (input size and nucleus crop), and loaders for them.

An ordinary run reads one view, its config's ``image_size`` and ``nucleus_crop``. An
ensemble of runs that read images differently (a tighter crop, another size, no crop)
reads several: its model has one input per distinct view (``image``, ``image_1``, ...;
``leukonet.models.ensemble``), its config lists them in ``extra["views"]``, and
``loader_for`` gives it a ``MultiViewLoader`` whose batches are one array per view.
"""
import keras
import numpy as np

from leukonet.data import crop


def view(image_size, nucleus_crop=0.0) -> tuple:
    """One view as a hashable ``((H, W), crop fraction)``."""
    return tuple(int(v) for v in image_size), crop.check_fraction(nucleus_crop)


def run_views(config) -> list:
    """The views a run's model reads, in the order of its inputs."""
    listed = config.extra.get("views")
    if listed:
        return [view(v["image_size"], v["nucleus_crop"]) for v in listed]
    return [view(config.image_size, config.nucleus_crop)]


def views_extra(views) -> list:
    """``views`` as config.json keeps them (``extra["views"]``)."""
    return [dict(image_size=list(size), nucleus_crop=fraction) for size, fraction in views]


def loader_for(views, frame, root, batch_size, **kwargs):
    """A ManifestLoader for one view, a MultiViewLoader for several (``kwargs`` go to each
    ManifestLoader)."""
    from leukonet.data.loader import ManifestLoader

    if len(views) == 1:
        (size, fraction), = views
        return ManifestLoader(frame, root, size, batch_size, nucleus_crop=fraction, **kwargs)
    return MultiViewLoader(frame, root, views, batch_size, **kwargs)


class MultiViewLoader(keras.utils.PyDataset):
    """``([images of view 0, images of view 1, ...], targets)`` batches: one unshuffled,
    unaugmented ManifestLoader per view over the same rows (an ensemble's inputs).

    Each view decodes the file again rather than cropping one decoded image several ways:
    a crop is cut from full-resolution pixels and a plain view may be decoded at a reduced
    JPEG scale, so no one decoding serves every view; this loader feeds evaluation and
    prediction, where decoding is a small part of the time next to the members' forward
    passes."""

    def __init__(self, frame, root, views, batch_size=32, workers=1, **kwargs):
        from leukonet.data.loader import ManifestLoader

        super().__init__(workers=workers, use_multiprocessing=False)
        if kwargs.get("shuffle") or kwargs.get("policy") or kwargs.get("mixup"):
            raise ValueError("MultiViewLoader reads rows in order, unaugmented")
        self.loaders = [ManifestLoader(frame, root, size, batch_size, nucleus_crop=fraction,
                                       workers=workers, **kwargs) for size, fraction in views]

    @property
    def bad(self):
        """Unreadable images (path -> reason) of every view."""
        return {k: v for loader in self.loaders for k, v in loader.bad.items()}

    def __len__(self):
        return len(self.loaders[0])

    def load(self, i, out=None):
        """Row ``i`` as the first view reads it (figures show that one)."""
        return self.loaders[0].load(i, out)

    def load_batch(self, index):
        """``([uint8 pixels of each view], row numbers)``: rows every view could read."""
        batches = [loader.load_batch(index) for loader in self.loaders]
        keep = batches[0][1]
        for _, rows in batches[1:]:
            keep = keep[np.isin(keep, rows)]
        return [x[np.isin(rows, keep)] for x, rows in batches], keep

    def __getitem__(self, index):
        xs, keep = self.load_batch(index)
        return xs, self.loaders[0]._targets(keep)
