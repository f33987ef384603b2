"""MRI physics in pure torch: FFT, sampling masks and their seeded sampler, undersampling and data consistency.

Conventions used everywhere in csmri:

- Complex images and k-space are ``torch.complex64`` tensors of shape ``(B, H, W)``.
- At network boundaries an image is 2 real channels ``(B, 2, H, W)`` = ``[real, imag]``
  (:func:`complex_to_channels` / :func:`channels_to_complex`).
- k-space is **centred**: the DC component sits at index ``(H // 2, W // 2)``
  (:func:`fft2c` / :func:`ifft2c`, orthonormal).
- Cartesian masks sample whole lines along the **phase-encode axis H** (dim -2); every sampled
  line is full along the readout axis W (dim -1). Masks are float tensors of 0/1 with shape
  ``(B, H, W)``.
"""

from csmri.physics.complex import channels_to_complex, complex_to_channels
from csmri.physics.consistency import DataConsistency, data_consistency
from csmri.physics.fft import fft2c, ifft2c
from csmri.physics.mask import (
    MASK_TYPES,
    EquispacedLineMask,
    GaussianLineMask,
    LineMaskFunc,
    RandomLineMask,
    default_sample_n,
    gaussian_line_density,
    gaussian_line_mask,
    line_mask,
    lines_to_mask,
)
from csmri.physics.sampling import MaskSampler
from csmri.physics.undersample import undersample, zero_filled

__all__ = [
    "MASK_TYPES",
    "EquispacedLineMask",
    "GaussianLineMask",
    "LineMaskFunc",
    "RandomLineMask",
    "DataConsistency",
    "MaskSampler",
    "channels_to_complex",
    "complex_to_channels",
    "data_consistency",
    "default_sample_n",
    "fft2c",
    "gaussian_line_density",
    "gaussian_line_mask",
    "ifft2c",
    "line_mask",
    "lines_to_mask",
    "undersample",
    "zero_filled",
]
