"""explain(): Grad-CAM overlays for a few images, as one figure and per-image PNGs."""
from pathlib import Path

import numpy as np

from leukonet.data.images import DEFAULT_MAX_PIXELS
from leukonet.errors import LeukonetError
from leukonet.evaluate import plots
from leukonet.evaluate.gradcam import gradcam_for, overlay
from leukonet.evaluate.predict import collect_images, frame_for_files


def explain(model, classes, views, images, out_dir=None, max_pixels=None, domain=None,
            featured=None):
    """``views``: how the model reads an image (``leukonet.data.views``); one view only.
    ``domain``: images unlike the training images get "out of domain" in their caption
    (and are listed in ``fig.leukonet_out_of_domain``)."""
    from leukonet.data.views import loader_for
    from leukonet.evaluate import domain as D

    if len(views) > 1:
        raise LeukonetError(f"Grad-CAM averages an ensemble's member maps, which needs the members to "
                            f"read images alike; these read {len(views)} views (input size, nucleus "
                            "crop): explain each member run instead")
    root, frame = frame_for_files(collect_images(images))
    loader = loader_for(views, frame, root, batch_size=8, skip_bad_images=True, workers=1,
                        max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    cam = gradcam_for(model)
    featured = D.featured_for(model, domain, featured)
    pics, caps, written, flagged = [], [], [], []
    for b in range(len(loader)):
        x, rows = loader.load_batch(b)
        if not len(x):
            continue
        maps, probs = cam(x)
        out = None
        if featured is not None:  # predict_on_batch gives NumPy arrays
            out = domain.flag(featured.predict_on_batch(x.astype(np.float32))[D.FEATURES])[1]
        for k, i in enumerate(rows):
            label = classes[int(probs[k].argmax())]
            blended = overlay(x[k], maps[k])
            pics += [x[k], blended]
            odd = out is not None and bool(out[k])
            if odd:
                flagged.append(frame["path"].iloc[i])
            caps += [Path(frame["path"].iloc[i]).name,
                     f"{label} ({probs[k].max():.2f})" + (" OUT OF DOMAIN" if odd else "")]
            if out_dir is not None:
                name = Path(frame["path"].iloc[i]).stem + ".gradcam.png"
                fig = plots.labelled_grid([x[k], blended], caps[-2:], cols=2, cell=3)
                written.append(plots.save(fig, Path(out_dir) / name))
                plots.close(fig)
    if not pics:
        reasons = "; ".join(f"{p}: {r}" for p, r in loader.bad.items())
        raise LeukonetError(f"no readable image to explain ({reasons})")
    fig = plots.labelled_grid(pics, caps, cols=6)
    fig.leukonet_written = written
    fig.leukonet_bad = dict(loader.bad)
    fig.leukonet_out_of_domain = flagged if featured is not None else None
    fig.leukonet_explained = len(pics) // 2
    return fig


def peak(heatmap):
    """(row, col) of the heatmap's maximum."""
    return np.unravel_index(np.argmax(heatmap), heatmap.shape)
