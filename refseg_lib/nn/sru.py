"""Simple Recurrent Units (Lei et al. 2017), as DMN writes them (Margffoy-Tuay et al., ECCV 2018,
eqs. 2-6), and the multimodal SRU of DMN's synthesis module (eq. 10).

For an input sequence x_1..x_T:

    x~_t = W x_t                                    (2)
    f_t  = sigmoid(W_f x_t + b_f)                   (3)  forget gate
    r_t  = sigmoid(W_r x_t + b_r)                   (4)  reset (highway) gate
    c_t  = f_t * c_{t-1} + (1 - f_t) * x~_t         (5)
    h_t  = r_t * g(c_t) + (1 - r_t) * x_t           (6)  g: sigmoid in DMN; tanh; identity

Nothing on the right of (2)-(4) depends on the previous step, so the three projections of every
step are one matrix product, ``x @ [W; W_f; W_r]^T`` over all T steps at once, and the only
sequential work is (5): an elementwise *linear* recurrence ``c_t = f_t * c_{t-1} + b_t`` with
``b_t = (1 - f_t) * x~_t``. An LSTM, in contrast, multiplies h_{t-1} by a hidden-to-hidden matrix
at every step: T small matrix products in sequence instead of one large one.

How the recurrence is made fast (measured in ``benchmarks/sru_vs_lstm.py``): eqs. (3)-(6) are
one hand-written autograd function, ``_SRUElementwise``. Its forward runs (5) as one fused
multiply-add per step, in place into a preallocated output; its backward runs the reverse
recurrence ``dc_t = g_t + f_{t+1} * dc_{t+1}``, again one fused op per step, and computes every
other gradient as a few vectorised passes written straight into the gradient of the fused
projection. Autograd thus records one node per layer instead of several per step, and the
large matrix products (forward, and the two of the backward) do the bulk of the work.
``linear_scan`` exposes the recurrence (5) alone, with the same forward and backward loops.

Padding: a padded step gets f = 1 and b = 0, so c_t = 1 * c_{t-1} + 0 leaves the state
bit-for-bit unchanged, and its output h_t is zero. Since padding sits at the end of each
sequence, the backward direction of a bidirectional SRU can scan the time-reversed tensor: its
padded steps come first and keep the initial state.

When the input and hidden sizes differ, the highway term (1 - r_t) * x_t of (6) needs x_t in the
hidden size; like Lei et al.'s implementation we add a fourth projection W_h x_t to the fused
matrix product (DMN's sizes are equal, 1000 -> 1000, except the official mSRU's 1000 -> 1005).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,  # DMN's choice (sec. 3.3)
    "tanh": torch.tanh,  # Lei et al.'s language models
    "identity": lambda c: c,
}


class _LinearScan(torch.autograd.Function):
    """c_t = f_t * c_{t-1} + b_t for t = 1..T (eq. 5 with b_t = (1 - f_t) * x~_t)."""

    @staticmethod
    def forward(ctx, f: torch.Tensor, b: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
        c = _scan(f, b, c0)
        ctx.save_for_backward(f, c, c0)
        return c

    @staticmethod
    def backward(ctx, grad_c: torch.Tensor):
        f, c, c0 = ctx.saved_tensors
        dc = _reverse_scan(f, grad_c.contiguous())
        previous = torch.cat([c0[None], c[:-1]])  # (T, ...) c_{t-1}
        return dc * previous, dc, f[0] * dc[0]  # dL/df, dL/db, dL/dc0


def _scan(f: torch.Tensor, b: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
    """The forward recurrence, one fused multiply-add per step into a preallocated output."""
    c = torch.empty_like(b)  # (T, ...) all states
    previous = c0
    for t in range(b.shape[0]):
        torch.addcmul(b[t], f[t], previous, out=c[t])
        previous = c[t]
    return c


def _reverse_scan(f: torch.Tensor, grad_c: torch.Tensor) -> torch.Tensor:
    """dL/dc_t in full: the gradient arriving at c_t plus f_{t+1} * dL/dc_{t+1}."""
    dc = torch.empty_like(grad_c)
    dc[-1] = grad_c[-1]
    for t in range(grad_c.shape[0] - 2, -1, -1):
        torch.addcmul(grad_c[t], f[t + 1], dc[t + 1], out=dc[t])
    return dc


def linear_scan(f: torch.Tensor, b: torch.Tensor, c0: torch.Tensor | None = None) -> torch.Tensor:
    """All states of ``c_t = f_t * c_{t-1} + b_t``; ``f``, ``b`` (T, ...), ``c0`` (...) or zeros."""
    if f.shape != b.shape:
        raise ValueError(f"f and b must have the same shape, got {tuple(f.shape)} and "
                         f"{tuple(b.shape)}")
    if c0 is None:
        c0 = b.new_zeros(b.shape[1:])
    return _LinearScan.apply(f.contiguous(), b.contiguous(), c0.contiguous())


class _SRUElementwise(torch.autograd.Function):
    """Eqs. (3)-(6) after the projection, forward and backward written out by hand.

    Inputs in scan order: ``u`` (T, B, k, DH) the fused projections [x~, W_f x, W_r x (, W_h x)],
    ``highway`` (T, B, DH) or None (then the highway is ``u[:, :, 3]``), ``bias`` (2, DH),
    ``c0`` (B, DH), ``mask`` (T, B, 1 or DH) bool or None. Returns ``h`` (T, B, DH) and ``c_T``.

    The work is memory-bound (a few flops per element), so what counts is the number of passes
    over (T, B, DH) tensors: one autograd node, gradients written straight into the slices of
    ``du``, and no masking in the backward beyond ``dh``, since a padded step has f = 1, where
    the factors (1 - f) and f (1 - f) of dL/dx~ and dL/d(W_f x) vanish exactly.
    """

    @staticmethod
    def forward(ctx, u, highway, bias, c0, mask, activation):
        x_tilde = u[:, :, 0]
        f = torch.add(u[:, :, 1], bias[0]).sigmoid_()  # (3)
        r = torch.add(u[:, :, 2], bias[1]).sigmoid_()  # (4)
        projected = highway is None
        highway = u[:, :, 3] if projected else highway
        b = torch.addcmul(x_tilde, f, x_tilde, value=-1)  # (1 - f) * x~
        padding = None if mask is None else ~mask
        if padding is not None:  # padded steps: f = 1, b = 0 keeps c_t = c_{t-1} exactly
            f.masked_fill_(padding, 1.0)
            b.masked_fill_(padding, 0.0)
        c = _scan(f, b, c0)  # (5)
        g = ACTIVATIONS[activation](c)
        h = torch.lerp(highway, g, r)  # (6): r * g(c) + (1 - r) * x
        if padding is not None:
            h.masked_fill_(padding, 0.0)
        ctx.save_for_backward(u, highway, f, r, c, g, c0, padding)
        ctx.activation, ctx.projected = activation, projected
        return h, c[-1]

    @staticmethod
    def backward(ctx, dh, dc_last):
        u, highway, f, r, c, g, c0, padding = ctx.saved_tensors
        if padding is not None:  # h is the constant 0 at padded steps
            dh = dh.masked_fill(padding, 0.0)
        du = torch.empty_like(u)  # (T, B, k, DH)
        # eq. (6), h = r * g(c) + (1 - r) * highway
        dh_r = dh * r
        grad_c = dh_r * _derivative(ctx.activation, c, g)  # dL/dc_t through h_t
        grad_c[-1] += dc_last
        d_highway = dh - dh_r  # dh * (1 - r)
        through_r = (g - highway).mul_(dh)  # dL/dr
        torch.mul(through_r, torch.addcmul(r, r, r, value=-1), out=du[:, :, 2])  # (4): r(1-r)
        # eq. (5), c_t = f_t * c_{t-1} + (1 - f_t) * x~_t
        dc = _reverse_scan(f, grad_c)
        torch.addcmul(dc, dc, f, value=-1, out=du[:, :, 0])  # dL/dx~ = dc * (1 - f)
        df = torch.empty_like(dc)  # dL/df = dc * (c_{t-1} - x~_t)
        torch.mul(dc[1:], c[:-1], out=df[1:])
        torch.mul(dc[0], c0, out=df[0])
        df.addcmul_(dc, u[:, :, 0], value=-1)
        torch.mul(df, torch.addcmul(f, f, f, value=-1), out=du[:, :, 1])  # (3): f(1-f)
        dbias = du[:, :, 1:3].sum(dim=(0, 1))  # (2, DH)
        if ctx.projected:
            du[:, :, 3] = d_highway
            d_highway = None
        return du, d_highway, dbias, f[0] * dc[0], None, None


def _derivative(name: str, c: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """g'(c) for the choices of eq. (6), from c and g = g(c)."""
    if name == "sigmoid":
        return torch.addcmul(g, g, g, value=-1)  # g (1 - g)
    if name == "tanh":
        return torch.addcmul(torch.ones_like(g), g, g, value=-1)  # 1 - g^2
    return torch.ones_like(c)


