"""DAGAN (Yang et al., IEEE TMI 2018): the refinement U-Net generator and the global discriminator, as DAGAN's
released code (``model.py``: ``u_net_bn(is_refine=True)`` and ``discriminator``) builds them.

**Generator.** DAGAN works on real magnitude images in [-1, 1]: its input is the zero-filled magnitude
``u = 2 |x_u| - 1`` and its output ``clip(u + tanh(G(u)), -1, 1)`` (``is_refine``: ``tl.act.ramp``). csmri's images are
2-channel ``[real, imag]`` with the target's magnitude at most 1 per slice, so DAGAN's [-1, 1] is ``2 m - 1`` of a
magnitude ``m`` in [0, 1] (as in :mod:`csmri.losses.dagan`, whose terms read the same range). :class:`DAGANGenerator`
therefore maps the 2-channel zero-filled image to DAGAN's range, applies the residual and the clip **there**, and
returns the magnitude ``m_hat = (clip(...) + 1) / 2`` in [0, 1] with the zero-filled image's phase as a 2-channel
image (DAGAN has no phase; every DAGAN term and every csmri metric reads magnitudes only). Clipping the 2-channel
image per channel to [-1, 1] instead would allow magnitudes up to sqrt(2) (2 m - 1 up to 1.83, outside DAGAN's range).

The U-Net ``G`` (DAGAN at 256^2; here the depth follows the image size, ``log2(min(H, W))`` levels, so the bottleneck
is always 1 x 1 and 8 levels at 256^2 are DAGAN's exactly):

- encoder: stride-2 ``4 x 4`` convolutions with 64, 128, 256, 512, 512, 512, 512, 512 filters, LeakyReLU 0.2, batch
  norm on every level but the first and the 1 x 1 bottleneck;
- decoder: stride-2 ``4 x 4`` transposed convolutions, batch norm, **ReLU**, each concatenated with the encoder level
  of its size; DAGAN's widths are 512, 1024, 1024, 1024, 256, 128, 64 (deepest first), i.e. per skip level (shallow
  first) the encoder's width times :data:`DAGAN_DECODER_SCALE` = (1, 1, 1, 2, 2, 2, 1);
- head: transposed convolution to full size with 64 filters -> batch norm -> ReLU -> ``1 x 1`` convolution to one
  channel (with bias) -> tanh.

Initialisation (DAGAN's ``w_init``/``gamma_init``): every convolution and transposed convolution truncated normal
(two standard deviations, as ``tf.truncated_normal_initializer``) with std 0.01, the ``1 x 1`` output convolution with
TensorLayer's default std 0.02 (DAGAN passes no ``W_init`` to it), biases 0, batch-norm ``gamma ~ N(1, 0.02)``,
``beta = 0``. At initialisation the generator returns nearly the zero-filled image, in training mode too.

Bias-free convolutions where batch norm follows (DAGAN gives them a bias, which batch norm cancels exactly).

**Discriminator.** DAGAN's: stride-2 ``4 x 4`` convolutions (64, 128, ... doubling, N(0, 0.02), bias on the first only,
batch norm from the second, LeakyReLU 0.2) down to 4 x 4, then a residual tail of ``1 x 1`` convolutions to 16 and 8
times the base width, a bottleneck branch ``1 x 1`` (2x base) -> ``3 x 3`` (2x base) -> ``3 x 3`` (8x base) added to the
8x-base map, LeakyReLU, and a linear layer to one logit. Its input is the magnitude in [0, 1] mapped to DAGAN's
``2 m - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from csmri.errors import CheckpointError

DAGAN_FEATURES = (64, 128, 256, 512, 512, 512, 512, 512)
# decoder width / encoder width per skip level, shallow first: DAGAN's deconv1..deconv7 have 64, 128, 256, 1024, 1024,
# 1024, 512 filters for encoder levels of 64, 128, 256, 512, 512, 512, 512 (model.py, u_net_bn)
DAGAN_DECODER_SCALE = (1, 1, 1, 2, 2, 2, 1)
CONV_STD = 0.01  # DAGAN's generator w_init: tf.truncated_normal_initializer(stddev=0.01)
OUT_STD = 0.02  # TensorLayer 1.7's Conv2d default W_init (truncated normal, stddev 0.02): DAGAN's 1 x 1 'out' conv
GAMMA_STD = 0.02  # DAGAN's gamma_init: tf.random_normal_initializer(1., 0.02)
D_STD = 0.02  # DAGAN's discriminator w_init: tf.random_normal_initializer(stddev=0.02)


def dagan_depth(size: int) -> int:
    """Number of stride-2 levels for a ``size x size`` image: ``log2(size)`` (needs a power of two >= 8)."""
    depth = int(math.log2(size)) if size > 0 else 0
    if size < 8 or 2**depth != size:
        raise ValueError(f"DAGAN needs a power-of-two image size >= 8, got {size}")
    return depth


def truncated_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """``N(0, std)`` redrawn outside two standard deviations (TensorFlow's ``truncated_normal_initializer``)."""
    return nn.init.trunc_normal_(tensor, 0.0, std, -2.0 * std, 2.0 * std)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """Batch norm with DAGAN's ``gamma ~ N(1, 0.02)``, ``beta = 0`` (TensorLayer: decay 0.9, eps 1e-5)."""
    bn = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)
    nn.init.normal_(bn.weight, 1.0, GAMMA_STD)
    nn.init.zeros_(bn.bias)
    return bn


