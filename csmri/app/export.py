"""`csmri export`: a trained RecNet (stage 1), stage-2 model (R + gated V) or DAGAN generator as ONNX or TorchScript,
or as an inference-only csmri checkpoint (``--format checkpoint``: the training checkpoint without optimiser,
discriminator, VGG and replay state — what `csmri eval`, `csmri reconstruct` and `csmri.load` need; the quick
profile's stage-2 checkpoint shrinks from 345 MB to 1.6 MB; see :func:`csmri.lit.checkpoints.inference_checkpoint`).

The exported graph has no complex tensors (ONNX has none): the centred orthonormal FFTs and data consistency are
matrix products over real tensors for one fixed image size (:mod:`csmri.physics.real_fft`). It runs in fp32.

Inputs (all float32, one fixed ``H x W``, any batch size ``B``):

* ``kspace_real``, ``kspace_imag`` ``(B, H, W)``: centred single-coil k-space (csmri's convention,
  :func:`csmri.physics.fft2c`), rows = phase-encode lines;
* ``mask`` ``(B, H, W)``: 0/1 sampling mask (unsampled k-space is zeroed inside the model).

Output ``reconstruction`` ``(B, 2, H, W)``: channel 0 real, channel 1 imaginary part of the complex image, in the
input's units — each image is scaled to zero-filled maximum magnitude 1 for the network and back, as
``csmri.load(...).reconstruct`` does. Export checks the file numerically against the PyTorch (complex) path on
a random input and refuses to write one that differs by more than ``--tolerance`` (default 1e-4, max abs).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from csmri.errors import InferenceError, OutputError
from csmri.inference import TrainedReconstructor
from csmri.lit.checkpoints import inference_checkpoint, read_checkpoint
from csmri.physics.real_fft import RealDataConsistency, RealFFT2c

INPUT_NAMES = ["kspace_real", "kspace_imag", "mask"]
OUTPUT_NAMES = ["reconstruction"]
FORMATS = ("onnx", "torchscript", "checkpoint")


class ExportedReconstructor(nn.Module):
    """``(kspace_real, kspace_imag, mask) -> reconstruction (B, 2, H, W)`` over real tensors (see the module doc)."""

    def __init__(self, module: nn.Module, height: int, width: int, path: str = "checkpoint") -> None:
        super().__init__()
        from csmri.models.dagan import DAGANGenerator
        from csmri.models.recnet import RecNet

        self.fft = RealFFT2c(height, width)
        self.recon: nn.Module | None = None
        self.refinement: nn.Module | None = None
        self.generator: nn.Module | None = None
        tag = getattr(module, "csmri_module", "")
        if tag == "reconstruction":
            self.recon = module.net
        elif tag == "refinement":
            self.recon, self.refinement = module.recon, module.refinement
        elif tag == "adversarial" and isinstance(module.generator, DAGANGenerator):
            self.generator = module.generator
        else:
            name = type(getattr(module, "generator", module)).__name__
            raise InferenceError(
                f"{path}: export supports RecNet (stage 1), the stage-2 model and DAGAN, not a {name}",
                "use `csmri reconstruct` or csmri.load() for this checkpoint",
            )
        if self.recon is not None and not isinstance(self.recon, RecNet):
            raise InferenceError(
                f"{path}: the reconstruction network is a {type(self.recon).__name__}, not a RecNet",
                "export supports RecNet-based checkpoints",
            )
        self.dc = RealDataConsistency(self.fft, self.recon.dc.nu if self.recon is not None else None)

    def _recnet(self, x: torch.Tensor, kr: torch.Tensor, ki: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.recon.blocks:
            out = block(x)
            x = x + out if self.recon.residual else out
            x = self.dc(x, kr, ki, mask)
        return x

    def forward(self, kspace_real: torch.Tensor, kspace_imag: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kr, ki = kspace_real * mask, kspace_imag * mask
        zr, zi = self.fft.inverse(kr, ki)
        peak = torch.sqrt(zr * zr + zi * zi).amax(dim=(-2, -1), keepdim=True)
        scale = torch.where(peak > 1e-30, peak, torch.ones_like(peak))
        kr, ki = kr / scale, ki / scale
        x = torch.stack((zr, zi), dim=1) / scale.unsqueeze(1)
        if self.generator is not None:
            out = self.generator(x)
        else:
            out = self._recnet(x, kr, ki, mask)
            if self.refinement is not None:
                out = self.refinement(out)[0]
        return out * scale.unsqueeze(1)


def reference(model: TrainedReconstructor, kr: torch.Tensor, ki: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The PyTorch (complex FFT) reconstruction of the same inputs, ``(B, 2, H, W)``."""
    recon = model.reconstruct(torch.complex(kr, ki), mask)
    return torch.stack((recon.real, recon.imag), dim=1)


def example_inputs(
    height: int, width: int, acquisition: dict, batch: int = 2, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Random centred k-space of random complex images and masks of the checkpoint's acquisition."""
    from csmri.physics import fft2c
    from csmri.physics.sampling import MaskSampler

    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, height, width, dtype=torch.complex64, generator=g)
    settings = {k: acquisition[k] for k in ("acceleration", "mask", "sample_n", "center_fraction") if k in acquisition}
    try:
        sampler = MaskSampler(seed=seed, **settings)
        mask = torch.stack([sampler.evaluation_mask(str(i), (height, width))[0] for i in range(batch)])
    except ValueError:
        mask = (torch.rand(batch, height, 1, generator=g) > 0.5).float().expand(batch, height, width).contiguous()
    kspace = fft2c(image) * mask
    return kspace.real.contiguous(), kspace.imag.contiguous(), mask


