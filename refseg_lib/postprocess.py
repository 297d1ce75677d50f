"""Test-time post-processing of predicted masks.

- ``dense_crf`` / ``crf_refine``: the fully connected CRF (Kraehenbuehl & Koltun, NIPS 2011)
  that CMSA applies to its probabilities at test time (sec. 4.1, "for fair comparisons"), with
  the official code's settings. It needs the optional ``pydensecrf2`` package
  (``pip install -e ".[crf]"``; it builds from source with a C++ compiler).
- ``roi_crop``, ``soft_nls``, ``asnls``: MCN's ways of using the predicted box on the mask
  (sec. 3.3, Table 1): a hard crop, eq. 10 with fixed factors, eq. 11's factors from the box
  score. MCN then binarises at ``MCN_THRESHOLD``.
"""

from __future__ import annotations

import numpy as np
import torch

CRF_INSTALL = ("DenseCRF refinement needs the optional package pydensecrf2: "
               'pip install -e ".[crf]" (or pip install pydensecrf2; it compiles, so a C++ '
               "compiler must be present)")


def dense_crf(image: np.ndarray, probability: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Refined foreground probability (H, W) of ``probability`` (H, W) on ``image`` (H, W, 3)
    uint8. Official CMSA settings: Gaussian kernel sxy 3, compat 3; bilateral kernel sxy 20,
    srgb 3, compat 10; 5 mean-field iterations."""
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_softmax
    except ImportError as error:
        raise ImportError(CRF_INSTALL) from error
    height, width = probability.shape
    if image.shape != (height, width, 3) or image.dtype != np.uint8:
        raise ValueError(f"image must be ({height}, {width}, 3) uint8, got {image.shape} "
                         f"{image.dtype}")
    p = np.clip(probability.astype(np.float32), 1e-6, 1 - 1e-6)
    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(np.stack([1 - p, p]))))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=20, srgb=3, rgbim=np.ascontiguousarray(image), compat=10)
    q = np.array(crf.inference(iterations), dtype=np.float32)  # (2, H*W) marginals
    return q[1].reshape(height, width)


def crf_refine(images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``evaluate(refine=crf_refine)``: images (B, 3, H, W) in [0, 1], logits (B, H, W) ->
    the logits of the CRF's marginals."""
    pixels = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    probabilities = torch.sigmoid(logits.float()).cpu().numpy()
    refined = np.stack([dense_crf(image, p) for image, p in zip(pixels, probabilities,
                                                                  strict=True)])
    return torch.logit(torch.from_numpy(refined), eps=1e-6).to(logits.device)


MCN_THRESHOLD = 0.35  # MCN binarises the updated RES response at 0.35 (official code)


def inside_box(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) bool: the pixels whose centre lies in the xyxy box (B, 4), in pixel units."""
    h, w = size
    ys = torch.arange(h, device=boxes.device, dtype=boxes.dtype) + 0.5
    xs = torch.arange(w, device=boxes.device, dtype=boxes.dtype) + 0.5
    x0, y0, x1, y1 = (boxes[:, i, None, None] for i in range(4))
    return ((xs >= x0) & (xs <= x1) & (ys[:, None] >= y0) & (ys[:, None] <= y1))


def soft_nls(probability: torch.Tensor, boxes: torch.Tensor, up: float | torch.Tensor = 1.5,
             dec: float | torch.Tensor = 0.5) -> torch.Tensor:
    """Eq. 10, Soft Non-Located Suppression: o * up inside the box, o * dec outside.

    probability (B, H, W), boxes (B, 4) xyxy in the map's pixels; ``up`` and ``dec`` scalars
    or (B,) tensors. The result is not clipped (only its threshold matters)."""
    up, dec = (torch.as_tensor(f, dtype=probability.dtype, device=probability.device)
               .reshape(-1, 1, 1) for f in (up, dec))
    inside = inside_box(boxes.to(probability.dtype), probability.shape[-2:])
    return probability * torch.where(inside, up, dec)


def asnls(probability: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor,
          lambdas: tuple[float, float, float, float] = (-1.0, 2.0, 1.0, 0.0)) -> torch.Tensor:
    """Eq. 11, Adaptive Soft-NLS: up = l_au p + l_bu, dec = l_ad p + l_bd with p the box
    score (B,); the official lambdas (-1, 2, 1, 0) give up = 2 - p and dec = p."""
    l_au, l_bu, l_ad, l_bd = lambdas
    return soft_nls(probability, boxes, up=l_au * scores + l_bu, dec=l_ad * scores + l_bd)


def roi_crop(probability: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Table 1's hard processing: the response outside the box set to 0."""
    return soft_nls(probability, boxes, up=1.0, dec=0.0)
