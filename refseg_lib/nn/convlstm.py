"""Convolutional LSTM (Shi et al., NeurIPS 2015): an LSTM whose matrix products are convolutions,
so that its state is a feature map.

Two papers of the course use it:

- Romera-Paredes & Torr (ECCV 2016): a 2-layer ConvLSTM over FCN features emits one instance
  per step; gate biases i, f, o start at 1.0 and weights are U(-0.08, 0.08) (official Torch7
  code, bernard24/RIS).
- CMSA's Table 3 (Ye et al., CVPR 2019): the "+ConvLSTM" fusion baseline runs a ConvLSTM over
  the feature levels, deepest first, as RRN does (Li et al., CVPR 2018).

For an input map x_t and the previous state (h_{t-1}, c_{t-1}), with * a convolution:

    [i, f, o, g] = W * [x_t, h_{t-1}] + b
    c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)
    h_t = sigmoid(o) tanh(c_t)

One convolution over the concatenation computes the four gates at once. With a 1x1 kernel this
is ``nn.LSTM`` applied to every pixel (RMI's mLSTM; ``benchmarks/sru_vs_lstm.py`` uses that).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvLSTMCell(nn.Module):
    """One step: ``cell(x (B, C_in, H, W), state (h, c) or None) -> (h, c)``, each (B, C, H, W)."""

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int = 3, *,
                 gate_bias: float = 0.0, init_range: float | None = None):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (the state keeps its size), "
                             f"got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(input_channels + hidden_channels, 4 * hidden_channels,
                               kernel_size, padding=kernel_size // 2)  # [i, f, o, g]
        if init_range is not None:  # RIS: U(-0.08, 0.08)
            nn.init.uniform_(self.gates.weight, -init_range, init_range)
            nn.init.uniform_(self.gates.bias, -init_range, init_range)
        if gate_bias:  # RIS: the biases of i, f and o start at 1.0 (not g's)
            with torch.no_grad():
                self.gates.bias[: 3 * hidden_channels].fill_(gate_bias)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])
            state = (zeros, zeros)
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)  # each (B, C, H, W)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTM(nn.Module):
    """A stack of ``ConvLSTMCell``s run over a sequence of maps.

    ``forward(x (T, B, C_in, H, W), state=None)`` returns the last layer's outputs
    (T, B, C, H, W) and the final state of every layer, a list of (h, c). ``step(x_t, state)``
    advances one time step, for models that build their next input from the last output
    (RIS emits an instance per step).
    """

    def __init__(self, input_channels: int, hidden_channels: int, num_layers: int = 1,
                 kernel_size: int = 3, *, gate_bias: float = 0.0,
                 init_range: float | None = None):
        super().__init__()
        self.input_channels = input_channels
        self.cells = nn.ModuleList(
            ConvLSTMCell(input_channels if n == 0 else hidden_channels, hidden_channels,
                         kernel_size, gate_bias=gate_bias, init_range=init_range)
            for n in range(num_layers))

    def step(self, x: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]] | None = None
             ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """One time step through every layer: (B, C_in, H, W) -> (B, C, H, W), new states."""
        new_state = []
        for n, cell in enumerate(self.cells):
            h, c = cell(x, None if state is None else state[n])
            new_state.append((h, c))
            x = h
        return x, new_state

    def forward(self, x: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        if x.ndim != 5 or x.shape[2] != self.input_channels:
            raise ValueError(f"ConvLSTM input must be (T, B, C_in, H, W) with C_in = "
                             f"{self.input_channels}, got {tuple(x.shape)}")
        outputs = []
        for x_t in x.unbind(0):
            h, state = self.step(x_t, state)
            outputs.append(h)
        return torch.stack(outputs), state
