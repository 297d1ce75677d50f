"""MCN's loss and post-processing parts: CEM (eqs. 5-9) and Soft-NLS / ASNLS (eqs. 10-11)."""

from __future__ import annotations

import math

import pytest
import torch

from refseg_lib.losses import cem_loss
from refseg_lib.postprocess import asnls, inside_box, roi_crop, soft_nls


def direct_cem(e_s, e_c, f_s, f_c, form):
    """Eqs. 6-9 element by element, for one image: softmaxes, T, then C(i, j) or the code's sum."""
    p_s, p_c = torch.softmax(e_s, 0), torch.softmax(e_c, 0)
    total, expected = 0.0, 0.0
    for i in range(len(e_s)):
        for j in range(len(e_c)):
            cos = f_s[i] @ f_c[j] / (f_s[i].norm() * f_c[j].norm())
            t = (0.5 * cos + 0.5).clamp(1e-6, 1.0)
            total = total + torch.log(p_s[i] * t * p_c[j])  # eq. 7, first line
            expected = expected + p_s[i] * t * p_c[j]
    return -total if form == "paper" else -torch.log(expected + 1e-6)


@pytest.mark.parametrize("form", ["paper", "code"])
def test_cem_equals_eqs_6_to_9_evaluated_directly(form):
    torch.manual_seed(0)
    e_s, e_c = torch.randn(2, 6, dtype=torch.double), torch.randn(2, 4, dtype=torch.double)
    f_s, f_c = torch.randn(2, 6, 3, dtype=torch.double), torch.randn(2, 4, 3, dtype=torch.double)
    ours = cem_loss(e_s, e_c, f_s, f_c, form=form)
    direct = sum(direct_cem(e_s[b], e_c[b], f_s[b], f_c[b], form) for b in range(2)) / 2
    torch.testing.assert_close(ours, direct)


def test_cem_stays_finite_where_the_product_underflows():
    e_s = torch.tensor([[800.0, 0.0, -800.0]], requires_grad=True)  # softmax underflows to 0
    e_c = torch.tensor([[0.0, 900.0]], requires_grad=True)
    f = torch.randn(1, 3, 4), torch.randn(1, 2, 4)
    for form in ("paper", "code"):
        loss = cem_loss(e_s, e_c, *f, form=form)
        grads = torch.autograd.grad(loss, [e_s, e_c])
        assert math.isfinite(loss.item()) and all(torch.isfinite(g).all() for g in grads)
    with pytest.raises(ValueError, match="form must be one of"):
        cem_loss(e_s, e_c, *f, form="nope")


def test_cem_is_lowest_when_both_branches_agree():
    f = torch.eye(3)[None]  # three orthogonal features on both maps: T = 1 on the diagonal
    agree = cem_loss(torch.tensor([[9.0, 0, 0]]), torch.tensor([[9.0, 0, 0]]), f, f, form="code")
    differ = cem_loss(torch.tensor([[9.0, 0, 0]]), torch.tensor([[0, 9.0, 0]]), f, f, form="code")
    assert agree < differ


def test_soft_nls_asnls_and_roi_crop_on_a_box():
    prob = torch.full((2, 4, 4), 0.4)
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 4.0, 3.0]])  # xyxy, pixel units
    inside = inside_box(boxes, (4, 4))
    assert inside[0].sum() == 4 and inside[0, :2, :2].all()
    assert inside[1].sum() == 6 and inside[1, 1:3, 1:].all()
    soft = soft_nls(prob, boxes)  # eq. 10 with 1.5 / 0.5
    assert torch.equal(soft, torch.where(inside, 0.6, 0.2).to(soft.dtype))
    scores = torch.tensor([0.9, 0.2])
    adaptive = asnls(prob, boxes, scores)  # eq. 11: up = 2 - p, dec = p
    for b, p in enumerate(scores.tolist()):
        torch.testing.assert_close(adaptive[b][inside[b]], torch.full((int(inside[b].sum()),),
                                                                       0.4 * (2 - p)))
        torch.testing.assert_close(adaptive[b][~inside[b]], torch.full(
            (int((~inside[b]).sum()),), 0.4 * p))
    assert torch.equal(roi_crop(prob, boxes), torch.where(inside, prob, 0.0))
