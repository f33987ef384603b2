"""Writing the phantom as a prepared dataset, and :class:`PhantomSource`, which does so on first use."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from csmri.data import layout
from csmri.data.sources.phantom.patient import check_volume_args, generate_patient, phantom_patient_id

log = logging.getLogger(__name__)


def _prepare_split_dirs(root: Path, splits: dict[str, list[str]]) -> None:
    """Create the split folders; drop an old ``meta.json`` and phantom files not in the new assignment."""
    (root / layout.META_FILE).unlink(missing_ok=True)
    for name, ids in splits.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("phantom_*.h5"):
            if stale.stem not in ids:
                stale.unlink()


def write_phantom_dataset(
    out: str | Path,
    n_patients: int = 37,
    size: int = 128,
    n_slices: int = 20,
    seed: int = 0,
    noise_std: float = 0.0,
    progress: bool = True,
) -> Path:
    """Write ``n_patients`` phantom patients to ``out`` as a prepared dataset
    (:mod:`csmri.data.layout`); return the root.

    Patient ``i`` is ``generate_patient(i, size, n_slices, seed, noise_std)``. ``meta.json`` is written
    last (an old one is removed first), so an interrupted run leaves no readable dataset. Patient files of
    an earlier phantom in ``out`` are overwritten or, if no longer assigned to that split, removed.
    Raises ``ValueError`` for an odd size, a size outside [32, 1024], ``n_patients < 3`` or ``n_slices < 1``.
    """
    check_volume_args(0, size, n_slices, seed, noise_std)
    indices = layout.split_indices(n_patients, seed)  # raises for n_patients < 3
    splits = {name: [phantom_patient_id(i) for i in ids] for name, ids in indices.items()}
    root = Path(out)
    _prepare_split_dirs(root, splits)
    jobs: Iterable[tuple[str, int]] = [(name, index) for name, ids in indices.items() for index in ids]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc=f"phantom {size}x{size}", unit="patient")
    for name, index in jobs:
        volume = generate_patient(index, size, n_slices, seed, noise_std)
        layout.write_case_file(root / name / f"{volume.patient_id}.h5", volume.patient_id, volume.image, volume.label)
    meta = layout.build_meta(
        "phantom",
        (size, size),
        n_slices_per_patient=int(n_slices),
        seed=int(seed),
        noise_std=float(noise_std),
        splits=splits,
        label_names={"1": "left_atrium"},
    )
    layout.write_meta(root, meta)
    return root


class PhantomSource:
    """Generates the synthetic LGE-cardiac phantom into ``root`` (a :class:`csmri.data.sources.DatasetSource`)."""

    def __init__(
        self, patients: int = 37, size: int = 128, slices: int = 20, seed: int = 0, noise_std: float = 0.0
    ) -> None:
        self.patients, self.size, self.slices, self.seed, self.noise_std = patients, size, slices, seed, noise_std

    def layout_dir(self, root: Path) -> Path:
        return Path(root)

    def prepare(self, root: Path) -> Path:
        root = Path(root)
        if layout.has_layout(root):
            return root
        log.info("no dataset at %s: generating the phantom (%d patients, %d^2)", root, self.patients, self.size)
        return write_phantom_dataset(
            root,
            n_patients=self.patients,
            size=self.size,
            n_slices=self.slices,
            seed=self.seed,
            noise_std=self.noise_std,
        )