def _tmp(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial-{os.getpid()}{out.suffix}")


def export(
    ckpt: str | Path, fmt: str, out: str | Path, size: tuple[int, int] | None = None, tolerance: float = 1e-4
) -> float:
    """Write the export of ``ckpt`` to ``out`` and return the max abs difference to PyTorch on a random input."""
    if fmt not in FORMATS:
        raise InferenceError(f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise InferenceError(f"{out}: is a folder", f"name an output file, e.g. --out {out / 'model.onnx'}")
    model = TrainedReconstructor(ckpt, device="cpu", precision="32")
    module = model.module.float().eval()
    if size is None:
        size = model.fixed_size or _training_size(model)
    height, width = int(size[0]), int(size[1])
    model.check_size((height, width), f"--size {height} {width}")
    wrapper = ExportedReconstructor(module, height, width, str(ckpt)).eval()
    inputs = example_inputs(height, width, model.acquisition)
    expected = reference(model, *inputs)
    tmp = _tmp(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad(), warnings.catch_warnings():
            # shape checks traced as constants (the size is fixed by design); torch.jit's deprecation notice
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)
            if fmt == "onnx":
                torch.onnx.export(
                    wrapper,
                    inputs,
                    str(tmp),
                    input_names=INPUT_NAMES,
                    output_names=OUTPUT_NAMES,
                    dynamic_axes={name: {0: "batch"} for name in INPUT_NAMES + OUTPUT_NAMES},
                    opset_version=17,
                    dynamo=False,
                )
                actual = run_onnx(tmp, *example_inputs(height, width, model.acquisition, batch=3, seed=1))
                expected = reference(model, *example_inputs(height, width, model.acquisition, batch=3, seed=1))
            elif fmt == "checkpoint":
                torch.save(inference_checkpoint(read_checkpoint(ckpt)), tmp)
                actual = reference(TrainedReconstructor(tmp, device="cpu", precision="32"), *inputs)
            else:
                traced = torch.jit.trace(wrapper, inputs, check_trace=False)
                torch.jit.save(traced, str(tmp))
                actual = torch.jit.load(str(tmp))(*inputs)
        error = float((actual - expected).abs().max())
        if not error <= tolerance:
            raise InferenceError(
                f"{out}: the {fmt} export differs from PyTorch by {error:.2e} (max abs) > {tolerance:g}",
                "report this as a bug; nothing was written",
            )
        os.replace(tmp, out)
    except OSError as err:
        raise OutputError(f"{out}: cannot write ({err})", "check the folder is writable and has space") from err
    finally:
        tmp.unlink(missing_ok=True)
    return error


def _training_size(model: TrainedReconstructor) -> tuple[int, int]:
    size = model.acquisition.get("size")
    if size:
        return int(size[0]), int(size[1])
    raise InferenceError(f"{model.path}: the image size is not recorded in the checkpoint", "pass --size H W")


def run_onnx(
    path: str | Path, kspace_real: torch.Tensor, kspace_imag: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Run an exported ONNX file with onnxruntime (CPU) and return ``reconstruction`` as a tensor."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise InferenceError("checking an ONNX export needs onnxruntime", "pip install 'csmri[export]'") from err
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(INPUT_NAMES, (kspace_real, kspace_imag, mask), strict=True)}
    return torch.from_numpy(session.run(OUTPUT_NAMES, feeds)[0])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csmri export",
        description=(
            "Export a RecNet (stage 1), stage-2 or DAGAN checkpoint as ONNX or TorchScript for one fixed image size. "
            "Inputs kspace_real, kspace_imag, mask (B, H, W) float32 (centred k-space); output reconstruction "
            "(B, 2, H, W) = [real, imag]. FFTs are matrix products over real tensors; fp32; checked against "
            "PyTorch at export. --format checkpoint writes an inference-only .ckpt instead (no optimiser or "
            "discriminator state; for csmri eval / reconstruct / csmri.load)."
        ),
    )
    parser.add_argument("--ckpt", required=True, help="a csmri checkpoint (stage 1, stage 2 or DAGAN)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx, torchscript or checkpoint")
    parser.add_argument("--out", required=True, help="output file (.onnx / .pt / .ckpt)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="image size (default: the training size)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed (default 1e-4)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``csmri export``; user mistakes raise :class:`InferenceError` (and the other
    :class:`csmri.errors.CsmriError`), which the ``csmri`` command prints as one line plus a hint (status 2)."""
    args = build_parser().parse_args(argv)
    error = export(args.ckpt, args.format, args.out, tuple(args.size) if args.size else None, args.tolerance)
    print(f"wrote {args.out} ({args.format}); max abs difference to PyTorch on a random input: {error:.2e}")
    return 0


if __name__ == "__main__":
    from csmri.app.cli import main as csmri_main

    sys.exit(csmri_main(["export", *sys.argv[1:]]))
