"""DAGAN's generator loss terms (Yang et al., IEEE TMI 2018) as its released code computes them.

DAGAN (TensorFlow/TensorLayer, ``train.py``/``utils.py``/``model.py``) works on real magnitude images
``x`` in [-1, 1] (its generator ends in ``tanh``) and defines, per batch of ``B`` images,

- ``g_nmse = mean_b ||x_hat_b - x_b||_2 / ||x_b||_2`` on the [-1, 1] images (a root, per image);
- ``g_fft = mean_b mean_pixels (|FFT2(u_hat_b)| - |FFT2(u_b)|)^2`` with ``u = (x + 1) / 2`` in [0, 1] and the
  unnormalised FFT (``tf.spectral.fft2d``);
- ``nmse_0_1 = mean_b ||u_hat_b - u_b||_2 / ||u_b||_2`` on the [0, 1] images ``u = (x + 1) / 2``: not a loss but its
  validation metric, on which it keeps the best model and stops early (``train.py``);
- ``g_perceptual = mean_b mean_{c,h,w} (phi(x_hat_b) - phi(x_b))^2`` where ``phi`` is VGG-16 up to
  ``pool4`` (DAGAN's ``conv4``: conv4_3 -> ReLU -> 2x2 max-pool) on the image resized to 244 x 244, tiled to
  3 channels, mapped to [0, 255] (``(x + 1) * 127.5``) minus the ImageNet mean ``[123.68, 116.779, 103.939]``
  in RGB order (no division by a std), with VGG-16 weights that expect exactly that input.

Mapping from csmri. csmri images are complex (2-channel ``[real, imag]`` tensors ``(B, 2, H, W)``) with the
target's magnitude at most 1 per slice. DAGAN's real image is taken to be the **magnitude** ``m = |x|`` in
[0, 1], mapped to DAGAN's range as ``x_dagan = 2 m - 1`` (so DAGAN's ``(x + 1) / 2`` is ``m`` itself and its
``(x + 1) * 127.5`` is ``255 m``); :class:`csmri.models.dagan.DAGANGenerator` clips its output in that range, so
its magnitudes lie in [0, 1]. Every function here accepts anything :func:`csmri.metrics.image.magnitude`
does (2-channel, complex, or real magnitudes ``(B, H, W)``). The reconstruction's magnitude is not clipped here
(the joint baseline's generator, which also uses these terms, has no bound of its own).

Known differences from the released code (deliberate):

- the resize is bilinear with half-pixel centres (``F.interpolate(..., align_corners=False)``, no antialias)
  for both images; DAGAN resized the target with ``scipy.misc.imresize`` (PIL, which also byte-scales it to
  its own min..max) and the reconstruction with TF1's ``tf.image.resize_images`` (corner-aligned sampling);
- ``weights: imagenet`` gives torchvision's VGG-16 (``vgg16-397923af.pth``). DAGAN used the Caffe VGG-16
  (``vgg16_weights.npz``, trained on [0, 255] mean-subtracted inputs); torchvision's weights were trained on
  inputs also divided by the ImageNet std (about 0.226 * 255 = 57.7), so fed DAGAN's input their features are
  on another (larger) scale than the Caffe network's, for which the weight 0.0025 was tuned. For DAGAN's exact
  network give ``weights: /path/vgg16_weights.npz`` (loaded by :class:`csmri.models.vgg.VGGFeatures`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from csmri.metrics.image import magnitude
from csmri.models.vgg import VGGFeatures

# DAGAN's ``vgg16_cnn_emb``: ImageNet mean in [0, 255], RGB order (the Caffe VGG-16 converted to RGB)
DAGAN_VGG_MEAN = (123.68, 116.779, 103.939)
DAGAN_VGG_SIZE = 244  # sic: DAGAN's code resizes to 244 x 244 (not VGG's usual 224)


def to_dagan_range(image: torch.Tensor) -> torch.Tensor:
    """csmri image (2-channel, complex or magnitude) -> DAGAN's real image ``2 |x| - 1`` ``(B, H, W)``."""
    return 2 * magnitude(image) - 1


