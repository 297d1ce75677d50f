"""Pictures of samples and predictions: mask overlays, boxes, galleries."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from refseg_lib.data.types import Sample


def overlay(image: torch.Tensor, mask: torch.Tensor, color=(1.0, 0.15, 0.15), dim: float = 0.35
            ) -> np.ndarray:
    """(H, W, 3) numpy picture of ``image`` (3, H, W) with ``mask`` (H, W) highlighted.

    Pixels outside the mask are dimmed to ``dim`` of their brightness and the mask's boundary is
    drawn in ``color``; the object itself keeps its true colours (a tint would change them).
    """
    picture = image.permute(1, 2, 0).cpu().numpy().astype(np.float32)  # (H, W, 3)
    m = mask.cpu().numpy().astype(bool)
    inner = m.copy()
    inner[1:] &= m[:-1]
    inner[:-1] &= m[1:]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    out = np.where(m[..., None], picture, picture * dim)
    out[m & ~inner] = color
    return out


def draw_box(ax, box: Sequence[float], color="yellow", **kwargs) -> None:
    """Draw an ``(x0, y0, x1, y1)`` pixel box (pixel edges, so it hugs the mask exactly)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color,
                           linewidth=kwargs.pop("linewidth", 1.5), **kwargs))


def show_samples(samples: Sequence[Sample], ncols: int = 4, titles: Sequence[str] | None = None,
                 size: float = 2.6, wrap: int = 28, box: bool = True):
    """Grid of samples: image with the referent's mask and box, the expression as the title."""
    nrows = (len(samples) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.5)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, sample) in enumerate(zip(axes.flat, samples, strict=False)):
        ax.imshow(overlay(sample.image, sample.mask), interpolation="nearest")
        if box:
            draw_box(ax, sample.box)
        head = f"{titles[i]}\n" if titles else ""
        ax.set_title(head + "\n".join(textwrap.wrap(f'"{sample.sentence}"', wrap)), fontsize=8)
    fig.tight_layout()
    return fig
