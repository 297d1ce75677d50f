"""The 8-D spatial coordinates that tell a 1x1 convolution where on the map it looks.

Hu, Rohrbach & Darrell (ECCV 2016) concatenate such coordinates to the visual features; the
exact function below is RMI's (Liu et al., ICCV 2017: ``generate_spatial_batch`` in
chenxi116/TF-phrasecut-public, ``util/processing_tools.py``), which DMN's official code copies
and CMSA uses too. The LSTM-CNN baseline of this course uses it as well: one function serves
every model.
"""

from __future__ import annotations

import torch


def spatial_coordinates(
    height: int, width: int, device: torch.device | str | None = None, dtype=torch.float32
) -> torch.Tensor:
    """The (8, H, W) coordinates of every cell of an H x W feature map.

    At cell (h, w), with the map spanning [-1, 1] in both directions:

        [xmin, ymin, xmax, ymax, xctr, yctr, 1/W, 1/H]
        xmin = w/W * 2 - 1,  xmax = (w+1)/W * 2 - 1,  xctr = (xmin + xmax) / 2
        ymin = h/H * 2 - 1,  ymax = (h+1)/H * 2 - 1,  yctr = (ymin + ymax) / 2

    A model expands it over the batch: ``spatial_coordinates(h, w).expand(B, -1, -1, -1)``.
    """
    if height < 1 or width < 1:
        raise ValueError(f"the map must have at least one cell, got {height} x {width}")
    w = torch.arange(width, device=device, dtype=torch.float64)
    h = torch.arange(height, device=device, dtype=torch.float64)
    xmin, xmax = w / width * 2 - 1, (w + 1) / width * 2 - 1  # (W,)
    ymin, ymax = h / height * 2 - 1, (h + 1) / height * 2 - 1  # (H,)
    columns = [xmin, xmax, (xmin + xmax) / 2]  # vary along w
    rows = [ymin, ymax, (ymin + ymax) / 2]  # vary along h
    x = [c.view(1, width).expand(height, width) for c in columns]
    y = [r.view(height, 1).expand(height, width) for r in rows]
    cell = [torch.full((height, width), v, device=device, dtype=torch.float64)
            for v in (1 / width, 1 / height)]
    coords = torch.stack([x[0], y[0], x[1], y[1], x[2], y[2], *cell])  # (8, H, W)
    return coords.to(dtype)


def append_coordinates(features: torch.Tensor) -> torch.Tensor:
    """``[features, LOC]``: the (B, C, H, W) map with the 8 coordinate channels appended."""
    batch, _, height, width = features.shape
    coords = spatial_coordinates(height, width, features.device, features.dtype)  # (8, H, W)
    return torch.cat([features, coords.expand(batch, -1, -1, -1)], dim=1)  # (B, C + 8, H, W)
