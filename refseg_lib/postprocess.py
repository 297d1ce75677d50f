"""Test-time post-processing of predicted masks.

- ``dense_crf`` / ``crf_refine``: the fully connected CRF (Kraehenbuehl & Koltun, NIPS 2011)
  that CMSA applies to its probabilities at test time (sec. 4.1, "for fair comparisons"), with
  the official code's settings. It needs the optional ``pydensecrf2`` package
  (``pip install -e ".[crf]"``; it builds from source with a C++ compiler).
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
