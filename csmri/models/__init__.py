"""Networks. Every image network maps 2-channel ``(B, 2, H, W)`` ``[real, imag]`` tensors."""

from csmri.models.recnet import RecNet

__all__ = ["RecNet"]
