"""What limits each method's SIS: its error split into blur and residual artefacts, and the segmentation nets'
Dice on ground truth degraded in controlled ways.

    python -m experiments.seitzer2018.sis_diagnosis --data DIR --segnet S1.ckpt [S2.ckpt ...] \\
        --method recnet=STAGE1.ckpt [--method dagan=DAGAN.ckpt ...] [--split val] [--out DIR]

Everything is computed on magnitude images (what PSNR, SSIM and the segmentation nets see), on the fixed evaluation
masks of ``--split`` (default ``val``: never tune on test).

**Blur and residual** (per method). With ``X = F|x|`` and ``X^ = F|x^|`` the centred 2-D spectra of the ground truth
and the reconstruction, pooled over all slices per frequency ``(|k_y|, |k_x|)`` (rows are the phase-encode axis,
columns the readout): the *gain* ``g = Re sum X^ X* / sum |X|^2`` is the part of the reconstruction that reproduces
the truth, attenuated. The error energy ``sum |X^ - X|^2`` splits exactly into ``sum |(1 - g) X|^2`` (**blur**: the
truth's content the method lost, correlated with the image) and ``sum |X^ - g X|^2`` (**residual**: everything
uncorrelated with the truth — incoherent aliasing, hallucinated texture, noise). For zero-filling, ``g`` is the
sampling density of the masks (the mean point-spread function) and the residual is the incoherent aliasing of
compressed sensing. The gain profile along the phase-encode axis pools over all ``k_x``; a method's *effective
resolution* is the first ``|k_y| / k_Nyquist`` at which that profile falls below 1/2.

**Degradations of ground truth** (scored by the same segmentation nets; SIS = mean Dice / mean Dice on ground
truth over the slices with the structure, as ``csmri eval``): each method's blur alone (``F^-1 g X``) and its
residual alone (``|x| + (|x^| - F^-1 g X)``); isotropic Gaussian low-pass filters of half-gain radius ``r0``
(in units of the Nyquist radius); a fraction of
the zero-filled error added (``|x| + a (|x_u| - |x|)``); white Gaussian noise with the MSE of each method's error.
If blur costs a method little SIS and its residual most, the instrument measures how completely aliasing was
removed (what an MSE network does best by construction); the paper's regime is the opposite (blur costs RecNet SIS,
sharper but less faithful methods score higher).

Writes ``sis_diagnosis.json`` and ``sis_diagnosis.png`` to ``--out`` and prints two Markdown tables. The split is held
in memory (two passes over the same simulated batches): meant for validation splits of a few hundred slices.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from csmri.data import MRIDataModule
from csmri.eval.methods import CheckpointMethod, ZeroFilled
from csmri.eval.runner import load_segmenter
from csmri.metrics.image import magnitude, psnr
from csmri.metrics.segmentation import foreground_dice, has_structure
from csmri.physics import fft2c, ifft2c
from csmri.reporting import save_figure

LOWPASS_RADII = (0.15, 0.25, 0.35, 0.5, 0.7)
ZERO_FILLED_FRACTIONS = (0.1, 0.25, 0.5)


def frequency_bins(height: int, width: int) -> torch.Tensor:
    """``(H, W)`` int64 bin of each centred k-space sample: ``|k_y| * (W // 2 + 1) + |k_x|``, ``k`` counted from the
    centred FFT's DC at index ``(H // 2, W // 2)`` (the spectrum of a real image is symmetric under ``k -> -k``)."""
    ky = (torch.arange(height) - height // 2).abs()
    kx = (torch.arange(width) - width // 2).abs()
    return ky[:, None] * (width // 2 + 1) + kx[None, :]


def radius(height: int, width: int) -> torch.Tensor:
    """``(H, W)`` float64 ``|k| / k_Nyquist`` of each centred k-space sample (1 at the grid's edge along an axis)."""
    ky = (torch.arange(height) - height // 2).double() / (height / 2)
    kx = (torch.arange(width) - width // 2).double() / (width / 2)
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


class SpectralSums:
    """Per frequency bin (``bins``: an ``(H, W)`` index map): ``sum |X|^2``, ``sum Re X^ X*``, ``sum |X^|^2`` over
    every slice seen (float64)."""

    def __init__(self, bins: torch.Tensor) -> None:
        self.bins = bins.flatten()
        n = int(bins.max()) + 1
        self.xx, self.hx, self.hh = (torch.zeros(n, dtype=torch.float64) for _ in range(3))

    def update(self, recon: torch.Tensor, truth: torch.Tensor) -> None:
        """``recon``, ``truth``: magnitude images ``(B, H, W)``."""
        x, h = fft2c(truth.to(torch.complex128)), fft2c(recon.to(torch.complex128))
        for total, value in ((self.xx, x.abs() ** 2), (self.hx, (h * x.conj()).real), (self.hh, h.abs() ** 2)):
            total.index_add_(0, self.bins, value.reshape(-1, self.bins.numel()).sum(0))

    def pooled(self, groups: torch.Tensor) -> SpectralSums:
        """These sums added up into coarser bins: bin ``i`` goes to bin ``groups[i]`` (int64, one entry per bin)."""
        out = SpectralSums(groups[self.bins])
        for name in ("xx", "hx", "hh"):
            getattr(out, name).index_add_(0, groups, getattr(self, name))
        return out

    def gain(self) -> torch.Tensor:
        """``Re sum X^ X* / sum |X|^2`` per bin; 0 where the truth has no energy (below 1e-12 of its peak bin)."""
        has_signal = self.xx > 1e-12 * self.xx.max()
        return torch.where(has_signal, self.hx / self.xx.clamp_min(1e-300), torch.zeros_like(self.xx))

    def split(self) -> dict[str, torch.Tensor]:
        """Per bin: error energy, its blur part ``(1 - g)^2 |X|^2`` and its residual part ``|X^|^2 - g^2 |X|^2``."""
        g = self.gain()
        error = self.hh - 2 * self.hx + self.xx
        blur = (1 - g) ** 2 * self.xx
        return {"error": error, "blur": blur, "residual": error - blur}


def apply_gain(image: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """``Re F^-1 (gain F image)`` of real images ``(B, H, W)``, ``gain`` ``(H, W)``."""
    return ifft2c(fft2c(image.to(torch.complex64)) * gain.to(torch.float32)).real


def effective_resolution(profile: torch.Tensor) -> float:
    """The first ``|k_y| / k_Nyquist`` at which the phase-encode gain profile ``(H // 2 + 1,)`` falls below 1/2."""
    below = (profile < 0.5).nonzero()
    return float(below[0, 0]) / (len(profile) - 1) if len(below) else 1.0


class Scores:
    """Mean PSNR over all slices and mean Dice over the slices with the structure, per condition."""

    def __init__(self) -> None:
        self.psnr: dict[str, list[float]] = {}
        self.dice: dict[str, list[float]] = {}

    def add(self, name: str, image: torch.Tensor, truth: torch.Tensor, labels: torch.Tensor, segnet) -> None:
        structure = has_structure(labels)
        self.psnr.setdefault(name, []).extend(psnr(image, truth).tolist())
        pred = segnet.predict_labels(image.to(torch.complex64))
        self.dice.setdefault(name, []).extend(foreground_dice(pred, labels)[structure].tolist())

    def row(self, name: str, reference: str = "ground truth") -> dict[str, float]:
        dice = sum(self.dice[name]) / len(self.dice[name])
        finite = [p for p in self.psnr[name] if math.isfinite(p)]
        mean_psnr = sum(finite) / len(finite) if finite else math.inf
        return {"psnr": mean_psnr, "dice": dice, "sis": dice / (sum(self.dice[reference]) / len(self.dice[reference]))}


def degradations(truth, recons, zero_filled, gains, mse, generator) -> dict[str, torch.Tensor]:
    """The controlled degradations of ``truth`` (magnitudes ``(B, H, W)``), by name; ``gains``: each method's
    ``(H, W)`` gain map, ``mse``: each method's mean squared error per pixel."""
    out = {}
    for name, recon in recons.items():
        blurred = apply_gain(truth, gains[name])
        out[f"{name}: its blur only"] = blurred.clamp_min(0)
        out[f"{name}: its residual only"] = (truth + recon - blurred).clamp_min(0)
        noise = torch.randn(truth.shape, generator=generator) * math.sqrt(mse[name])
        out[f"noise with {name}'s MSE"] = (truth + noise).clamp_min(0)
    r = radius(*truth.shape[-2:])
    for r0 in LOWPASS_RADII:
        out[f"low-pass, half gain at r = {r0}"] = apply_gain(truth, 0.5 ** ((r / r0) ** 2)).clamp_min(0)
    for a in ZERO_FILLED_FRACTIONS:
        out[f"+ {a} x zero-filled error"] = truth + a * (zero_filled - truth)
    return out


@torch.inference_mode()
def diagnose(datamodule: MRIDataModule, methods: dict, segnet, split: str, batch_size: int) -> dict:
    dataset = datamodule.dataset(split)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    height, width = dataset[0]["target"].shape[-2:]
    bins = frequency_bins(height, width)
    spectra = {name: SpectralSums(bins) for name in methods}
    batches = [datamodule.sampler.simulate(raw, train=False) for raw in loader]
    recon_cache = []
    for batch in batches:  # pass 1: spectra of every method's error
        truth = magnitude(batch["target"])
        recons = {name: magnitude(m.reconstruct(batch)).float() for name, m in methods.items()}
        for name, recon in recons.items():
            spectra[name].update(recon, truth)
        recon_cache.append(recons)
    gains = {name: s.gain()[bins] for name, s in spectra.items()}  # (H, W) maps
    row_of_bin = torch.arange(int(bins.max()) + 1) // (width // 2 + 1)  # the |k_y| of each (|k_y|, |k_x|) bin
    profiles = {name: s.pooled(row_of_bin) for name, s in spectra.items()}  # over k_x: the phase-encode profile
    pixels = height * width * len(dataset)
    mse = {name: float(s.split()["error"].sum()) / pixels for name, s in spectra.items()}
    scores, generator = Scores(), torch.Generator().manual_seed(0)
    for batch, recons in zip(batches, recon_cache, strict=True):  # pass 2: the segmentation nets
        truth, labels = magnitude(batch["target"]), batch["label"]
        scores.add("ground truth", truth, truth, labels, segnet)
        for name, recon in recons.items():
            scores.add(name, recon, truth, labels, segnet)
        zf = magnitude(batch["zero_filled"])
        for name, image in degradations(truth, recons, zf, gains, mse, generator).items():
            scores.add(name, image, truth, labels, segnet)
    summary = {}
    for name, s in spectra.items():
        parts = {k: float(v.sum()) for k, v in s.split().items()}
        summary[name] = {
            "blur_share": parts["blur"] / parts["error"],
            "effective_resolution": effective_resolution(profiles[name].gain()),
            "mse": mse[name],
        }
    n_rows = height // 2 + 1
    return {
        "split": split,
        "slices": len(dataset),
        "slices_with_structure": len(scores.dice["ground truth"]),
        "ky": [k / (n_rows - 1) for k in range(n_rows)],
        "gain_phase_encode": {name: p.gain().tolist() for name, p in profiles.items()},
        "signal_phase_encode": (next(iter(profiles.values())).xx / len(dataset)).tolist(),
        "error_split_phase_encode": {
            name: {k: v.tolist() for k, v in p.split().items()} for name, p in profiles.items()
        },
        "methods": summary,
        "scores": {name: scores.row(name) for name in scores.dice},
    }


def markdown(result: dict) -> str:
    lines = ["| method | PSNR (dB) | SIS | blur share of error | effective resolution (phase encode, g = 1/2) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, m in result["methods"].items():
        s = result["scores"][name]
        lines.append(f"| {name} | {s['psnr']:.2f} | {s['sis']:.3f} | {m['blur_share']:.2f} | "
                     f"{m['effective_resolution']:.2f} |")  # fmt: skip
    lines += ["", "| ground truth degraded by | PSNR (dB) | Dice | SIS |", "|---|---|---|---|"]
    for name, s in result["scores"].items():
        if name not in result["methods"]:
            lines.append(f"| {name} | {s['psnr']:.2f} | {s['dice']:.3f} | {s['sis']:.3f} |")
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (ax_gain, ax_err, ax_sis) = plt.subplots(1, 3, figsize=(15, 4.5))
    ky = result["ky"]
    for name, gain in result["gain_phase_encode"].items():
        ax_gain.plot(ky, gain, label=name)
    ax_gain.axhline(0.5, color="grey", lw=0.5, ls=":")
    ax_gain.set(xlabel="|k_y| / k_Nyquist (phase encode)", ylabel="gain g", title="What each method keeps of the truth")
    ax_gain.legend(fontsize=8)
    for name, parts in result["error_split_phase_encode"].items():
        (line,) = ax_err.semilogy(ky, [max(v, 1e-12) for v in parts["blur"]], label=f"{name}: blur")
        ax_err.semilogy(ky, [max(v, 1e-12) for v in parts["residual"]], ls="--", color=line.get_color(),
                        label=f"{name}: residual")  # fmt: skip
    ax_err.set(xlabel="|k_y| / k_Nyquist (phase encode)", ylabel="error energy per |k_y|",
               title="Blur (—) and residual (--)")  # fmt: skip
    ax_err.legend(fontsize=7)
    scores = result["scores"]
    families = {"low-pass": "low-pass", "zero-filled error": "+ ", "noise": "noise with"}
    for label, prefix in families.items():
        points = [s for n, s in scores.items() if n.startswith(prefix)]
        ax_sis.plot([p["psnr"] for p in points], [p["sis"] for p in points], "o:", ms=4, label=f"truth + {label}")
    colours = {name: f"C{i + len(families)}" for i, name in enumerate(result["methods"])}
    for name, colour in colours.items():
        for suffix, marker in ((": its blur only", "v"), (": its residual only", "^")):
            s = scores[name + suffix]
            ax_sis.plot(s["psnr"], s["sis"], marker, ms=7, mfc="none", color=colour, label=f"{name}{suffix}")
        ax_sis.plot(scores[name]["psnr"], scores[name]["sis"], "*", ms=12, color=colour, label=name)
    ax_sis.set(xlabel="PSNR (dB)", ylabel="SIS", title=f"Segmentation nets' SIS ({result['split']} split)")
    ax_sis.legend(fontsize=6, ncol=2)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared dataset root (the runs' data.root)")
    parser.add_argument("--segnet", nargs="+", required=True, help="segmentation checkpoint(s); several = an ensemble")
    parser.add_argument("--method", action="append", default=[], metavar="NAME=CKPT", help="a trained method")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--acceleration", type=float, default=8.0)
    parser.add_argument("--sample-n", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default="sis_diagnosis", help="folder for sis_diagnosis.json / .png")
    args = parser.parse_args(argv)
    methods = {"zero-filled": ZeroFilled()}
    for item in args.method:
        name, _, ckpt = item.partition("=")
        if not ckpt:
            parser.error(f"--method takes NAME=CKPT, got {item!r}")
        methods[name] = CheckpointMethod(ckpt, name)
    datamodule = MRIDataModule(args.data, batch_size=args.batch_size, acceleration=args.acceleration,
                               sample_n=args.sample_n)  # fmt: skip
    datamodule.setup("validate" if args.split == "val" else "test")
    segnet, _ = load_segmenter(args.segnet, torch.device("cpu"))
    result = diagnose(datamodule, methods, segnet, args.split, args.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sis_diagnosis.json").write_text(json.dumps(result, indent=1))
    figure(result, out / "sis_diagnosis.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
