"""Networks. Every image network maps 2-channel ``(B, 2, H, W)`` ``[real, imag]`` tensors."""

from csmri.models.recnet import RecNet
from csmri.models.unet import UNet

__all__ = ["RecNet", "UNet"]
