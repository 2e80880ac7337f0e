"""Figures (matplotlib, headless): image grids; written atomically."""
import contextlib
import warnings
from pathlib import Path

from leukonet import io


def _pyplot():
    import matplotlib

    # Headless (servers, CI) unless a notebook's inline backend is already active.
    if "inline" not in matplotlib.get_backend().lower():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(rows, path, col_titles=None, row_titles=None, cell=1.6):
    """Save a grid of uint8 RGB images (``rows`` = list of lists) as a PNG."""
    plt = _pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                ax.imshow(row[j])
            if i == 0 and col_titles:
                ax.set_title(col_titles[j], fontsize=8)
        if row_titles:
            axes[i][0].text(-0.05, 0.5, row_titles[i], transform=axes[i][0].transAxes,
                            rotation=90, va="center", ha="right", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def save(fig, path):
    """Write a figure as PNG atomically; returns the path."""
    path = Path(path)
    with io.atomic_path(path) as tmp, _no_glyph_warnings():
        fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
    return path


@contextlib.contextmanager
def _no_glyph_warnings():
    """A file name in a caption with a character the font lacks is drawn as a box, and
    matplotlib says so once per character on the console when it lays out or draws the
    text: nothing the user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        yield


def curves(history):
    """Loss, accuracy (train and validation) and learning rate per epoch."""
    plt = _pyplot()
    panels = [("loss", "loss"), ("accuracy", "accuracy"), ("learning_rate", "learning rate")]
    panels = [p for p in panels if p[0] in history]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    epochs = history["epoch"] if "epoch" in history else range(1, len(history) + 1)
    for ax, (key, title) in zip(axes[0], panels):
        ax.plot(epochs, history[key], marker="o", ms=3, label="train" if key != "learning_rate" else "lr")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker="o", ms=3, label="validation")
        if key == "learning_rate":
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion(counts, normalised):
    """Counts and row-normalised confusion matrices side by side (scikit-learn's display)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    n = len(counts)
    fig, axes = plt.subplots(1, 2, figsize=(2 * (2.2 + 0.7 * n), 1.8 + 0.7 * n))
    for ax, table, fmt, title in ((axes[0], counts, "d", "counts"),
                                  (axes[1], normalised, ".2f", "row-normalised (recall)")):
        ConfusionMatrixDisplay(table.to_numpy(), display_labels=list(table.columns)).plot(
            ax=ax, values_format=fmt, colorbar=False, xticks_rotation=45)
        ax.set_title(title)
    fig.tight_layout()
    return fig


def reliability(table, ece):
    """Reliability diagram: accuracy against confidence per bin."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    if len(table):
        ax.bar((table["low"] + table["high"]) / 2, table["accuracy"], width=table["high"] - table["low"],
               alpha=0.6, edgecolor="k", label="accuracy")
        ax.plot(table["confidence"], table["accuracy"], "o", ms=3)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {ece:.3f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def labelled_grid(images, captions, cols=6, cell=1.8):
    """A grid of images, each with a caption (top losses, Grad-CAM samples)."""
    plt = _pyplot()
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, (cell + 0.4) * rows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k])
            ax.set_title(captions[k], fontsize=7)
    with _no_glyph_warnings():
        fig.tight_layout()
    return fig


def close(fig):
    _pyplot().close(fig)
