"""Checks of a written figure by its content, not its byte count: a PNG that decodes, has the expected pixel
size, and shows a drawing — dark ink (axes, ticks, labels) and coloured marks (the data), not a blank or
single-colour canvas."""
import numpy as np


def assert_figure(path, size=None, min_size=(300, 200), tol=2):
    """``size``: the exact (width, height) in pixels (figsize × dpi, up to ``tol`` pixels); otherwise at least
    ``min_size``. Returns the image as float[h, w, channels] in [0, 1]."""
    from matplotlib import image
    img = image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4), f"{path}: not an RGB(A) image, shape {img.shape}"
    h, w = img.shape[:2]
    if size is not None:
        assert abs(w - size[0]) <= tol and abs(h - size[1]) <= tol, f"{path}: {w}×{h} px, expected {size}"
    else:
        assert w >= min_size[0] and h >= min_size[1], f"{path}: only {w}×{h} px"
    rgb = img[..., :3].astype(float)
    if img.shape[2] == 4:
        assert img[..., 3].min() > 0.99, f"{path}: transparent pixels"
    background = np.median(rgb.reshape(-1, 3), axis=0)
    drawn = np.abs(rgb - background).max(axis=2) > 0.1
    assert 0.005 < drawn.mean() < 0.6, f"{path}: {100 * drawn.mean():.2f}% of the pixels drawn"
    dark = rgb.max(axis=2) < 0.35
    assert dark.mean() > 0.001, f"{path}: no text or axes (dark pixels)"
    colour = (rgb.max(axis=2) - rgb.min(axis=2)) > 0.25
    assert colour.sum() > 100, f"{path}: no coloured marks (only {colour.sum()} coloured pixels)"
    # the drawing spreads over the canvas (not one stray mark): drawn pixels in most rows and columns bands
    assert drawn.any(axis=0).mean() > 0.5 and drawn.any(axis=1).mean() > 0.5, f"{path}: drawing confined to a corner"
    return img
