"""ConvLSTM: a 1x1 ConvLSTM is nn.LSTM at every pixel; shapes, state, initialisation, errors."""

from __future__ import annotations

import pytest
import torch

from refseg_lib.nn.convlstm import ConvLSTM, ConvLSTMCell


def test_a_1x1_convlstm_is_the_lstm_at_every_pixel():
    """Same weights (PyTorch orders the LSTM's gates i, f, g, o; ours i, f, o, g)."""
    torch.manual_seed(0)
    conv = ConvLSTM(5, 4, num_layers=2, kernel_size=1).double()
    lstm = torch.nn.LSTM(5, 4, num_layers=2).double()
    with torch.no_grad():
        for n, cell in enumerate(conv.cells):
            i, f, o, g = cell.gates.weight[:, :, 0, 0].chunk(4)
            weight = torch.cat([i, f, g, o])  # (4H, in + H)
            inputs = cell.gates.in_channels - 4
            getattr(lstm, f"weight_ih_l{n}").copy_(weight[:, :inputs])
            getattr(lstm, f"weight_hh_l{n}").copy_(weight[:, inputs:])
            bi, bf, bo, bg = cell.gates.bias.chunk(4)
            getattr(lstm, f"bias_ih_l{n}").copy_(torch.cat([bi, bf, bg, bo]))
            getattr(lstm, f"bias_hh_l{n}").zero_()
    x = torch.randn(6, 2, 5, 3, 4, dtype=torch.double)  # (T, B, C, H, W)
    out, state = conv(x)
    pixels = x.permute(0, 1, 3, 4, 2).reshape(6, 2 * 3 * 4, 5)  # (T, B*H*W, C)
    expected, (h_n, c_n) = lstm(pixels)
    torch.testing.assert_close(out.permute(0, 1, 3, 4, 2).reshape(6, -1, 4), expected)
    torch.testing.assert_close(state[-1][1].permute(0, 2, 3, 1).reshape(-1, 4), c_n[-1])


def test_shapes_state_and_step():
    torch.manual_seed(0)
    model = ConvLSTM(3, 8, num_layers=2, kernel_size=3)
    x = torch.randn(4, 2, 3, 5, 7)
    out, state = model(x)
    assert out.shape == (4, 2, 8, 5, 7) and len(state) == 2
    assert all(h.shape == c.shape == (2, 8, 5, 7) for h, c in state)
    # running the first steps, then the rest from the returned state, gives the same outputs
    first, middle = model(x[:2])
    rest, _ = model(x[2:], middle)
    torch.testing.assert_close(torch.cat([first, rest]), out)
    h, _ = model.step(x[0])
    torch.testing.assert_close(h, out[0])


def test_the_kernel_sees_neighbours():
    torch.manual_seed(0)
    cell = ConvLSTMCell(1, 2, kernel_size=3)
    x = torch.zeros(1, 1, 5, 5)
    base, _ = cell(x)
    x[0, 0, 2, 2] = 1.0
    moved, _ = cell(x)
    changed = (moved - base).abs().sum(dim=1)[0] > 0  # (5, 5)
    assert changed[1:4, 1:4].all() and not changed[0].any() and not changed[:, 4].any()


def test_ris_initialisation():
    cell = ConvLSTMCell(3, 4, gate_bias=1.0, init_range=0.08)
    assert cell.gates.weight.abs().max() <= 0.08
    assert torch.equal(cell.gates.bias[:12], torch.ones(12))  # i, f, o start open
    assert cell.gates.bias[12:].abs().max() <= 0.08  # g keeps its uniform start


def test_clear_errors():
    with pytest.raises(ValueError, match="odd"):
        ConvLSTMCell(3, 4, kernel_size=2)
    with pytest.raises(ValueError, match=r"\(T, B, C_in, H, W\) with C_in = 3"):
        ConvLSTM(3, 4)(torch.randn(2, 4, 5, 5))