def dagan_nmse(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """DAGAN's image term: ``mean_b ||a_b - b_b||_2 / ||b_b||_2`` with ``a, b = 2|x| - 1`` in DAGAN's [-1, 1].

    Args:
        output, target: ``(B, 2, H, W)`` ``[real, imag]``, complex ``(B, H, W)`` or magnitudes ``(B, H, W)``;
            target magnitudes in [0, 1].
    Returns:
        A scalar: the per-image relative error (a root, not squared), averaged over the ``B`` images.
    """
    a, b = to_dagan_range(output), to_dagan_range(target)
    num = (a - b).pow(2).flatten(1).sum(1).sqrt()
    den = b.pow(2).flatten(1).sum(1).sqrt().clamp_min(eps)
    return (num / den).mean()


def dagan_nmse_01(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """DAGAN's validation NMSE (``nmse_0_1``, its model-selection metric): ``mean_b ||m_hat_b - m_b||_2 / ||m_b||_2``.

    On the images mapped to [0, 1] (DAGAN's ``(x + 1) / 2``), which in csmri are the magnitudes ``m = |x|`` themselves.
    Unlike :func:`dagan_nmse` (the [-1, 1] loss term, where the background's -1 enters the norm) it measures the
    error relative to the image's own energy.

    Args:
        output, target: as in :func:`dagan_nmse`.
    Returns:
        A scalar: the per-image relative error (a root), averaged over the ``B`` images.
    """
    a, b = magnitude(output), magnitude(target)
    num = (a - b).pow(2).flatten(1).sum(1).sqrt()
    den = b.pow(2).flatten(1).sum(1).sqrt().clamp_min(eps)
    return (num / den).mean()


def dagan_freq(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DAGAN's frequency term: ``mean_b mean_{k} (|FFT2(m_hat_b)|_k - |FFT2(m_b)|_k)^2``.

    ``m`` is the magnitude image in [0, 1] (DAGAN's ``(x + 1) / 2``), FFT2 the plain unnormalised DFT over the
    last two axes (no shift, no ``1/sqrt(HW)``; the shift would not change ``|FFT|`` differences' mean anyway).
    Scale: ``|FFT2(m)|`` at DC is ``sum(m)``, so the term grows like ``(H W)^2`` times an image-domain error.

    Args:
        output, target: as in :func:`dagan_nmse`.
    Returns:
        A scalar (mean over images and the ``H x W`` frequencies).
    """
    spectrum_out = torch.fft.fft2(magnitude(output).to(torch.float32)).abs()
    spectrum_target = torch.fft.fft2(magnitude(target).to(torch.float32)).abs()
    return (spectrum_out - spectrum_target).pow(2).mean()


def dagan_vgg_input(mag: torch.Tensor, size: int | None = DAGAN_VGG_SIZE) -> torch.Tensor:
    """DAGAN's VGG-16 input: magnitudes ``(B, H, W)`` in [0, 1] -> ``(B, 3, size, size)``.

    ``255 m`` (DAGAN's ``(x + 1) * 127.5``), bilinearly resized (half-pixel centres, no antialias) to
    ``size x size`` (``None``: no resize), replicated to 3 channels, minus :data:`DAGAN_VGG_MEAN` (RGB order).
    """
    if mag.ndim == 4 and mag.shape[1] == 1:
        mag = mag[:, 0]
    if mag.ndim != 3:
        raise ValueError(f"expected magnitudes (B, H, W) or (B, 1, H, W), got {tuple(mag.shape)}")
    x = 255.0 * mag.unsqueeze(1)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(DAGAN_VGG_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x.expand(-1, 3, -1, -1) - mean


class DAGANVGGFeatures(nn.Module):
    """DAGAN's VGG embedding: magnitudes ``(B, H, W)`` in [0, 1] -> VGG-16 ``pool4`` maps ``(B, 512, s, s)``.

    Input as :func:`dagan_vgg_input` (``255 m``, resized to ``size``, 3 channels, RGB mean subtracted, no std);
    the network is torchvision's VGG-16 ``features`` up to ``layer`` (default ``pool4`` = features[23], what
    DAGAN's code calls ``conv4``). The max-pools use ``ceil_mode=True``, which reproduces TensorFlow's
    ``'SAME'`` pooling on odd sizes (244 -> 122 -> 61 -> 31 -> 16, as in DAGAN; floor pooling would give 15).
    Frozen and never checkpointed, like :class:`csmri.models.vgg.VGGFeatures`; ``backbone`` says which weights
    (``vgg16-imagenet``, ``vgg16-random``, ``vgg16-file:…``). Use it as the extractor of
    :class:`csmri.losses.perceptual.PerceptualLoss` to get DAGAN's VGG term (mean squared feature difference).
    """

    def __init__(
        self,
        weights: str = "imagenet",
        layer: str = "pool4",
        size: int | None = DAGAN_VGG_SIZE,
        allow_random_fallback: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.vgg = VGGFeatures(weights, layer, allow_random_fallback=allow_random_fallback, seed=seed, arch="vgg16")
        for module in self.vgg.features:
            if isinstance(module, nn.MaxPool2d):
                module.ceil_mode = True
        self.size = size

    @property
    def backbone(self) -> str:
        return self.vgg.backbone

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        return self.vgg.features(dagan_vgg_input(mag, self.size))


def dagan_vgg(output: torch.Tensor, target: torch.Tensor, features: nn.Module) -> torch.Tensor:
    """DAGAN's VGG term: ``mean((phi(|x_hat|) - phi(|x|))^2)`` with ``phi`` a :class:`DAGANVGGFeatures`.

    ``output``/``target`` as in :func:`dagan_nmse`; the target's features carry no gradient. Equal to
    ``PerceptualLoss(features)(|output|, |target|)``, which is how the training modules compute it.
    """
    with torch.no_grad():
        target_features = features(magnitude(target))
    return F.mse_loss(features(magnitude(output)), target_features)
