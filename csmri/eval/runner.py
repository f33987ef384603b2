"""The evaluation runner behind ``csmri eval``: every method on the same test slices and masks.

A method given several checkpoints (``refinement.ckpt=[A,B,C]``: training runs from different seeds) is reported as
each slice's metrics averaged over its runs; each run's own summary follows in the footnote and ``table.json``
(``runs``), its per-slice records in ``per_slice.csv`` as ``<method>:<run>``.

Writes into the run directory: ``per_slice.csv``, ``table.md``, ``table.json``, ``figure.png``,
``recons.npz`` (magnitudes of the structure slices, for ``csmri readers export``) and ``run_info.json``;
prints a summary table. Metrics per slice on magnitudes (data range = ground-truth max, see
:mod:`csmri.metrics.image`); SIS from the frozen segmentation network (see
:mod:`csmri.metrics.segmentation`), skipped with a note when there is no network or no labels.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from csmri.config import instantiate_or_raise_cause
from csmri.data.datamodule import MRIDataModule
from csmri.data.dataset import read_meta
from csmri.device import resolve_device
from csmri.errors import ConfigError, did_you_mean
from csmri.eval.console import p_value_notes, print_summary, sis_status
from csmri.eval.figure import pick_samples, save_figure
from csmri.eval.methods import Reconstructor, TrainingRuns, load_module
from csmri.eval.recons import GROUND_TRUTH, RECONS_FILE, save_recons
from csmri.eval.tables import summarise_methods, write_per_slice_csv, write_table
from csmri.lit.segmentation import SegmenterEnsemble
from csmri.metrics.image import hfen, magnitude, nmse, psnr, ssim
from csmri.metrics.segmentation import foreground_dice, has_structure
from csmri.run_info import RunInfo, job_overrides

log = logging.getLogger(__name__)


def configured_methods(cfg: DictConfig) -> list[str]:
    """Names of the config blocks that are reconstruction methods (not ``data`` or other instantiable blocks)."""
    prefixes = ("csmri.eval.methods.", "csmri.baselines.")
    return sorted(
        k for k, v in cfg.items() if isinstance(v, DictConfig) and str(v.get("_target_", "")).startswith(prefixes)
    )


def reference_method(cfg: DictConfig) -> str:
    """``cfg.reference``, by default the last of ``cfg.methods`` (the proposed method is listed last)."""
    methods = [str(m) for m in cfg.methods]
    reference = cfg.get("reference") or (methods[-1] if methods else None)
    if reference not in methods:
        raise ConfigError(
            f"reference `{reference}` is not among methods [{', '.join(methods)}]",
            f"add it to methods, or set reference to one of them (default: the last, {methods[-1]})"
            if methods
            else "set methods=[...]",
        )
    return reference


def build_methods(cfg: DictConfig, device: torch.device) -> dict[str, Reconstructor]:
    """Instantiate every method named in ``cfg.methods`` from its config block of the same name."""
    if not cfg.methods:
        raise ConfigError("no methods to evaluate", "set methods=[zero_filled,recnet,...]")
    methods = {}
    for name in cfg.methods:
        if name not in configured_methods(cfg):
            known = configured_methods(cfg)
            raise ConfigError(
                f"unknown method `{name}`{did_you_mean(str(name), known)}; configured methods: {', '.join(known)}",
                "methods are the blocks of csmri/conf/eval.yaml made from csmri/conf/method/*.yaml",
            )
        method = instantiate_or_raise_cause(cfg[name])
        if not isinstance(method, Reconstructor):
            raise TypeError(f"method {name!r} ({type(method).__name__}) has no reconstruct(batch)")
        methods[name] = method.to(device) if hasattr(method, "to") else method
    return methods


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class _Collector:
    """Per-slice records, ground-truth Dice and the images kept for the figure and reader study."""

    def __init__(self, keep_images: bool) -> None:
        self.records: list[dict[str, Any]] = []  # per method and slice (a TrainingRuns: the mean over its runs)
        # a TrainingRuns' per-run records, by method; their method field is ``<method>:<run>``
        self.run_records: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.dice_gt: dict[str, float] = {}
        self.structure: dict[str, bool] = {}
        self.keep_images = keep_images
        self.images: dict[str, dict[str, np.ndarray]] = defaultdict(dict)  # method -> key -> magnitude
        self.pred_labels: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
        self.labels: dict[str, np.ndarray] = {}
        # an ensemble's members scored alone: structure slice -> Dice of each member (methods: mean over runs)
        self.member_dice_gt: dict[str, list[float]] = {}
        self.member_dice: dict[str, dict[str, list[float]]] = defaultdict(dict)

    def keep(self, method: str, key: str, image: torch.Tensor, pred: torch.Tensor | None) -> None:
        self.images[method][key] = image.float().cpu().numpy()
        if pred is not None:
            self.pred_labels[method][key] = pred.to(torch.uint8).cpu().numpy()


@torch.inference_mode()
def run_evaluation(
    datamodule: MRIDataModule,
    methods: Mapping[str, Reconstructor],
    segnet: Any | None,
    split: str = "test",
    batch_size: int = 8,
    device: torch.device | None = None,
    keep_images: bool = True,
) -> _Collector:
    """Reconstruct ``split`` with every method on identical simulated batches; collect per-slice results."""
    device = device or torch.device("cpu")
    dataset = datamodule.dataset(split)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=datamodule.num_workers)
    results = _Collector(keep_images)
    for raw in tqdm(loader, desc=f"evaluating {len(methods)} methods on {len(dataset)} {split} slices", unit="batch"):
        batch = datamodule.sampler.simulate(_to_device(raw, device), train=False)
        target = magnitude(batch["target"])
        labels = batch["label"]
        structure = has_structure(labels).tolist()
        gt_pred, gt_members = _segment(segnet, batch["target"], labels)
        if gt_pred is not None:
            for i, (key, d, s) in enumerate(
                zip(batch["key"], foreground_dice(gt_pred, labels).tolist(), structure, strict=True)
            ):
                if s:
                    results.dice_gt[key] = d
                    if gt_members is not None:
                        results.member_dice_gt[key] = gt_members[:, i].tolist()
        for i, key in enumerate(batch["key"]):
            results.structure[key] = structure[i]
            if keep_images and structure[i]:
                results.labels[key] = labels[i].to(torch.uint8).cpu().numpy()
                results.keep(GROUND_TRUTH, key, target[i], gt_pred[i] if gt_pred is not None else None)
        for name, method in methods.items():
            runs, run_names = (
                (method.runs, method.run_names) if isinstance(method, TrainingRuns) else ([method], [name])
            )
            scored = [_score(run.reconstruct(batch), target, labels, segnet) for run in runs]
            for i, key in enumerate(batch["key"]):
                per_run = [
                    _record(f"{name}:{run}", key, metrics, dice[i] if structure[i] else None, i)
                    for run, (metrics, dice, *_) in zip(run_names, scored, strict=True)
                ]
                if len(runs) > 1:
                    results.run_records[name] += per_run
                results.records.append({**_run_mean(per_run), "method": name})
                members = [member_dice for *_, member_dice in scored]
                if structure[i] and members[0] is not None:
                    results.member_dice[name][key] = torch.stack([m[:, i] for m in members]).mean(dim=0).tolist()
                if keep_images and structure[i]:  # a method's first run is the one shown
                    _, _, image, pred, _ = scored[0]
                    results.keep(name, key, image[i], pred[i] if pred is not None else None)
    return results


def _segment(
    segnet: Any | None, image: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The segmenter's label maps ``(B, H, W)`` of complex ``image`` and, for an ensemble, each member's own foreground
    Dice ``(K, B)`` (``None`` for a single net; both ``None`` without a segmenter)."""
    if segnet is None:
        return None, None
    if not isinstance(segnet, SegmenterEnsemble):
        return segnet.predict_labels(image), None
    pred, members = segnet.predict_labels_and_members(image)
    return pred, torch.stack([foreground_dice(m, labels) for m in members])