def dagan_decoder_features(features: Sequence[int]) -> list[int]:
    """DAGAN's decoder widths per skip level (shallow first) for encoder widths ``features`` (deepest = bottleneck)."""
    scale = list(DAGAN_DECODER_SCALE) + [1] * max(0, len(features) - 1 - len(DAGAN_DECODER_SCALE))
    return [c * s for c, s in zip(features[:-1], scale, strict=False)]


class DAGANUNet(nn.Module):
    """DAGAN's ``u_net_bn`` body: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``, pre-tanh.

    Args:
        features: encoder widths, shallow first; the last is the ``1 x 1`` bottleneck (H, W = ``2 ** len(features)``).
        decoder_features: width of the transposed convolution whose output meets encoder level ``k`` (``k = 0`` the
            shallowest), ``len(features) - 1`` of them; ``None``: :func:`dagan_decoder_features`.
        head_features: width of the full-size transposed convolution before the ``1 x 1`` output (DAGAN: 64);
            ``None``: ``features[0]``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = DAGAN_FEATURES,
        decoder_features: Sequence[int] | None = None,
        head_features: int | None = None,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        features = list(features)
        if len(features) < 2:
            raise ValueError(f"need >= 2 levels, got {features}")
        decoder = list(decoder_features) if decoder_features is not None else dagan_decoder_features(features)
        if len(decoder) != len(features) - 1:
            raise ValueError(f"need {len(features) - 1} decoder widths for encoder {features}, got {decoder}")
        head_features = head_features or features[0]
        self.levels = len(features)
        self.down = nn.ModuleList()
        previous = in_channels
        for i, c in enumerate(features):
            normed = 0 < i < len(features) - 1
            self.down.append(
                nn.Sequential(
                    nn.Conv2d(previous, c, 4, stride=2, padding=1, bias=not normed),
                    batch_norm(c) if normed else nn.Identity(),
                    nn.LeakyReLU(negative_slope, inplace=True),
                )
            )
            previous = c
        self.up = nn.ModuleList()
        for k in reversed(range(len(features) - 1)):
            self.up.append(
                nn.Sequential(
                    nn.ConvTranspose2d(previous, decoder[k], 4, stride=2, padding=1, bias=False),
                    batch_norm(decoder[k]),
                    nn.ReLU(inplace=True),
                )
            )
            previous = decoder[k] + features[k]  # after concatenating the skip connection
        self.head = nn.Sequential(
            nn.ConvTranspose2d(previous, head_features, 4, stride=2, padding=1, bias=False),
            batch_norm(head_features),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Conv2d(head_features, out_channels, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                truncated_normal_(module.weight, OUT_STD if module is self.out else CONV_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the decoder directly
        for up in self.up:
            x = torch.cat([up(x), skips.pop()], dim=1)
        return self.out(self.head(x))


def _refuse_old_generator(state_dict, prefix, *args) -> None:  # noqa: ANN001
    """Load pre-hook: a checkpoint of the earlier generator layout (bare transposed-convolution head on 2-channel
    images, key ``unet.head.weight``) cannot be mapped onto DAGAN's generator; say so instead of a key list."""
    if f"{prefix}unet.head.weight" in state_dict and f"{prefix}unet.out.weight" not in state_dict:
        raise CheckpointError(
            "this DAGAN checkpoint holds the earlier csmri generator (a bare transposed-convolution head on 2-channel "
            "images), not DAGAN's (deconv -> BN -> ReLU -> 1x1 conv -> tanh on magnitudes, clipped residual)",
            "retrain the DAGAN stage (experiment=dagan); its weights cannot be mapped",
        )


