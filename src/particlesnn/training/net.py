"""The detector network: a small U-Net with three output maps (torch).

Outputs, per pixel (at the input's resolution, or ``out_scale`` times finer: see :class:`UNet`):

* channel 0: foreground logit (sigmoid -> probability that the pixel is on a particle);
* channel 1: normalised distance logit (sigmoid -> distance to the particle's boundary divided
  by the particle's largest such distance: 0 at the edge, 1 at the centre, 0 on background);
* channel 2: boundary logit (sigmoid -> probability of an instance's inner boundary pixel).

The input is one channel, robustly normalised (see :func:`particlesnn.segment.neural.normalise`),
with height and width multiples of :data:`STRIDE` px.
"""
from __future__ import annotations

import torch
from torch import nn

#: Height and width of the input must be multiples of this (three 2x poolings), px.
STRIDE = 8


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net with ``widths`` channels per level (16-32-64-128: 482 k parameters).

    ``forward(x)`` takes ``(N, 1, H, W)`` float and returns ``(N, 3, s H, s W)`` logits
    (foreground, normalised distance, boundary) with ``s = out_scale``; ``H`` and ``W``
    multiples of 8 px. With ``out_scale`` 2 the last 1 x 1 convolution gives 4 values per
    map and input pixel, rearranged into 2 x 2 output pixels (sub-pixel convolution,
    ``PixelShuffle``): the maps are as fine as those of the image enlarged by 2 for about the
    cost of the image itself (small particles need the finer maps; docs/model.md).

    With ``fine_first`` (``out_scale`` 2 only) the full-resolution level runs on the input
    enlarged by 2 instead (bilinear, inside the network) and is pooled by 4, so the deeper
    levels keep their 1x sizes and the maps come out 2x finer without sub-pixel rearranging:
    the first layers see small particles at twice their size, as on the enlarged copy, for
    about half its network time (``benchmarks/bench_net_cost.py``).
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), out_scale: int = 1,
                 fine_first: bool = False):
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        self.out_scale = int(out_scale)
        self.fine_first = bool(fine_first)
        if self.out_scale < 1:
            raise ValueError(f"out_scale must be 1 or more, got {out_scale}")
        if self.fine_first and self.out_scale != 2:
            raise ValueError(f"fine_first gives maps 2x finer: out_scale must be 2, got {out_scale}")
        w = self.widths
        self.enc = nn.ModuleList()
        cin = 1
        for c in w:
            self.enc.append(_Block(cin, c))
            cin = c
        self.pool = nn.MaxPool2d(2)
        # parameter-free, so a plain U-Net's state_dict is unchanged
        self.upin = nn.Upsample(scale_factor=2, mode="bilinear") if fine_first else nn.Identity()
        self.pool0 = nn.MaxPool2d(4) if fine_first else self.pool
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(w) - 1, 0, -1):
            k = 4 if fine_first and i == 1 else 2
            self.up.append(nn.ConvTranspose2d(w[i], w[i - 1], k, stride=k))
            self.dec.append(_Block(2 * w[i - 1], w[i - 1]))
        s = 1 if fine_first else self.out_scale
        self.head = nn.Conv2d(w[0], 3 * s * s, 1)
        self.shuffle = nn.PixelShuffle(s) if s > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        skips = []
        x = self.upin(x)
        for i, block in enumerate(self.enc):
            x = block(x)
            if i < len(self.enc) - 1:
                skips.append(x)
                x = (self.pool0 if i == 0 else self.pool)(x)
        for up, dec in zip(self.up, self.dec):
            x = up(x)
            x = dec(torch.cat([x, skips.pop()], dim=1))
        return self.shuffle(self.head(x))


def widen_head(state: dict, out_scale: int, fine_first: bool = False) -> dict:
    """A 1x U-Net's ``state_dict`` adapted to ``out_scale``: each output map's 1 x 1 head is
    repeated for the ``out_scale**2`` sub-pixels, so the new network starts from the old one's
    maps enlarged by pixel repetition (fine-tuning then learns the sub-pixel detail).

    With ``fine_first`` (``out_scale`` 2), for :class:`UNet` ``(fine_first=True)``: the head
    keeps its 3 outputs and the last transposed convolution's 2 x 2 kernel becomes 4 x 4 (each
    entry over a 2 x 2 block), i.e. the old one followed by pixel repetition onto level 0's
    grid, which now lies on the input enlarged by 2 (as the 1x network ran on the enlarged
    copy)."""
    s = int(out_scale)
    state = dict(state)
    if fine_first:
        if s != 2 or state["head.weight"].shape[0] != 3:
            raise ValueError("fine_first starts from a 1x U-Net and gives out_scale 2")
        key = max((k for k in state if k.startswith("up.") and k.endswith(".weight")),
                  key=lambda k: int(k.split(".")[1]))
        if state[key].shape[-1] == 2:
            state[key] = state[key].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        return state
    w, b = state["head.weight"], state["head.bias"]
    if w.shape[0] == 3 * s * s:
        return state
    if w.shape[0] != 3:
        raise ValueError(f"head has {w.shape[0]} outputs: neither 3 (1x) nor {3 * s * s}")
    state["head.weight"] = w.repeat_interleave(s * s, dim=0)
    state["head.bias"] = b.repeat_interleave(s * s, dim=0)
    return state


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
