"""The recurrent instance segmentation loss (Romera-Paredes & Torr, sec. 3.3) on cases whose
optimum is known."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from refseg_lib.losses import ris_loss, soft_iou


def squares(n: int, side: int = 12) -> torch.Tensor:
    """n disjoint 3 x 3 squares on a side x side canvas, as (n, side, side) floats."""
    masks = torch.zeros(n, side, side)
    for k in range(n):
        masks[k, 3 * k:3 * k + 3, 3 * k:3 * k + 3] = 1
    return masks


def test_soft_iou_is_the_iou_on_binary_masks_and_a_matrix():
    a, b = squares(2), squares(3)
    iou = soft_iou(a, b)
    assert iou.shape == (2, 3)
    torch.testing.assert_close(iou, torch.eye(2, 3))
    half = torch.zeros(1, 12, 12)
    half[0, 0:3, 0:2] = 1  # 6 of the first square's 9 cells
    assert float(soft_iou(half, b)[0, 0]) == pytest.approx(6 / 9)


@pytest.mark.parametrize("form", ["paper", "code"])
def test_the_matching_undoes_a_permutation(form):
    targets = squares(3)
    order = [2, 0, 1]
    predicted = torch.cat([targets[order], torch.zeros(1, 12, 12)])  # 4 steps, the last empty
    scores = torch.tensor([0.9, 0.9, 0.9, 0.1])
    loss, matching = ris_loss(predicted, torch.logit(scores), targets, form=form)
    assert sorted(matching) == [(0, 2), (1, 0), (2, 1)]
    expected_bce = 3 * -torch.log(torch.tensor(0.9)) - torch.log(torch.tensor(0.9))
    assert float(loss) == pytest.approx(float((-3 + expected_bce) / 4), rel=1e-5)


@pytest.mark.parametrize("form", ["paper", "code"])
@pytest.mark.parametrize("steps,count", [(4, 3), (3, 3), (2, 4)])
def test_the_matching_is_the_brute_force_optimum(form, steps, count):
    generator = torch.Generator().manual_seed(steps * 10 + count)
    predicted = torch.rand(steps, 6, 6, generator=generator)
    targets = (torch.rand(count, 6, 6, generator=generator) > 0.5).float()
    scores = torch.rand(steps, generator=generator).clamp(0.05, 0.95)
    _, matching = ris_loss(predicted, torch.logit(scores), targets, form=form)
    iou = soft_iou(predicted, targets)
    positive = F.binary_cross_entropy(scores, torch.ones(steps), reduction="none")
    cost = -iou + (positive[:, None] if form == "code" else 0)

    def total(pairs):
        return sum(float(cost[t, j]) for t, j in pairs)

    size = min(steps, count)
    candidates = range(size) if form == "code" else range(steps)  # code: the first steps only
    best = min(total(list(zip(ts, js, strict=True)))
               for ts in itertools.permutations(candidates, size)
               for js in itertools.combinations(range(count), size))
    assert len(matching) == size
    assert total(matching) == pytest.approx(best, abs=1e-9)


def test_paper_and_code_differ_in_which_steps_may_be_matched():
    """Step 1 emits nothing; steps 2 and 3 find the two instances. The printed loss matches the
    steps that found them; the official code matches the first n = 2 steps, so it pulls step 1's
    mask towards an instance. Both want the first n steps confident."""
    targets = squares(2)
    predicted = torch.cat([torch.zeros(1, 12, 12), targets]).requires_grad_()
    scores = torch.zeros(3, requires_grad=True)  # logits: s = 0.5
    for form, steps_matched in (("paper", [1, 2]), ("code", [0, 1])):
        scores.grad = predicted.grad = None
        loss, matching = ris_loss(predicted, scores, targets, form=form)
        loss.backward()
        assert sorted(step for step, _ in matching) == steps_matched, form
        assert (scores.grad < 0).tolist() == [True, True, False], form  # s - y < 0 where y = 1
        assert (predicted.grad[0].abs().sum() > 0) == (form == "code"), form


def test_gradients_reach_masks_and_scores_and_no_instance_is_handled():
    predicted = torch.rand(3, 12, 12, requires_grad=True)
    scores = torch.logit(torch.rand(3).clamp(0.1, 0.9)).requires_grad_()
    loss, _ = ris_loss(predicted, scores, squares(2))
    loss.backward()
    assert predicted.grad.abs().sum() > 0 and scores.grad.abs().sum() > 0
    empty, matching = ris_loss(predicted.detach(), scores.detach(), torch.zeros(0, 12, 12),
                               weight=2.0)
    assert matching == []
    expected = 2.0 * F.binary_cross_entropy(torch.sigmoid(scores.detach()), torch.zeros(3))
    torch.testing.assert_close(empty, expected)
    with pytest.raises(ValueError, match="form must be one of"):
        ris_loss(predicted, scores, squares(2), form="nope")
    with pytest.raises(ValueError, match="3 masks but 2 confidences"):
        ris_loss(predicted, scores[:2], squares(2))


def test_loss_under_autocast_is_computed_in_float32():
    """The engine computes the loss inside autocast (bf16 here, CPU): the matching loss keeps
    float32 and gives the value it gives outside."""
    torch.manual_seed(0)
    predicted, scores = torch.rand(4, 8, 8), torch.randn(4)
    targets = torch.rand(3, 8, 8) > 0.5
    expected, pairs = ris_loss(predicted, scores, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, same = ris_loss(predicted.bfloat16(), scores.bfloat16(), targets)
    assert loss.dtype == torch.float32 and same == pairs
    torch.testing.assert_close(loss, expected, atol=2e-2, rtol=0)


def test_a_confidence_rounded_to_one_still_learns_to_stop():
    """A logit of 30 gives s = 1.0 in float32, where BCE on the probability has no gradient;
    from the logit the extra step is still pushed down (the curriculum's second stage)."""
    logits = torch.tensor([30.0, 30.0], requires_grad=True)
    loss, _ = ris_loss(squares(1).expand(2, -1, -1), logits, squares(1))
    loss.backward()
    assert torch.sigmoid(logits[1]).item() == 1.0
    assert logits.grad[1] > 0.4  # (s - 0) / T
