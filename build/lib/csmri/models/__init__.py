"""Networks. Reconstruction networks map 2-channel ``(B, 2, H, W)`` ``[real, imag]`` tensors; the segmentation
U-Net (:mod:`csmri.models.segnet`) takes 1-channel magnitudes."""

from csmri.models.discriminator import PatchDiscriminator
from csmri.models.recnet import RecNet
from csmri.models.refinement import GatedRefinement
from csmri.models.unet import UNet
from csmri.models.vgg import VGGFeatures

__all__ = ["GatedRefinement", "PatchDiscriminator", "RecNet", "UNet", "VGGFeatures"]
