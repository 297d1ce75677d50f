"""The SRU (DMN eqs. 2-6) and the mSRU (eq. 10) against a step-by-step reference written here."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from refseg_lib.nn.sru import SRU, MultimodalSRU, last_step, linear_scan

LENGTHS = [7, 3, 1, 5]  # batch of four, padded to T = 7
GATES = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "identity": lambda c: c}


def reference_sru(sru: SRU, x: torch.Tensor, lengths: list[int], c0: torch.Tensor):
    """One sequence, one direction and one step at a time: eqs. (2)-(6) as printed.

    ``x`` (T, B, C), ``c0`` (L, B, D*H). Returns the last layer's ``h`` (T, B, D*H), zero after
    each sequence's end, and ``c_n`` (L, B, D*H): the state after the last step each direction
    reads (step n - 1 forwards, step 0 backwards).
    """
    steps, batch, _ = x.shape
    finals = []
    for i, layer in enumerate(sru.layers):
        size, hidden = layer.directions * layer.hidden_size, layer.hidden_size
        g = GATES[layer.activation]
        h = [[x.new_zeros(size) for _ in range(batch)] for _ in range(steps)]
        final = [[None] * layer.directions for _ in range(batch)]
        for d in range(layer.directions):
            units = slice(d * hidden, (d + 1) * hidden)
            # the fused matrix is [W; W_f; W_r (; W_h)], each (D*H, C): direction d's rows
            blocks = layer.weight.view(layer.projections, size, -1)[:, units]  # (k, H, C)
            W, W_f, W_r = blocks[0], blocks[1], blocks[2]
            b_f, b_r = layer.bias[0, units], layer.bias[1, units]
            for b, n in enumerate(lengths):
                c = c0[i, b, units]
                for t in (range(n) if d == 0 else reversed(range(n))):
                    x_t = x[t, b]
                    x_tilde = W @ x_t  # (2)
                    f = torch.sigmoid(W_f @ x_t + b_f)  # (3)
                    r = torch.sigmoid(W_r @ x_t + b_r)  # (4)
                    c = f * c + (1 - f) * x_tilde  # (5)
                    highway = blocks[3] @ x_t if layer.projections == 4 else x_t[units]
                    h_t = r * g(c) + (1 - r) * highway  # (6)
                    h[t][b] = torch.cat([h[t][b][:d * hidden], h_t, h[t][b][(d + 1) * hidden:]])
                final[b][d] = c
        x = torch.stack([torch.stack(row) for row in h])  # (T, B, D*H): the next layer's input
        finals.append(torch.stack([torch.cat(directions) for directions in final]))
    return x, torch.stack(finals)


def dyadic(*shape, generator, scale=4):
    """Random multiples of 1/scale: sums and products of a few of them are exact in float64."""
    return torch.randint(-scale, scale + 1, shape, generator=generator).double() / scale


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "identity"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("input_size", ["equal", "other"], ids=["k3", "k4"])
def test_sru_equals_the_step_by_step_reference(layers, activation, bidirectional, input_size):
    torch.manual_seed(0)
    hidden, directions = 3, 2 if bidirectional else 1
    size = hidden * directions if input_size == "equal" else 5
    sru = SRU(size, hidden, layers, bidirectional=bidirectional, activation=activation).double()
    assert sru.layers[0].projections == (3 if input_size == "equal" else 4)
    with torch.no_grad():
        for layer in sru.layers:
            layer.bias.normal_()  # zero at initialisation: make b_f, b_r matter
    x = torch.randn(max(LENGTHS), len(LENGTHS), size, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(layers, len(LENGTHS), hidden * directions, dtype=torch.float64,
                     requires_grad=True)
    h, c_n = sru(x, torch.tensor(LENGTHS), c0)
    h_ref, c_ref = reference_sru(sru, x, LENGTHS, c0)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_n, c_ref, rtol=1e-5, atol=1e-5)

    weights_h, weights_c = torch.randn_like(h), torch.randn_like(c_n)  # a loss that reads both
    inputs = [x, c0, *sru.parameters()]
    grads = torch.autograd.grad((h * weights_h).sum() + (c_n * weights_c).sum(), inputs)
    grads_ref = torch.autograd.grad((h_ref * weights_h).sum() + (c_ref * weights_c).sum(),
                                    inputs)
    for name, grad, grad_ref in zip(["x", "c0", *dict(sru.named_parameters())], grads,
                                    grads_ref, strict=True):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-5, msg=f"d loss / d {name}")


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_a_padded_step_leaves_the_state_bit_for_bit_unchanged(bidirectional):
    # dyadic inputs and weights make the projections exact whatever the GEMM's summation
    # order, and 4 sequences x 8 or 16 units keep every elementwise op on whole vector lanes:
    # the padded batch and the unpadded runs then compute each real step identically
    generator = torch.Generator().manual_seed(0)
    hidden = 8
    size = hidden * (2 if bidirectional else 1)
    sru = SRU(size, hidden, 2, bidirectional=bidirectional).double()
    with torch.no_grad():
        for layer in sru.layers:
            layer.weight.copy_(dyadic(*layer.weight.shape, generator=generator, scale=8))
    x = dyadic(max(LENGTHS), len(LENGTHS), size, generator=generator)
    with torch.no_grad():
        h, c_n = sru(x, torch.tensor(LENGTHS))
        for b, n in enumerate(LENGTHS):
            _, c_alone = sru(x[:n])  # every sequence cut to n steps: nothing is padded
            assert torch.equal(c_n[:, b], c_alone[:, b]), f"sequence {b} (length {n})"
            assert torch.equal(h[n:, b], torch.zeros_like(h[n:, b])), "output at padding"


def test_the_padding_is_never_read():
    torch.manual_seed(0)
    sru = SRU(4, 4, 2, bidirectional=True)
    x = torch.randn(7, 4, 4, requires_grad=True)
    lengths = torch.tensor(LENGTHS)
    garbage = x.detach().clone()
    for b, n in enumerate(LENGTHS):
        garbage[n:, b] = 1e3
    h, c_n = sru(x, lengths)
    h_garbage, c_garbage = sru(garbage, lengths)
    assert torch.equal(h, h_garbage) and torch.equal(c_n, c_garbage)
    (h.sum() + c_n.sum()).backward()
    for b, n in enumerate(LENGTHS):
        assert torch.equal(x.grad[n:, b], torch.zeros_like(x.grad[n:, b]))


def test_linear_scan_gradcheck_and_values():
    torch.manual_seed(0)
    f = torch.rand(5, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 3, 2, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(linear_scan, (f, b, c0))
    c, expected = linear_scan(f, b, c0), []
    previous = c0
    for t in range(5):
        previous = f[t] * previous + b[t]
        expected.append(previous)
    torch.testing.assert_close(c, torch.stack(expected))
    torch.testing.assert_close(linear_scan(f, b), linear_scan(f, b, torch.zeros_like(c0)))


def test_multimodal_sru_is_the_sru_at_every_pixel():
    torch.manual_seed(0)
    msru = MultimodalSRU(6, 4, num_layers=3).double()
    maps = torch.randn(2, 5, 6, 3, 4, dtype=torch.float64)  # (B, T, C, H, W)
    lengths = torch.tensor([5, 2])
    out = msru(maps, lengths)
    assert out.shape == (2, 4, 3, 4)  # (B, hidden, H, W)
    for b, n in enumerate(lengths.tolist()):
        for y in range(3):
            for x in range(4):
                h, _ = msru.rnn(maps[b, :n, :, y, x][:, None])  # one pixel: (n, 1, C)
                torch.testing.assert_close(out[b, :, y, x], h[-1, 0])


def test_multimodal_lstm_is_the_lstm_at_every_pixel():
    torch.manual_seed(0)
    mlstm = MultimodalSRU(6, 4, num_layers=2, cell="lstm").double()
    maps = torch.randn(2, 5, 6, 2, 3, dtype=torch.float64)
    out = mlstm(maps, torch.tensor([5, 2]))
    h, _ = mlstm.rnn(maps[1, :2, :, 1, 2][:, None])
    torch.testing.assert_close(out[1, :, 1, 2], h[-1, 0])


def test_batch_first_is_the_transpose():
    torch.manual_seed(0)
    time_first = SRU(5, 3, 2, bidirectional=True)
    batch_first = SRU(5, 3, 2, bidirectional=True, batch_first=True)
    batch_first.load_state_dict(time_first.state_dict())
    x, lengths = torch.randn(7, 4, 5), torch.tensor(LENGTHS)
    h, c_n = time_first(x, lengths)
    h_bf, c_bf = batch_first(x.transpose(0, 1), lengths)
    torch.testing.assert_close(h_bf, h.transpose(0, 1))
    torch.testing.assert_close(c_bf, c_n)  # c_n stays (L, B, D*H), as nn.LSTM's h_n
    torch.testing.assert_close(last_step(h, lengths)[1], h[2, 1])


def test_the_initial_state_is_used():
    torch.manual_seed(0)
    sru = SRU(4, 4, 2)
    x, c0 = torch.randn(3, 2, 4), torch.randn(2, 2, 4)
    h_zero, c_zero = sru(x)
    torch.testing.assert_close(sru(x, c0=torch.zeros_like(c0))[0], h_zero)
    h, c_n = sru(x, c0=c0)
    assert not torch.allclose(h, h_zero) and not torch.allclose(c_n, c_zero)


@pytest.mark.parametrize(("input_size", "bidirectional"), [(8, False), (6, False), (8, True)])
def test_mixed_precision_runs_the_recurrence_in_float32(input_size, bidirectional):
    # the engine trains under bf16 autocast on GPUs: the projections come out in bf16 (and the
    # mSRU's input, from a convolution, is bf16 too) while the biases stay float32
    torch.manual_seed(0)
    sru = SRU(input_size, 4 if bidirectional else 8, 2, bidirectional=bidirectional)
    x, lengths = torch.randn(5, 3, input_size), torch.tensor([5, 2, 1])
    h_full, c_full = sru(x, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, c_n = sru(x.bfloat16().requires_grad_(), lengths)
    assert h.dtype == c_n.dtype == torch.float32
    torch.testing.assert_close(h, h_full, rtol=0, atol=0.05)
    torch.testing.assert_close(c_n, c_full, rtol=0, atol=0.05)
    (h.sum() + c_n.sum()).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in sru.parameters())


def test_shapes_and_sizes():
    sru = SRU(5, 3, 2, bidirectional=True)
    assert [layer.projections for layer in sru.layers] == [4, 3]  # 5 != 2*3, then 6 == 2*3
    assert sru.layers[0].weight.shape == (4 * 6, 5) and sru.layers[1].weight.shape == (3 * 6, 6)
    h, c_n = sru(torch.randn(7, 4, 5))
    assert h.shape == (7, 4, 6) and c_n.shape == (2, 4, 6)
    lm = SRU(1000, 1000, 3)  # DMN's language module, as the official code builds it
    assert sum(p.numel() for p in lm.parameters()) == 3 * (3 * 1000 * 1000 + 2 * 1000)


@pytest.mark.parametrize(("call", "message"), [
    (lambda sru: sru(torch.randn(7, 4)), "SRU input must be"),
    (lambda sru: sru(torch.randn(7, 4, 6)), "C = 5"),
    (lambda sru: sru(torch.randn(7, 4, 5), torch.tensor([7, 3])), r"lengths must be \(4,\)"),
    (lambda sru: sru(torch.randn(7, 4, 5), torch.tensor([7, 3, 0, 5])), r"lie in \[1, 7\]"),
    (lambda sru: sru(torch.randn(7, 4, 5), torch.tensor([8, 3, 1, 5])), r"lie in \[1, 7\]"),
    (lambda sru: sru(torch.randn(7, 4, 5), c0=torch.zeros(1, 4, 6)), r"c0 must be \(2, 4, 6\)"),
    (lambda sru: sru(torch.randn(7, 4, 5), c0=torch.zeros(2, 4, 3)), r"c0 must be \(2, 4, 6\)"),
])
def test_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(SRU(5, 3, 2, bidirectional=True))


def test_clear_errors_elsewhere():
    with pytest.raises(ValueError, match="activation must be one of"):
        SRU(4, 4, activation="relu")
    with pytest.raises(ValueError, match="same shape"):
        linear_scan(torch.rand(3, 2), torch.rand(3, 1))
    with pytest.raises(ValueError, match="cell must be"):
        MultimodalSRU(4, 4, cell="gru")


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    sru = SRU(4, 4, 2, dropout=0.5)
    x = torch.randn(3, 2, 4)
    assert isinstance(sru.dropout, nn.Dropout)
    sru.eval()
    torch.testing.assert_close(sru(x)[0], sru(x)[0])
    sru.train()
    assert not torch.allclose(sru(x)[0], sru(x)[0])


def test_msru_by_length_groups_equals_the_padded_batch():
    """MultimodalSRU runs each group of equal-length sentences cut to its words: the same R_N
    and gradients as the padded batch run with lengths (the padded steps are skipped)."""
    torch.manual_seed(0)
    msru = MultimodalSRU(6, 5, num_layers=2)
    maps = torch.randn(5, 4, 6, 3, 2, requires_grad=True)
    lengths = torch.tensor([4, 1, 3, 1, 2])
    grouped = msru(maps, lengths)
    padded = msru._run(maps, lengths)
    torch.testing.assert_close(grouped, padded)
    torch.testing.assert_close(torch.autograd.grad(grouped.sum(), maps)[0],
                               torch.autograd.grad(padded.sum(), maps)[0])