def step_mask(lengths: torch.Tensor | None, steps: int, batch: int,
              device: torch.device) -> torch.Tensor | None:
    """(T, B, 1) bool, True at the real steps of each sequence; None when nothing is padded."""
    if lengths is None:
        return None
    lengths = lengths.to(device)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must be ({batch},), got {tuple(lengths.shape)}")
    if int(lengths.min()) < 1 or int(lengths.max()) > steps:
        raise ValueError(f"lengths must lie in [1, {steps}], got {lengths.tolist()}")
    return (torch.arange(steps, device=device)[:, None] < lengths[None, :])[..., None]


class SRULayer(nn.Module):
    """One SRU layer (eqs. 2-6), one or two directions, all projections in one matrix product.

    ``forward(x (T, B, input_size), mask (T, B, 1) or None, c0 (B, D*H) or None)`` returns
    ``h`` (T, B, D*H) and the last state ``c_T`` (B, D*H), D = 2 when bidirectional
    (forward direction first).
    """

    def __init__(self, input_size: int, hidden_size: int, *, bidirectional: bool = False,
                 activation: str = "sigmoid"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.directions = 2 if bidirectional else 1
        self.activation = activation
        # x~, f, r, and W_h x when the highway needs a projection (input size != output size)
        self.projections = 3 if input_size == hidden_size * self.directions else 4
        out = self.projections * hidden_size * self.directions
        self.weight = nn.Parameter(torch.empty(out, input_size))  # [W; W_f; W_r (; W_h)]
        self.bias = nn.Parameter(torch.zeros(2, self.directions * hidden_size))  # b_f, b_r
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Lei et al.'s initialisation: weights uniform with variance 1/input_size, biases 0."""
        bound = (3.0 / self.input_size) ** 0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                c0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        steps, batch, _ = x.shape
        size = self.directions * self.hidden_size  # DH
        u = F.linear(x, self.weight).reshape(steps, batch, self.projections, size)  # (2)-(4) fused
        # under autocast u (and x, from a convolution) is bf16/fp16 while the bias is float32:
        # the elementwise part (3)-(6) runs in the wider type, as torch.lerp needs one dtype
        dtype = torch.promote_types(u.dtype, self.bias.dtype)
        u, x = u.to(dtype), x.to(dtype)
        highway = x if self.projections == 3 else None  # None: W_h x, the last projection
        if mask is not None and self.directions == 2:
            mask = mask.expand(steps, batch, size)
        if self.directions == 2:  # the backward half scans the time-reversed sequence
            u, highway, mask = (None if t is None else _reverse_second_half(t)
                                for t in (u, highway, mask))
        c0 = x.new_zeros(batch, size) if c0 is None else c0.to(dtype)
        h, c_last = _SRUElementwise.apply(u.contiguous(), highway, self.bias, c0, mask,
                                          self.activation)  # (3)-(6)
        if self.directions == 2:
            h = _reverse_second_half(h)
        return h, c_last

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, directions={self.directions}, "
                f"activation={self.activation}")


