"""Anchor boxes in the YOLOv3 style (Redmon & Farhadi, 2018), as MCN's REC head uses them.

A head at stride ``s`` predicts, for each cell (i, j) and each anchor (w_a, h_a), five numbers
(t_x, t_y, t_w, t_h, t_o). The box they stand for (YOLOv3 sec. 2.1):

    centre  = ((j + sigmoid(t_x)) s, (i + sigmoid(t_y)) s)
    size    = (w_a exp(t_w), h_a exp(t_h))
    score   = sigmoid(t_o)

Anchors are the k-means centres of the training boxes' sizes under the distance 1 - IoU
(YOLOv2 sec. 2), so that each anchor stands for a typical referent size.
"""

from __future__ import annotations

import torch


def wh_iou(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU (N, A) of boxes of sizes ``wh`` (N, 2) and ``anchors`` (A, 2) sharing one centre."""
    inter = torch.minimum(wh[:, None], anchors[None]).prod(-1)
    return inter / (wh.prod(-1)[:, None] + anchors.prod(-1)[None] - inter)


def anchor_kmeans(wh: torch.Tensor, k: int = 3, iterations: int = 100) -> torch.Tensor:
    """k anchors (k, 2) from box sizes ``wh`` (N, 2): k-means under 1 - IoU, each centre the
    median of its cluster, started from the size quantiles of the box areas (deterministic).
    Sorted by area, small to large."""
    if wh.ndim != 2 or wh.shape[1] != 2 or len(wh) < k:
        raise ValueError(f"need at least {k} box sizes (N, 2), got {tuple(wh.shape)}")
    wh = wh.float()
    order = wh.prod(-1).argsort()
    centres = wh[order[((torch.arange(k) + 0.5) / k * len(wh)).long()]].clone()
    for _ in range(iterations):
        cluster = wh_iou(wh, centres).argmax(1)
        updated = torch.stack([wh[cluster == c].median(0).values if (cluster == c).any()
                               else centres[c] for c in range(k)])
        if torch.equal(updated, centres):
            break
        centres = updated
    return centres[centres.prod(-1).argsort()]


def decode_boxes(raw: torch.Tensor, anchors: torch.Tensor, stride: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (B, A, h, w, 4) xyxy in input pixels and score logits (B, A, h, w) from a head's
    output ``raw`` (B, A, 5, h, w) with ``anchors`` (A, 2) in pixels."""
    _, _, _, h, w = raw.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=raw.device, dtype=raw.dtype),
                            torch.arange(w, device=raw.device, dtype=raw.dtype), indexing="ij")
    cx = (xs + raw[:, :, 0].sigmoid()) * stride
    cy = (ys + raw[:, :, 1].sigmoid()) * stride
    size = anchors.to(raw)[None, :, :, None, None] * raw[:, :, 2:4].clamp(max=10).exp()
    half_w, half_h = size[:, :, 0] / 2, size[:, :, 1] / 2
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)
    return boxes, raw[:, :, 4]


def best_box(raw: torch.Tensor, anchors: torch.Tensor, stride: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The referent's box (B, 4) and its score in [0, 1] (B,): the highest-scoring anchor of
    the map (a referring expression names one object, so no non-maximum suppression)."""
    boxes, logits = decode_boxes(raw, anchors, stride)
    index = logits.flatten(1).argmax(1)  # (B,)
    chosen = boxes.flatten(1, 3)[torch.arange(len(index)), index]
    return chosen, logits.flatten(1).gather(1, index[:, None])[:, 0].sigmoid()