class DAGANGenerator(nn.Module):
    """DAGAN's refinement generator on csmri's 2-channel images (see the module doc for the range convention).

    ``forward(x, kspace=None, mask=None)``: ``x`` the zero-filled image ``(B, 2, H, W)`` ``[real, imag]`` (k-space and
    mask are accepted for a uniform generator interface and unused: DAGAN has no data consistency). With
    ``u = 2 |x| - 1`` and ``v = clip(u + tanh(G(u)), -1, 1)`` (``residual``; else ``v = tanh(G(u))``, DAGAN's plain
    ``unet``) it returns ``m_hat * x / |x|`` with ``m_hat = (v + 1) / 2`` in [0, 1] (phase 0 where ``x = 0``):
    a ``(B, 2, H, W)`` image whose magnitude is ``m_hat``, so ``2 |x_hat| - 1`` is DAGAN's output in [-1, 1].
    """

    def __init__(
        self,
        size: int = 256,
        features: Sequence[int] = DAGAN_FEATURES,
        residual: bool = True,
        decoder_features: Sequence[int] | None = None,
        head_features: int | None = None,
    ) -> None:
        super().__init__()
        depth = dagan_depth(size)
        features = list(features)
        levels = features[:depth] + [features[-1]] * max(0, depth - len(features))
        if decoder_features is not None:
            decoder_features = list(decoder_features)[: depth - 1]
        self.size, self.residual = size, residual
        self.unet = DAGANUNet(1, 1, levels, decoder_features, head_features)
        self._register_load_state_dict_pre_hook(_refuse_old_generator)

    def forward(
        self, x: torch.Tensor, kspace: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"DAGANGenerator was built for {self.size}x{self.size}, got {tuple(x.shape[-2:])}")
        if x.ndim != 4 or x.shape[1] != 2:
            raise ValueError(f"DAGANGenerator expects (B, 2, H, W) [real, imag] images, got {tuple(x.shape)}")
        mag = x.pow(2).sum(1, keepdim=True).sqrt()  # (B, 1, H, W)
        u = 2 * mag - 1  # DAGAN's input range
        g = torch.tanh(self.unet(u))
        v = (u + g).clamp(-1.0, 1.0) if self.residual else g  # DAGAN's is_refine: ramp(u + tanh, -1, 1)
        m_hat = (v + 1) / 2  # [0, 1]
        zero = mag <= 0
        safe = torch.where(zero, torch.ones_like(mag), mag)
        real = torch.where(zero, torch.ones_like(mag), x[:, :1] / safe)
        imag = torch.where(zero, torch.zeros_like(mag), x[:, 1:] / safe)
        return m_hat * torch.cat([real, imag], dim=1)


class GlobalDiscriminator(nn.Module):
    """``(B, C, H, W) -> (logits (B, 1), [feature maps])``: DAGAN's discriminator (see the module doc).

    Args:
        in_channels: 1 for magnitudes (DAGAN), 2 for ``[real, imag]``.
        size: image size (a power of two >= 8); ``log2(size) - 2`` strided levels reach 4 x 4.
        base: width of the first level (DAGAN's ``df_dim`` 64); level ``i`` has ``base * 2**i``, at most
            ``max_features``.
        tail: DAGAN's ``1 x 1`` / residual tail (``h6``..``h8``); widths ``16, 8, 2`` times ``base``, at most
            ``max_features``.
        dagan_range: map the input ``m`` (magnitudes in [0, 1]) to DAGAN's ``2 m - 1`` first.
    The feature maps are each strided level's output, then the tail's (after its residual addition).
    """

    def __init__(
        self,
        in_channels: int = 1,
        size: int = 256,
        base: int = 64,
        max_features: int = 2048,
        negative_slope: float = 0.2,
        tail: bool = True,
        dagan_range: bool = True,
    ) -> None:
        super().__init__()
        depth = dagan_depth(size) - 2
        self.size, self.dagan_range = size, dagan_range
        self.negative_slope = negative_slope
        self.layers = nn.ModuleList()
        previous = in_channels
        for i in range(depth):
            c = min(base * 2**i, max_features)
            self.layers.append(
                nn.Sequential(
                    nn.Conv2d(previous, c, 4, stride=2, padding=1, bias=i == 0),
                    batch_norm(c) if i > 0 else nn.Identity(),
                    nn.LeakyReLU(negative_slope, inplace=True),
                )
            )
            previous = c
        self.tail: nn.ModuleDict | None = None
        if tail:
            wide, mid, narrow = (min(m * base, max_features) for m in (16, 8, 2))

            def conv(cin: int, cout: int, k: int, act: bool) -> nn.Sequential:
                layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), batch_norm(cout)]
                if act:
                    layers.append(nn.LeakyReLU(negative_slope, inplace=True))
                return nn.Sequential(*layers)

            self.tail = nn.ModuleDict(
                {
                    "h6": conv(previous, wide, 1, True),
                    "h7": conv(wide, mid, 1, False),
                    "res": nn.Sequential(
                        conv(mid, narrow, 1, True), conv(narrow, narrow, 3, True), conv(narrow, mid, 3, False)
                    ),
                }
            )
            previous = mid
        self.classifier = nn.Linear(previous * 16, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.normal_(module.weight, 0.0, D_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"GlobalDiscriminator was built for {self.size}x{self.size}, got {tuple(x.shape[-2:])}")
        if self.dagan_range:
            x = 2 * x - 1
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        if self.tail is not None:
            h7 = self.tail["h7"](self.tail["h6"](x))
            x = nn.functional.leaky_relu(h7 + self.tail["res"](h7), self.negative_slope)
            features.append(x)
        return self.classifier(x.flatten(1)), features