def _reverse_second_half(x: torch.Tensor) -> torch.Tensor:
    """Reverse time (dim 0) in the second half of the last dimension (the backward direction)."""
    forward, backward = x.chunk(2, dim=-1)
    return torch.cat([forward, backward.flip(0)], dim=-1)


class SRU(nn.Module):
    """A stack of SRU layers with ``nn.LSTM``'s calling convention (time first by default).

    ``forward(x (T, B, input_size), lengths (B,) or None, c0 (L, B, D*H) or None)`` returns
    ``h`` (T, B, D*H), the last layer's outputs (zero at padded steps), and ``c_n``
    (L, B, D*H), every layer's state after each sequence's last real step.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 2, *,
                 bidirectional: bool = False, activation: str = "sigmoid",
                 dropout: float = 0.0, batch_first: bool = False):
        super().__init__()
        directions = 2 if bidirectional else 1
        self.hidden_size, self.num_layers, self.batch_first = hidden_size, num_layers, batch_first
        self.output_size = directions * hidden_size
        self.layers = nn.ModuleList(
            SRULayer(input_size if i == 0 else self.output_size, hidden_size,
                     bidirectional=bidirectional, activation=activation)
            for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)  # between layers, as nn.LSTM

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                c0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.layers[0].input_size:
            order = "(B, T, C)" if self.batch_first else "(T, B, C)"
            raise ValueError(f"SRU input must be {order} with C = {self.layers[0].input_size}, "
                             f"got {tuple(x.shape)}")
        if self.batch_first:
            x = x.transpose(0, 1)
        expected = (self.num_layers, x.shape[1], self.output_size)
        if c0 is not None and tuple(c0.shape) != expected:
            raise ValueError(f"c0 must be {expected} (layers, batch, directions * hidden), "
                             f"got {tuple(c0.shape)}")
        mask = step_mask(lengths, x.shape[0], x.shape[1], x.device)
        states = []
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            x, c_last = layer(x, mask, None if c0 is None else c0[i])
            states.append(c_last)
        if self.batch_first:
            x = x.transpose(0, 1)
        return x, torch.stack(states)


class MultimodalSRU(nn.Module):
    """DMN's mSRU (eq. 10): the same SRU run at every pixel over the T words.

    A 1x1-convolution recurrence: the weights are shared by all pixels, each pixel is one
    sequence. ``forward(M (B, T, C, H, W), lengths (B,) or None)`` returns ``R_N``
    (B, hidden, H, W), the last layer's output after each sequence's last real word.
    ``cell="lstm"`` gives RMI's mLSTM (Liu et al. 2017), the LSTM of DMN's Fig. 7.

    DMN's official code instead flattens the map and the words into one sequence of length
    H*W*T (batch 1) and keeps its last H*W outputs, which chains pixels to each other; we
    implement the paper's per-pixel recurrence (sequence T, batch B*H*W).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 3, *,
                 activation: str = "sigmoid", cell: str = "sru"):
        super().__init__()
        if cell not in ("sru", "lstm"):
            raise ValueError(f"cell must be 'sru' or 'lstm', got {cell!r}")
        self.rnn = (SRU(input_size, hidden_size, num_layers, activation=activation)
                    if cell == "sru" else nn.LSTM(input_size, hidden_size, num_layers))
        self.output_size = hidden_size

    def forward(self, maps: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is not None and isinstance(self.rnn, SRU):
            # each group of equal-length sequences cut to its real words: the same R_N as the
            # padded batch (an SRU step never reads a later one), without the padded steps
            batch, _, _, height, width = maps.shape
            out = maps.new_zeros(batch, self.output_size, height, width)
            for length in lengths.unique().tolist():
                rows = torch.nonzero(lengths == length).squeeze(1)
                out = out.index_put((rows,), self._run(maps[rows, :length], None))
            return out
        return self._run(maps, lengths)

    def _run(self, maps: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        batch, steps, channels, height, width = maps.shape
        sequences = maps.permute(1, 0, 3, 4, 2).reshape(steps, batch * height * width, channels)
        pixel_lengths = None if lengths is None else lengths.repeat_interleave(height * width)
        h = run_recurrent(self.rnn, sequences, pixel_lengths)  # (T, B*H*W, hidden)
        last = last_step(h, pixel_lengths)  # (B*H*W, hidden)
        return last.view(batch, height, width, -1).permute(0, 3, 1, 2)  # (B, hidden, H, W)


def run_recurrent(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Every output of a time-first ``SRU`` or ``nn.LSTM`` (T, B, H), zero at padded steps.

    The LSTM runs on a packed sequence, so that neither reads the padding.
    """
    if isinstance(rnn, SRU):
        return rnn(x, lengths)[0]
    if lengths is None:
        return rnn(x)[0]
    packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
    return pad_packed_sequence(rnn(packed)[0], total_length=x.shape[0])[0]


def last_step(h: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``h`` (T, B, C) at each sequence's last real step: (B, C)."""
    if lengths is None:
        return h[-1]
    index = (lengths.to(h.device) - 1).view(1, -1, 1).expand(1, -1, h.shape[-1])
    return h.gather(0, index)[0]