def member_sis(results: _Collector) -> dict[str, list[float]]:
    """SIS of each method as each member of the ensemble scores it alone: ``{method: [SIS_1, ..., SIS_K]}``, SIS_k =
    mean Dice of member k on the method's structure slices / its mean Dice on the ground truth of the same slices
    (the table's definition); ``{}`` for a single net."""
    out = {}
    for method, per_key in results.member_dice.items():
        keys = list(per_key)
        dice = np.array([per_key[k] for k in keys])  # (slices, K)
        gt = np.array([results.member_dice_gt[k] for k in keys])
        out[method] = [float(d / g) if g else math.nan for d, g in zip(dice.mean(0), gt.mean(0), strict=True)]
    return out


def _score(
    recon: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, segnet: Any | None
) -> tuple[dict[str, torch.Tensor], list[float | None], torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per-slice image metrics ``{name: (B,)}`` and foreground Dice of one batch of reconstructions, with the
    magnitude images, the predicted label maps (``None`` without a segmenter) and, for an ensemble, each member's own
    Dice ``(K, B)`` (else ``None``)."""
    image = magnitude(recon)
    metrics = {
        "psnr": psnr(image, target),
        "ssim": ssim(image, target),
        "nmse": nmse(image, target),
        "hfen": hfen(image, target),
    }
    pred, member_dice = _segment(segnet, recon, labels)
    dice = foreground_dice(pred, labels).tolist() if pred is not None else [None] * target.shape[0]
    return metrics, dice, image, pred, member_dice


def _record(method: str, key: str, metrics: Mapping[str, torch.Tensor], dice: float | None, i: int) -> dict[str, Any]:
    return {"method": method, "key": key, **{m: float(v[i]) for m, v in metrics.items()}, "dice": dice}


def _run_mean(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One slice's record of a method from its runs' records: every metric averaged over the runs (the record
    itself for a single run)."""
    if len(records) == 1:
        return dict(records[0])
    mean: dict[str, Any] = {"key": records[0]["key"]}
    for field in ("psnr", "ssim", "nmse", "hfen", "dice"):
        values = [r[field] for r in records]
        mean[field] = None if any(v is None for v in values) else float(np.mean(values))
    return mean


def _figure_samples(results: _Collector, methods: list[str], keys: list[str]) -> list[dict[str, Any]]:
    samples = []
    for key in keys:
        samples.append(
            {
                "key": key,
                "target": results.images[GROUND_TRUTH][key],
                "target_label": results.labels[key],
                "recons": {m: results.images[m][key] for m in methods},
                "pred_labels": {
                    m: results.pred_labels[m][key] for m in [*methods, GROUND_TRUTH] if key in results.pred_labels[m]
                },
                "metrics": {
                    r["method"]: {"psnr": r["psnr"], "dice": r["dice"]} for r in results.records if r["key"] == key
                },
            }
        )
    return samples


TABLE_COLUMNS = (
    "method",
    "label",
    "n_slices",
    "psnr_mean",
    "psnr_std",
    "ssim_mean",
    "ssim_std",
    "nmse_mean",
    "hfen_mean",
    "sis",
    "dice_mean",
    "dice_std",
    "p_psnr",
    "p_dice",
)


def _number(text: str) -> Any:
    """A CSV cell as a float where it is one (``nan`` included), ``None`` when empty, else the text."""
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def log_to_wandb(cfg: DictConfig, out: Path, rows: list[dict[str, Any]]) -> None:
    """Log the table and the per-slice metrics (``wandb.Table``: ``eval/table``, ``eval/per_slice``), the figure and
    per-method summaries as a W&B run of job type eval."""
    if not cfg.wandb.enabled or cfg.wandb.mode == "disabled":
        return
    import wandb

    run = wandb.init(
        project=cfg.wandb.project,
        group=cfg.wandb.group,
        job_type="eval",
        mode=cfg.wandb.mode,
        dir=str(out),
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    try:
        table = wandb.Table(columns=list(TABLE_COLUMNS), data=[[row.get(c) for c in TABLE_COLUMNS] for row in rows])
        logs: dict[str, Any] = {"eval/table": table}
        per_slice = out / "per_slice.csv"
        if per_slice.is_file():  # one row per slice and method: PSNR, SSIM, Dice, ... (sortable in the dashboard)
            import csv

            with per_slice.open() as f:
                reader = csv.reader(f)
                columns = next(reader, None)
                data = [[_number(v) for v in line] for line in reader]
            if columns:
                logs["eval/per_slice"] = wandb.Table(columns=columns, data=data)
        if (out / "figure.png").is_file():
            logs["eval/figure"] = wandb.Image(str(out / "figure.png"))
        run.log(logs)
        run.summary.update(
            {
                f"{row['method']}/{k}": row[k]
                for row in rows
                for k in ("psnr_mean", "ssim_mean", "sis")
                if isinstance(row.get(k), float)
            }
        )
    finally:
        run.finish()


def evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run ``csmri eval`` for a composed ``conf/eval.yaml``; returns the table rows.

    ``run_info.json`` ends with ``status`` ``finished``, or ``failed``/``interrupted`` with the error's one line.
    """
    out = Path(cfg.paths.output_dir)
    reference = reference_method(cfg)
    info = RunInfo(
        out, cfg.seed, task="eval", methods=list(cfg.methods), reference=reference, overrides=job_overrides()
    )
    try:
        return _evaluate(cfg, out, reference, info)
    except BaseException as err:
        info.record_failure(err)
        raise


def load_segmenter(ckpt: str | Sequence[str], device: torch.device) -> tuple[Any, str]:
    """The segmenter behind SIS on ``device`` — one net (``segnet.ckpt=PATH``) or an ensemble
    (``segnet.ckpt=[P1,P2,...]``, see :class:`csmri.lit.segmentation.SegmenterEnsemble`) — and its description."""
    paths = [ckpt] if isinstance(ckpt, str) else list(ckpt)
    nets = [load_module(p, "segnet.ckpt") for p in paths]
    if len(nets) == 1:
        return nets[0].to(device), "the segmentation net"
    return SegmenterEnsemble(nets).to(device), f"an ensemble of {len(nets)} segmentation nets"


def _evaluate(cfg: DictConfig, out: Path, reference: str, info: RunInfo) -> list[dict[str, Any]]:
    device = resolve_device(cfg.device)
    methods = build_methods(cfg, device)  # first: a bad method or checkpoint fails before any data is prepared
    datamodule: MRIDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    segnet, sis_note, segmenter = None, "computed", "the segmentation net"
    if not read_meta(datamodule.layout_dir).get("has_labels", True):
        sis_note = "skipped: the dataset has no labels"
    elif not cfg.segnet.ckpt:
        sis_note = "skipped: no segnet.ckpt (train one with `csmri train experiment=segnet`)"
    else:
        segnet, segmenter = load_segmenter(cfg.segnet.ckpt, device)
        if isinstance(segnet, SegmenterEnsemble):
            sis_note = f"computed with {segmenter}"
    if segnet is None:
        log.warning("SIS and Dice %s", sis_note)
    try:
        results = run_evaluation(datamodule, methods, segnet, cfg.split, cfg.batch_size, device, keep_images=True)
    finally:  # e.g. DLMRI's worker pool
        for method in methods.values():
            if hasattr(method, "close"):
                method.close()

    names = list(methods)
    rows = summarise_methods(
        results.records,
        results.dice_gt,
        reference=reference,
        methods_order=names,
        labels=OmegaConf.to_container(cfg.labels),
    )
    write_per_slice_csv(
        [*results.records, *(r for rs in results.run_records.values() for r in rs)], out / "per_slice.csv"
    )
    runs = {  # a method trained several times: one summary row per run (no tests; the table's row is their mean)
        name: summarise_methods(records, results.dice_gt)[1:] for name, records in results.run_records.items()
    }
    provenance = {n: m.provenance for n, m in methods.items() if getattr(m, "provenance", "")}
    write_table(
        rows,
        out / "table.md",
        out / "table.json",
        provenance=provenance,
        split=cfg.split,
        segmenter=segmenter,
        runs=runs,
        sis_members=member_sis(results),
    )
    if results.images:
        save_recons(out / RECONS_FILE, {m: results.images[m] for m in [GROUND_TRUTH, *names]}, results.labels)
        keys = [r["key"] for r in results.records if r["method"] == names[0]]
        chosen = pick_samples(keys, results.structure, per_patient=cfg.figure.per_patient)[: cfg.figure.max_rows]
        save_figure(
            out / "figure.png",
            _figure_samples(results, names, chosen),
            names,
            error_rows=cfg.figure.error_rows,
            labels=OmegaConf.to_container(cfg.labels),
        )
    sis_note = sis_status(rows, sis_note, segmenter)
    backbones = {n: m.description for n, m in methods.items() if getattr(m, "description", "")}
    info.update(
        status="finished",
        n_slices=len(results.structure),
        sis=sis_note,
        perceptual_backbones=backbones,
        checkpoints=provenance,
        data_root=str(datamodule.layout_dir),
    )
    log_to_wandb(cfg, out, rows)
    notes = ([] if sis_note.startswith("computed") else [f"SIS and Dice {sis_note}"]) + p_value_notes(rows)
    print_summary(rows, title=f"{cfg.split} split, acceleration {cfg.data.acceleration}", notes=notes)
    log.info("results in %s", out)
    return rows
