"""Writing the phantom as a prepared dataset, and :class:`PhantomSource`, which does so on first use."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from csmri.data import layout
from csmri.data.sources.phantom.patient import (
    check_volume_args,
    generate_patient,
    phantom_patient_id,
    plain_resolution,
)
from csmri.errors import DataError, DatasetFolderError

log = logging.getLogger(__name__)

WRITTEN_BY_SOURCE = "data.source"  # meta.json `written_by` of a phantom generated on first use


def _check_target(root: Path) -> None:
    """Refuse to write the phantom into a folder that holds anything but an earlier phantom dataset."""
    if not root.exists():
        return
    if not root.is_dir():
        raise DatasetFolderError(f"{root} is a file, not a folder: refusing to write the phantom there")
    if layout.has_layout(root):
        try:
            source = json.loads((root / layout.META_FILE).read_text()).get("source")
        except (OSError, ValueError):
            source = None
        if source == "phantom":
            return
    entries = [p.name for p in root.iterdir() if not p.name.startswith(".")]
    if entries:
        shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        raise DatasetFolderError(
            f"{root} is not empty and holds no phantom dataset ({shown}): refusing to write the phantom into it",
            f"for your own scans in that folder use data=folder data.root={root}; for the phantom choose an "
            "empty or new folder (data.root=DIR or `csmri data phantom --out DIR`)",
        )


def write_phantom_dataset(
    out: str | Path,
    n_patients: int = 37,
    size: int = 128,
    n_slices: int = 20,
    seed: int = 0,
    noise_std: float = 0.0,
    resolution: float | list[float] = 1.0,
    progress: bool = True,
    written_by: str = "csmri data phantom",
    atrium: str = "walled",
    tracing: float = 0.0,
) -> Path:
    """Write ``n_patients`` phantom patients to ``out`` as a prepared dataset
    (:mod:`csmri.data.layout`); return the root.

    Patient ``i`` is ``generate_patient(i, size, n_slices, seed, noise_std, resolution, atrium, tracing)``. The
    dataset is written into a temporary sibling folder and renamed to ``out`` when complete, so an interrupted run
    leaves no dataset (and an earlier phantom in ``out`` intact). ``out`` must be new, empty or hold an earlier phantom
    (:class:`csmri.errors.DatasetFolderError` otherwise: it never writes into a folder of other files).
    ``meta.json`` records the settings (``generator``) and ``written_by``.
    Raises ``ValueError`` for an odd size, a size outside [32, 1024], ``n_patients < 3`` or ``n_slices < 1``.
    """
    check_volume_args(0, size, n_slices, seed, noise_std, resolution, atrium, tracing)
    indices = layout.split_indices(n_patients, seed)  # raises for n_patients < 3
    splits = {name: [phantom_patient_id(i) for i in ids] for name, ids in indices.items()}
    root = Path(out)
    _check_target(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.tmp-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    for name in splits:
        (staging / name).mkdir(parents=True)
    jobs: Iterable[tuple[str, int]] = [(name, index) for name, ids in indices.items() for index in ids]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc=f"phantom {size}x{size}", unit="patient")
    for name, index in jobs:
        volume = generate_patient(index, size, n_slices, seed, noise_std, resolution, atrium, tracing)
        layout.write_case_file(
            staging / name / f"{volume.patient_id}.h5", volume.patient_id, volume.image, volume.label
        )
    meta = layout.build_meta(
        "phantom",
        (size, size),
        n_slices_per_patient=int(n_slices),
        seed=int(seed),
        noise_std=float(noise_std),
        splits=splits,
        label_names={"1": "left_atrium"},
        generator=phantom_settings(n_patients, size, n_slices, seed, noise_std, resolution, atrium, tracing),
        written_by=written_by,
    )
    layout.write_meta(staging, meta)
    _swap_into_place(staging, root)
    return root


def phantom_settings(
    patients: int,
    size: int,
    slices: int,
    seed: int,
    noise_std: float,
    resolution: float | list[float] = 1.0,
    atrium: str = "walled",
    tracing: float = 0.0,
) -> dict[str, Any]:
    """The settings that determine a phantom dataset's content (recorded in meta.json as ``generator``;
    ``resolution`` only when not 1, ``atrium`` only when not ``"walled"`` and ``tracing`` only when not 0, so
    phantoms written before they existed keep matching)."""
    settings: dict[str, Any] = {
        "patients": int(patients),
        "size": int(size),
        "slices": int(slices),
        "seed": int(seed),
        "noise_std": float(noise_std),
    }
    if plain_resolution(resolution) != 1.0:
        settings["resolution"] = plain_resolution(resolution)
    if atrium != "walled":
        settings["atrium"] = atrium
    if float(tracing) != 0.0:
        settings["tracing"] = float(tracing)
    return settings


def _swap_into_place(staging: Path, root: Path) -> None:
    """Rename the finished ``staging`` folder to ``root``; an earlier phantom there is replaced (moved aside
    first, deleted last), so ``root`` always holds either the old or the new complete dataset."""
    old = None
    if root.exists() and any(root.iterdir()):
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        root.rename(old)
    elif root.exists():
        root.rmdir()
    staging.rename(root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class PhantomSource:
    """Generates the synthetic LGE-cardiac phantom into ``root`` (a :class:`csmri.data.sources.DatasetSource`)."""

    def __init__(
        self,
        patients: int = 37,
        size: int = 128,
        slices: int = 20,
        seed: int = 0,
        noise_std: float = 0.0,
        resolution: float | list[float] = 1.0,
        atrium: str = "walled",
        tracing: float = 0.0,
    ) -> None:
        self.patients, self.size, self.slices, self.seed = patients, size, slices, seed
        self.noise_std, self.resolution, self.atrium = noise_std, plain_resolution(resolution), atrium
        self.tracing = float(tracing)

    def layout_dir(self, root: Path) -> Path:
        return Path(root)

    def settings(self) -> dict[str, Any]:
        return phantom_settings(
            self.patients,
            self.size,
            self.slices,
            self.seed,
            self.noise_std,
            self.resolution,
            self.atrium,
            self.tracing,
        )

    def prepare(self, root: Path) -> Path:
        """Use the dataset at ``root``, or generate the phantom into a new or empty ``root``.

        A phantom this source generated earlier must have the same settings (else an error says how to
        regenerate); a dataset written explicitly (``csmri data phantom``, ``csmri data prepare``) is used as is.
        """
        root = Path(root)
        if layout.has_layout(root):
            meta = layout.read_meta(root)
            recorded, wanted = meta.get("generator"), self.settings()
            if meta.get("written_by") == WRITTEN_BY_SOURCE and recorded != wanted:
                was = recorded or {}
                changed = sorted(k for k in {*was, *wanted} if was.get(k) != wanted.get(k))
                raise DataError(
                    f"the phantom at {root} was generated with other settings "
                    + ", ".join(f"{k}={was.get(k)}" for k in changed)
                    + " than data.source now asks for ("
                    + ", ".join(f"{k}={wanted.get(k)}" for k in changed)
                    + ")",
                    f"delete {root} to regenerate it with the new settings, or choose another data.root",
                )
            if meta.get("source") == "phantom" and recorded not in (None, wanted):
                log.warning("using the phantom at %s as written (%s); data.source settings are ignored", root, recorded)
            return root
        log.info("no dataset at %s: generating the phantom (%d patients, %d^2)", root, self.patients, self.size)
        return write_phantom_dataset(
            root,
            n_patients=self.patients,
            size=self.size,
            n_slices=self.slices,
            seed=self.seed,
            noise_std=self.noise_std,
            resolution=self.resolution,
            written_by=WRITTEN_BY_SOURCE,
            atrium=self.atrium,
            tracing=self.tracing,
        )
