"""Bring your own data: :class:`FolderSource` converts a folder of scans into the ``csmri-slices-v1`` layout.

Naming rules (``naming``), for a raw folder ``root``:

* ``suffix`` (default): ``<case>.<ext>`` with an optional label map ``<case><label_suffix>.<ext>`` next to
  it (``label_suffix="_label"``); a sub-folder ``<case>/`` is a DICOM series or a PNG/TIFF stack.
  ``pattern`` (a glob relative to ``root``, default ``*``) selects the image entries, e.g. ACDC's
  ``**/patient*_frame[0-9][0-9].nii.gz``.
* ``parallel``: ``<image_dir>/<case>.<ext>`` and ``<label_dir>/<case>.<ext>`` (``images/``, ``labels/``).
* ``case_dirs``: ``<case>/<image_name>`` and ``<case>/<label_name>`` at any depth (LA-2018's
  ``<case>/lgemri.nrrd`` + ``<case>/laendo.nrrd``); the case is the folder's name.

Each case becomes ``<layout>/<split>/<case>.h5`` with per-slice keys ``"<case>/<slice:03d>"`` where
``slice`` is the index along the slicing axis of the raw volume (stable under ``slices`` and dropped empty
slices). Per case: read (:mod:`csmri.data.readers`), check, move the slicing ``axis`` first, keep the
``slices`` range, k-space to image (``domain="kspace"``: centred k-space, ``csmri.physics.ifft2c``), swap
the in-plane axes (``transpose``), fit to ``size`` (:func:`csmri.data.transforms.fit_to_size`), add a
synthetic phase to real data (``synthetic_phase``), normalise each slice to max magnitude 1, drop all-zero
slices (``drop_empty``). The label map becomes a binary uint8 mask of the structure of interest (values in
``structure``; default: label > 0), fitted with nearest-neighbour interpolation. In-plane, csmri
undersamples rows: the phase-encode direction must be H (dim -2) after ``transpose``.

Splits are by patient (``patient_regex`` groups cases into patients, e.g. ACDC's ED/ES frames), by ratio
(seeded; default the paper's 24/6/7 through :func:`csmri.data.phantom.split_counts`) or by explicit lists.
Bad inputs raise :class:`csmri.data.readers.BadInputError` naming the file, or are skipped with a warning
and counted in the summary when ``skip_bad=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from csmri.data.dataset import FORMAT, SPLITS
from csmri.data.readers import BadInputError, Volume, is_scan_entry, read_volume, split_extension
from csmri.data.sources import has_layout
from csmri.data.transforms import (
    FIT_MODES,
    NORMALISATIONS,
    fit_to_size,
    normalise_slices,
    with_synthetic_phase,
)

log = logging.getLogger(__name__)

__all__ = ["FolderSource", "named_source", "format_summary"]

PREPARE_VERSION = 1  # bump when the conversion changes, so old prepared layouts are not reused
PREPARED_DIR = ".csmri_prepared"
NAMINGS = ("suffix", "parallel", "case_dirs")
LABEL_MODES = ("auto", "required", "none")
DOMAINS = ("image", "kspace")


@dataclass
class Case:
    """One raw volume: ``name`` (the layout's file stem), its ``patient`` (split unit) and files."""

    name: str
    patient: str
    image: Path
    label: Path | None = None


@dataclass
class Discovery:
    """What :meth:`FolderSource.discover` found: cases, problems (skipped if ``skip_bad``), unknown files."""

    cases: list[Case]
    problems: list[BadInputError] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


@dataclass
class Slices:
    """A prepared case: ``image`` complex64 ``(S, H, W)`` normalised per slice, ``label`` uint8 0/1."""

    image: np.ndarray
    label: np.ndarray
    indices: list[int]
    native_size: tuple[int, int]
    stats: dict[str, float]
    dropped_empty: int
    label_values: set[int]


def _plain(value: Any) -> Any:
    """OmegaConf containers (as Hydra passes them) to plain Python, for validation and hashing."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return value


def _int_list(value: Any, name: str) -> list[int] | None:
    value = _plain(value)
    if value is None:
        return None
    values = [value] if isinstance(value, (int, np.integer)) else list(value)
    if not values or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an integer or a non-empty list of integers, got {value!r}")
    return [int(v) for v in values]


class FolderSource:
    """A :class:`csmri.data.sources.DatasetSource` for a folder of your own scans (see the module docstring).

    Args:
        naming: ``suffix``, ``parallel`` or ``case_dirs`` (module docstring).
        pattern: glob of the image entries, relative to ``root`` (``parallel``: to ``image_dir``).
        label_suffix: ``suffix`` naming: the label of ``<case>.<ext>`` is ``<case><label_suffix>.<ext>``.
        image_dir, label_dir: ``parallel`` naming folders.
        image_name, label_name: ``case_dirs`` naming file names.
        labels: ``auto`` (use label maps where present; all cases or none must have one), ``required``
            or ``none`` (ignore label maps; the layout gets all-zero labels and ``has_labels: false``).
        key, label_key: HDF5 dataset / NPZ array names tried in order (a file with one array needs none).
        domain: ``image``, or ``kspace`` for centred k-space (the csmri and fastMRI convention), inverse
            transformed per slice with :func:`csmri.physics.ifft2c`.
        axis: slicing axis of 3-D volumes (default last: ``z`` of NIfTI/NRRD); 2-D images are one slice.
        slices: ``[start, stop]`` Python-style range of slice indices per volume (``null`` = all).
        transpose: swap the two in-plane axes after slicing (put the phase-encode direction on H).
        size: target ``[H, W]`` (or one int), even; ``null`` keeps the native size, which must then be
            the same for every case.
        fit: how slices reach ``size``: ``crop_pad`` (no interpolation), ``resize`` or ``resize_pad``.
        normalise: ``max`` (per slice, the paper) or ``percentile`` (clip at that per-slice percentile).
        percentile: the percentile of ``normalise="percentile"``.
        structure: label values that form the structure of interest (``null``: every value > 0).
        structure_name: its name in ``meta.json``'s ``label_names``.
        synthetic_phase: give real-valued (magnitude) images a smooth phase seeded by ``(seed, case)``;
            complex data keep their own phase.
        phase_scale: rough amplitude of the synthetic phase in radians.
        drop_empty: drop all-zero slices (counted in the summary).
        split_ratios: train/val/test weights (``null``: the paper's 24/6/7); val and test get >= 1 patient.
        splits: explicit ``{train: [...], val: [...], test: [...]}`` patient lists (overrides ratios).
        patient_regex: ``re.search`` on the case name; group ``patient`` (else group 1, else the match) is the
            patient id used for splitting (``null``: every case is its own patient).
        seed: seed of the ratio split and of the synthetic phase (independent of the training seed).
        skip_bad: skip bad inputs with a warning (counted in the summary) instead of raising.
        out: where to write the layout (default ``<root>/.csmri_prepared/<hash of these options>``).
        progress: show a tqdm progress bar.
    """

    def __init__(
        self,
        naming: str = "suffix",
        pattern: str | None = None,
        label_suffix: str = "_label",
        image_dir: str = "images",
        label_dir: str = "labels",
        image_name: str | None = None,
        label_name: str | None = None,
        labels: str = "auto",
        key: str | Sequence[str] | None = ("image", "data"),
        label_key: str | Sequence[str] | None = ("label", "seg"),
        domain: str = "image",
        axis: int = -1,
        slices: Sequence[int | None] | None = None,
        transpose: bool = False,
        size: int | Sequence[int] | None = None,
        fit: str = "crop_pad",
        normalise: str = "max",
        percentile: float = 99.5,
        structure: int | Sequence[int] | None = None,
        structure_name: str = "structure",
        synthetic_phase: bool = False,
        phase_scale: float = math.pi,
        drop_empty: bool = True,
        split_ratios: Sequence[float] | None = None,
        splits: Mapping[str, Sequence[str]] | None = None,
        patient_regex: str | None = None,
        seed: int = 0,
        skip_bad: bool = False,
        out: str | None = None,
        progress: bool = True,
    ) -> None:
        self.naming = _choice(naming, NAMINGS, "naming")
        self.labels = _choice(labels, LABEL_MODES, "labels")
        self.domain = _choice(domain, DOMAINS, "domain")
        self.fit = _choice(fit, FIT_MODES, "fit")
        self.normalise = _choice(normalise, NORMALISATIONS, "normalise")
        if self.naming == "case_dirs" and not image_name:
            raise ValueError("naming=case_dirs needs image_name (e.g. lgemri.nrrd)")
        self.pattern = pattern
        self.label_suffix = label_suffix
        self.image_dir, self.label_dir = image_dir, label_dir
        self.image_name, self.label_name = image_name, label_name
        self.key = _keys(key)
        self.label_key = _keys(label_key)
        self.axis = int(axis)
        self.slices = _slice_range(slices)
        self.transpose = bool(transpose)
        self.size = _size(size)
        if not 0 < float(percentile) <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        self.percentile = float(percentile)
        self.structure = _int_list(structure, "structure")
        self.structure_name = str(structure_name)
        self.synthetic_phase = bool(synthetic_phase)
        self.phase_scale = float(phase_scale)
        self.drop_empty = bool(drop_empty)
        self.split_ratios = _ratios(split_ratios)
        self.splits = _split_lists(splits)
        self.patient_regex = patient_regex
        if patient_regex is not None:
            re.compile(patient_regex)  # raises re.error for a malformed pattern
        self.seed = int(seed)
        self.skip_bad = bool(skip_bad)
        self.out = None if out in (None, "") else str(out)
        self.progress = bool(progress)

    # -- identity -----------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """Everything that determines the prepared content (not ``out`` or ``progress``), JSON-able."""
        return {
            "version": PREPARE_VERSION,
            "naming": self.naming,
            "pattern": self.pattern,
            "label_suffix": self.label_suffix,
            "image_dir": self.image_dir,
            "label_dir": self.label_dir,
            "image_name": self.image_name,
            "label_name": self.label_name,
            "labels": self.labels,
            "key": self.key,
            "label_key": self.label_key,
            "domain": self.domain,
            "axis": self.axis,
            "slices": self.slices,
            "transpose": self.transpose,
            "size": self.size,
            "fit": self.fit,
            "normalise": self.normalise,
            "percentile": self.percentile,
            "structure": self.structure,
            "structure_name": self.structure_name,
            "synthetic_phase": self.synthetic_phase,
            "phase_scale": self.phase_scale,
            "drop_empty": self.drop_empty,
            "split_ratios": self.split_ratios,
            "splits": self.splits,
            "patient_regex": self.patient_regex,
            "seed": self.seed,
            "skip_bad": self.skip_bad,
        }

    def options_hash(self) -> str:
        """12 hex digits of SHA-256 over :meth:`options` (names the default layout folder)."""
        text = json.dumps(self.options(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    # -- DatasetSource ------------------------------------------------------------------------------
    def layout_dir(self, root: Path) -> Path:
        """``out`` if set; ``root`` itself when it already is a prepared layout; else the hashed folder."""
        root = Path(root)
        if self.out is not None:
            return Path(self.out)
        if has_layout(root):
            return root
        return root / PREPARED_DIR / self.options_hash()

    def prepare(self, root: Path) -> Path:
        """Write the layout for raw folder ``root`` unless it exists for these options and input files."""
        root = Path(root)
        out = self.layout_dir(root)
        if out == root:
            log.info("%s already holds a prepared csmri dataset; using it as is", root)
            return root
        discovery = self.discover(root)
        fingerprint = _fingerprint(root, discovery.cases)
        if self._up_to_date(root, out, fingerprint):
            log.info("using the dataset prepared earlier at %s", out)
            return out
        summary = self.write(root, out, discovery, fingerprint)
        log.info("prepared %s -> %s\n%s", root, out, format_summary(summary))
        return out

    def _up_to_date(self, root: Path, out: Path, fingerprint: str) -> bool:
        """True when ``out`` holds this source's layout of ``root``'s current files; raises rather than
        overwrite a folder that holds something else (another dataset, other options, other raw data)."""
        if not out.exists():
            return False
        if not has_layout(out):
            if any(out.iterdir()):
                raise FileExistsError(f"{out} exists and is not a csmri dataset; refusing to write into it")
            return False
        meta = json.loads((out / "meta.json").read_text())
        if meta.get("source") != "folder" or meta.get("options_hash") != self.options_hash():
            raise FileExistsError(
                f"{out} already holds a dataset prepared from other options or another source; "
                "choose another out directory or delete it"
            )
        if meta.get("raw_root") != str(root.resolve()):
            raise FileExistsError(
                f"{out} holds a dataset prepared from {meta.get('raw_root')}, not {root.resolve()}; "
                "choose another out directory or delete it"
            )
        if meta.get("inputs_fingerprint") != fingerprint:
            log.warning("the raw files changed since %s was prepared: preparing it again", out)
            return False
        return True

    # -- discovery ----------------------------------------------------------------------------------
    def discover(self, root: Path) -> Discovery:
        """Find the cases of ``root`` by the naming rule. Empty or missing folders always raise."""
        root = Path(root)
        if not root.is_dir():
            raise BadInputError(root, "no such folder")
        finder = {
            "suffix": self._find_suffix,
            "parallel": self._find_parallel,
            "case_dirs": self._find_case_dirs,
        }
        discovery = finder[self.naming](root)
        if not discovery.cases and not discovery.problems:
            raise BadInputError(
                root,
                f"no scans found (naming={self.naming}, pattern={self._pattern()!r}); {self._naming_hint()}",
            )
        discovery.cases = self._assign_patients(discovery)
        names = Counter(c.name for c in discovery.cases)
        for name, count in names.items():
            if count > 1:
                paths = [str(c.image) for c in discovery.cases if c.name == name]
                discovery.problems.append(BadInputError(paths[0], f"case name {name!r} is used {count} times: {paths}"))
        discovery.cases = [c for c in discovery.cases if names[c.name] == 1]
        self._check_label_presence(discovery)
        if not discovery.cases:
            raise BadInputError(root, "no usable case left: " + "; ".join(str(p) for p in discovery.problems))
        if discovery.problems and not self.skip_bad:
            raise discovery.problems[0]
        for problem in discovery.problems:
            log.warning("skipping: %s", problem)
        if discovery.ignored:
            log.warning(
                "ignoring %d file(s) of unknown type in %s: %s",
                len(discovery.ignored),
                root,
                ", ".join(p.name for p in discovery.ignored[:10]),
            )
        return discovery

    def _pattern(self) -> str:
        if self.pattern:
            return self.pattern
        return f"**/{self.image_name}" if self.naming == "case_dirs" else "*"

    def _naming_hint(self) -> str:
        return {
            "suffix": f"expected <case>.<ext> with labels <case>{self.label_suffix}.<ext>",
            "parallel": f"expected {self.image_dir}/<case>.<ext> and {self.label_dir}/<case>.<ext>",
            "case_dirs": f"expected <case>/{self.image_name} and <case>/{self.label_name}",
        }[self.naming]

    def _entries(self, base: Path) -> tuple[list[Path], list[Path]]:
        """Scan entries matched by the pattern under ``base``, and unknown files (default pattern only)."""
        matched = sorted(p for p in base.glob(self._pattern()) if not _hidden(p, base))
        out = Path(self.out).resolve() if self.out else None
        matched = [p for p in matched if not (p.is_dir() and (has_layout(p) or p.resolve() == out))]
        scans = [p for p in matched if is_scan_entry(p)]
        ignored = [p for p in matched if p.is_file() and not is_scan_entry(p)] if not self.pattern else []
        return scans, ignored

    def _find_suffix(self, root: Path) -> Discovery:
        entries, ignored = self._entries(root)
        images, labels = {}, {}
        for path in entries:
            stem = split_extension(path.name)[0]
            if self.label_suffix and stem.endswith(self.label_suffix):
                labels[(path.parent, stem[: -len(self.label_suffix)])] = path
            else:
                images.setdefault((path.parent, stem), []).append(path)
        if self.pattern:  # labels are not matched by an image pattern: look for them next to the images
            for parent, stem in images:
                for candidate in _siblings(parent, stem + self.label_suffix):
                    labels.setdefault((parent, stem), candidate)
        return self._pair(images, labels, ignored)

    def _find_parallel(self, root: Path) -> Discovery:
        image_root, label_root = root / self.image_dir, root / self.label_dir
        if not image_root.is_dir():
            raise BadInputError(image_root, f"no such folder (naming=parallel); {self._naming_hint()}")
        entries, ignored = self._entries(image_root)
        images: dict[tuple[Path, str], list[Path]] = {}
        for path in entries:
            images.setdefault((path.parent, split_extension(path.name)[0]), []).append(path)
        labels = {}
        if label_root.is_dir():
            for path in self._entries(label_root)[0]:
                relative = path.parent.relative_to(label_root)
                labels[(image_root / relative, split_extension(path.name)[0])] = path
        return self._pair(images, labels, ignored)

    def _find_case_dirs(self, root: Path) -> Discovery:
        images: dict[tuple[Path, str], list[Path]] = {}
        labels = {}
        for path in self._entries(root)[0]:
            images.setdefault((path.parent, path.parent.name), []).append(path)
            if self.label_name and (path.parent / self.label_name).exists():
                labels[(path.parent, path.parent.name)] = path.parent / self.label_name
        return self._pair(images, labels, [])

    def _pair(
        self,
        images: dict[tuple[Path, str], list[Path]],
        labels: dict[tuple[Path, str], Path],
        ignored: list[Path],
    ) -> Discovery:
        discovery = Discovery(cases=[], ignored=ignored)
        for (parent, name), paths in sorted(images.items()):
            if len(paths) > 1:
                discovery.problems.append(
                    BadInputError(paths[0], f"case {name!r} has several image files: {[p.name for p in paths]}")
                )
                continue
            label = labels.get((parent, name)) if self.labels != "none" else None
            discovery.cases.append(Case(name=name, patient=name, image=paths[0], label=label))
        if self.labels != "none":
            for key, path in sorted(labels.items()):
                if key not in images:
                    discovery.problems.append(
                        BadInputError(path, f"label map without an image ({self._naming_hint()})")
                    )
        return discovery

    def _assign_patients(self, discovery: Discovery) -> list[Case]:
        if self.patient_regex is None:
            return discovery.cases
        pattern = re.compile(self.patient_regex)
        kept = []
        for case in discovery.cases:
            match = pattern.search(case.name)
            if match is None:
                discovery.problems.append(
                    BadInputError(
                        case.image,
                        f"case name {case.name!r} does not match patient_regex {self.patient_regex!r}",
                    )
                )
                continue
            groups = match.groupdict()
            case.patient = groups.get("patient") or (match.group(1) if match.re.groups else match.group(0))
            kept.append(case)
        return kept

    def _check_label_presence(self, discovery: Discovery) -> None:
        if self.labels == "none":
            return
        with_label = [c for c in discovery.cases if c.label is not None]
        if self.labels == "auto" and not with_label:
            return
        missing = [c for c in discovery.cases if c.label is None]
        for case in missing:
            expected = self._expected_label(case)
            discovery.problems.append(
                BadInputError(
                    case.image,
                    f"has no label map (expected {expected}); {len(with_label)} other case(s) have one",
                )
            )
        discovery.cases = with_label

    def _expected_label(self, case: Case) -> str:
        if self.naming == "suffix":
            return f"{case.name}{self.label_suffix}.<ext> next to it"
        if self.naming == "parallel":
            return f"{self.label_dir}/{case.name}.<ext>"
        return str(case.image.parent / str(self.label_name))

    # -- splits -------------------------------------------------------------------------------------
    def check_split_lists(self, cases: Sequence[Case], root: Path) -> tuple[list[Case], list[BadInputError]]:
        """Cases whose patient is in the explicit split lists, and the problems: a listed patient without
        a scan (named by ``root``), a case whose patient is in no list (named by its image).

        A no-op without lists (ratio splits)."""
        if self.splits is None:
            return list(cases), []
        problems: list[BadInputError] = []
        patients = {c.patient for c in cases}
        listed = {p for ids in self.splits.values() for p in ids}
        for split, ids in self.splits.items():
            for pid in ids:
                if pid not in patients:
                    problems.append(BadInputError(root, f"patient {pid!r} of split list {split!r} has no scan"))
        for case in cases:
            if case.patient not in listed:
                problems.append(
                    BadInputError(
                        case.image,
                        f"patient {case.patient!r} is missing from the split lists (data.source.splits)",
                    )
                )
        return [c for c in cases if c.patient in listed], problems

    def assign_splits(self, cases: Sequence[Case], root: Path) -> dict[str, list[str]]:
        """Case names per split (sorted), whole patients per split: the explicit lists, or the patients
        (sorted) permuted by ``default_rng(seed)`` and cut by :func:`split_counts_for`."""
        patients = sorted({c.patient for c in cases})
        if self.splits is not None:
            by_patient = self.splits
        else:
            if len(patients) < 3:
                raise BadInputError(root, f"a train/val/test split needs at least 3 patients, found {len(patients)}")
            counts = split_counts_for(len(patients), self.split_ratios)
            order = np.random.default_rng(self.seed).permutation(len(patients))
            bounds = np.cumsum((0, *counts))
            by_patient = {s: [patients[i] for i in order[bounds[k] : bounds[k + 1]]] for k, s in enumerate(SPLITS)}
        split_of = {pid: s for s, ids in by_patient.items() for pid in ids}
        out: dict[str, list[str]] = {s: [] for s in SPLITS}
        for case in cases:
            out[split_of[case.patient]].append(case.name)
        return {s: sorted(names) for s, names in out.items()}

    # -- conversion ---------------------------------------------------------------------------------
    def load_case(self, case: Case, size: tuple[int, int] | None) -> Slices:
        """Read, check and convert one case (see the module docstring); raises :class:`BadInputError`."""
        volume = read_volume(case.image, self.key)
        image = _as_stack(volume, self.axis)
        _check_finite(image, case.image)
        label, values = self._load_label(case, volume)
        index = np.arange(image.shape[0])
        if self.slices is not None:
            index = index[slice(*self.slices)]
        if index.size == 0:
            raise BadInputError(case.image, f"no slice in range {self.slices} of {image.shape[0]} slices")
        image, label = image[index], label[index]
        if self.domain == "kspace":
            image = _kspace_to_image(image, case.image)
        if self.transpose:
            image, label = np.swapaxes(image, -1, -2), np.swapaxes(label, -1, -2)
        native = (int(image.shape[-2]), int(image.shape[-1]))
        target = self.size or size or native
        if self.size is None and native != target:
            raise BadInputError(
                case.image,
                f"in-plane size {native} differs from {target} of the other cases; "
                "set data.source.size to bring all slices to one size",
            )
        if target[0] % 2 or target[1] % 2:
            raise BadInputError(
                case.image,
                f"in-plane size {target} is odd; undersampling masks need an even "
                "size: set data.source.size (e.g. the next even size)",
            )
        magnitude = np.abs(image)
        stats = {
            "min": float(magnitude.min()),
            "max": float(magnitude.max()),
            "mean": float(magnitude.mean()),
            "p01": float(np.percentile(magnitude, 1)),
            "p99": float(np.percentile(magnitude, 99)),
        }
        image = fit_to_size(image, target, self.fit, order=1)
        label = fit_to_size(label, target, self.fit, order=0)
        if self.synthetic_phase and not np.iscomplexobj(image):
            image = with_synthetic_phase(image.astype(np.float32), self.seed, case.name, self.phase_scale)
        image, scale = normalise_slices(image.astype(np.complex128), self.normalise, self.percentile)
        keep = scale > 0 if self.drop_empty else np.ones(scale.shape, bool)
        if not keep.any():
            raise BadInputError(case.image, "every selected slice is all zero")
        return Slices(
            image=image[keep].astype(np.complex64),
            label=label[keep].astype(np.uint8),
            indices=[int(i) for i in index[keep]],
            native_size=native,
            stats=stats,
            dropped_empty=int((~keep).sum()),
            label_values=values,
        )

    def _load_label(self, case: Case, image: Volume) -> tuple[np.ndarray, set[int]]:
        shape = _stack_shape(image.data.shape, self.axis)
        if case.label is None:
            return np.zeros(shape, dtype=np.uint8), set()
        volume = read_volume(case.label, self.label_key)
        volume = _align_orientation(volume, image)
        if volume.data.shape != image.data.shape:
            raise BadInputError(
                case.label,
                f"label shape {volume.data.shape} differs from image shape {image.data.shape} of {case.image}",
            )
        data = volume.data
        if data.dtype.kind in "fc":
            _check_finite(data, case.label)
            if np.iscomplexobj(data) or not np.array_equal(data, np.round(data)):
                raise BadInputError(case.label, "label map has non-integer values")
        values = {int(v) for v in np.unique(data)}
        if self.structure is None:
            mask = data > 0
        else:
            mask = np.isin(data, self.structure)
            if not mask.any() and any(v != 0 for v in values):
                raise BadInputError(
                    case.label,
                    f"label values {self.structure} (data.source.structure) do not "
                    f"occur; values present: {sorted(values)}",
                )
        return _as_stack(Volume(mask.astype(np.uint8), case.label), self.axis), values

    def write(self, root: Path, out: Path, discovery: Discovery, fingerprint: str) -> dict[str, Any]:
        """Convert every case into ``out`` and return the summary.

        Cases are converted into a temporary sibling of ``out``; the split is made over the cases that could
        be converted (so a skipped case never empties a split), then the folder is renamed to ``out``.
        """
        cases, problems = self.check_split_lists(discovery.cases, root)
        if problems and not self.skip_bad:
            raise problems[0]
        skipped = [_skip_record(p) for p in (*discovery.problems, *problems)]
        for problem in problems:
            log.warning("skipping: %s", problem)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        staging = tmp / "_cases"
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            staging.mkdir(parents=True)
        except OSError as err:
            raise OSError(
                f"cannot write the prepared dataset next to {out} ({err}); "
                "set data.source.out (or --out) to a writable folder"
            ) from err
        records: dict[str, CaseRecord] = {}
        size = self.size
        try:
            for case in _progress(cases, self.progress, f"prepare {root.name}"):
                try:
                    result = self.load_case(case, size)
                except BadInputError as err:
                    if not self.skip_bad:
                        raise
                    log.warning("skipping: %s", err)
                    skipped.append(_skip_record(err))
                    continue
                size = size or (result.image.shape[-2], result.image.shape[-1])
                _write_case_file(staging / f"{case.name}.h5", case, result, root)
                records[case.name] = CaseRecord.of(result)
            done = [c for c in cases if c.name in records]
            if not done:
                raise BadInputError(root, f"no case could be prepared ({len(skipped)} skipped)")
            splits = self.assign_splits(done, root)
            for split, names in splits.items():
                (tmp / split).mkdir()
                for name in names:
                    (staging / f"{name}.h5").rename(tmp / split / f"{name}.h5")
            staging.rmdir()
            summary = summarise(records, splits, done, skipped, discovery.ignored, size, self.labels != "none")
            self._final_checks(root, splits, summary, records)
            meta = self._meta(root, splits, done, size, summary, fingerprint)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
            if out.exists():
                shutil.rmtree(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return summary

    def _final_checks(
        self,
        root: Path,
        splits: dict[str, list[str]],
        summary: Mapping[str, Any],
        records: Mapping[str, CaseRecord],
    ) -> None:
        empty = [s for s in SPLITS if not splits[s]]
        if empty:
            raise BadInputError(
                root,
                f"split(s) {empty} have no usable case left; {sum(len(v) for v in splits.values())} case(s) in all",
            )
        values = set().union(*(r.label_values for r in records.values()))
        if self.structure is not None and summary["has_labels"]:
            absent = [v for v in self.structure if v not in values]
            if absent:
                raise BadInputError(
                    root,
                    f"label value(s) {absent} of data.source.structure occur in no label "
                    f"map; values present: {sorted(values)}",
                )

    def _meta(
        self,
        root: Path,
        splits: dict[str, list[str]],
        cases: Sequence[Case],
        size: Sequence[int],
        summary: dict[str, Any],
        fingerprint: str,
    ) -> dict[str, Any]:
        has_labels = bool(summary["has_labels"])
        return {
            "format": FORMAT,
            "source": "folder",
            "size": [int(size[0]), int(size[1])],
            "splits": splits,
            "has_labels": has_labels,
            "label_names": {"1": self.structure_name} if has_labels else {},
            "patients": {c.name: c.patient for c in cases},
            "seed": self.seed,
            "raw_root": str(Path(root).resolve()),
            "options": self.options(),
            "options_hash": self.options_hash(),
            "inputs_fingerprint": fingerprint,
            "summary": summary,
        }


# -- option validation ------------------------------------------------------------------------------


def _choice(value: str, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def _keys(value: Any) -> list[str]:
    value = _plain(value)
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _slice_range(value: Any) -> list[int | None] | None:
    value = _plain(value)
    if value is None:
        return None
    if len(value) != 2 or not all(v is None or isinstance(v, int) for v in value):
        raise ValueError(f"slices must be [start, stop] (ints or null), got {value!r}")
    return list(value)


def _size(value: Any) -> list[int] | None:
    value = _int_list(value, "size")
    if value is None:
        return None
    if len(value) == 1:
        value = value * 2
    if len(value) != 2 or min(value) < 2 or value[0] % 2 or value[1] % 2:
        raise ValueError(f"size must be an even int or [H, W] of even ints (masks need it), got {value}")
    return value


def _ratios(value: Any) -> list[float] | None:
    value = _plain(value)
    if value is None:
        return None
    ratios = [float(v) for v in value]
    if len(ratios) != 3 or min(ratios) <= 0:
        raise ValueError(f"split_ratios must be 3 positive weights [train, val, test], got {value!r}")
    return ratios


def _split_lists(value: Any) -> dict[str, list[str]] | None:
    value = _plain(value)
    if value is None:
        return None
    if set(value) != set(SPLITS):
        raise ValueError(f"splits must have exactly the keys {list(SPLITS)}, got {sorted(value)}")
    lists = {s: [str(v) for v in (value[s] or [])] for s in SPLITS}
    seen: dict[str, str] = {}
    for split, ids in lists.items():
        for pid in ids:
            if pid in seen:
                raise ValueError(f"patient {pid!r} is in split lists {seen[pid]!r} and {split!r}")
            seen[pid] = split
    return lists


def split_counts_for(n_patients: int, ratios: Sequence[float] | None) -> tuple[int, int, int]:
    """Train/val/test patient counts; :func:`csmri.data.phantom.split_counts` (24/6/7) for ``ratios=None``.

    Custom ``ratios`` follow the same rule: train and val rounded half up, every split >= 1 patient (val
    and then train give way), test the rest. ``n_patients >= 3``.
    """
    from csmri.data.phantom import split_counts

    if ratios is None:
        return split_counts(n_patients)
    if n_patients < 3:
        raise ValueError(f"need at least 3 patients for a train/val/test split, got {n_patients}")
    total = sum(ratios)
    n_val = max(1, math.floor(n_patients * ratios[1] / total + 0.5))
    n_val = min(n_val, n_patients - 2)
    n_train = max(1, min(math.floor(n_patients * ratios[0] / total + 0.5), n_patients - n_val - 1))
    return n_train, n_val, n_patients - n_train - n_val


# -- per-case helpers -------------------------------------------------------------------------------


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def _siblings(parent: Path, stem: str) -> Iterable[Path]:
    for path in sorted(parent.glob(f"{glob_escape(stem)}*")):
        if split_extension(path.name)[0] == stem and is_scan_entry(path):
            yield path


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def _stack_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    if len(shape) == 2:
        return (1, *shape)
    moved = list(shape)
    n = moved.pop(axis)
    return (n, *moved)


def _as_stack(volume: Volume, axis: int) -> np.ndarray:
    """``(S, H, W)``: 2-D data is one slice; 3-D data has ``axis`` moved first."""
    data = volume.data
    if data.ndim == 2:
        return data[None]
    if data.ndim != 3:
        raise BadInputError(volume.path, f"expected a 2-D image or a 3-D volume, got shape {data.shape}")
    if not -3 <= axis < 3:
        raise ValueError(f"axis must be in [-3, 2] for 3-D volumes, got {axis}")
    return np.moveaxis(data, axis, 0)


def _check_finite(data: np.ndarray, path: Path) -> None:
    if data.dtype.kind in "fc":
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise BadInputError(path, f"{bad} NaN/Inf voxel(s) of {data.size}")


def _kspace_to_image(kspace: np.ndarray, path: Path) -> np.ndarray:
    import torch

    from csmri.physics import ifft2c

    if not np.iscomplexobj(kspace):
        raise BadInputError(path, "domain=kspace needs complex k-space data, got real values")
    return ifft2c(torch.from_numpy(np.ascontiguousarray(kspace, dtype=np.complex64))).numpy()


def _align_orientation(label: Volume, image: Volume) -> Volume:
    """Reorient a NIfTI label to its image's voxel axes when their affines' axis orders/flips differ."""
    if label.affine is None or image.affine is None or label.data.ndim != 3 or image.data.ndim != 3:
        return label
    from nibabel import orientations

    start, end = orientations.io_orientation(label.affine), orientations.io_orientation(image.affine)
    if np.array_equal(start, end):
        return label
    transform = orientations.ornt_transform(start, end)
    log.info("%s: reoriented to the voxel axes of %s", label.path, image.path)
    return Volume(orientations.apply_orientation(label.data, transform), label.path, image.affine)


def _write_case_file(path: Path, case: Case, result: Slices, root: Path) -> None:
    """One case as in :mod:`csmri.data.dataset`: image complex64, label uint8 (S, H, W), keys (S,)."""
    import h5py

    _, height, width = result.image.shape
    keys = [f"{case.name}/{i:03d}" for i in result.indices]
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=result.image, chunks=(1, height, width))
        f.create_dataset("label", data=result.label, chunks=(1, height, width))
        f.create_dataset("keys", data=keys, dtype=h5py.string_dtype("utf-8"))
        f.attrs["patient_id"] = case.name
        f.attrs["patient"] = case.patient
        f.attrs["source_image"] = str(case.image.relative_to(root))
        f.attrs["source_label"] = "" if case.label is None else str(case.label.relative_to(root))


def _fingerprint(root: Path, cases: Sequence[Case]) -> str:
    """Hash of the relative paths, sizes and modification times of every input file."""
    entries = []
    for case in cases:
        for path in (case.image, case.label):
            if path is None:
                continue
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                st = file.stat()
                entries.append((str(file.relative_to(root)), st.st_size, st.st_mtime_ns))
    return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()[:16]


def _skip_record(err: BadInputError) -> dict[str, str]:
    return {"path": str(err.path), "reason": err.reason}


def _progress(items: Sequence[Case], enabled: bool, desc: str) -> Iterable[Case]:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="case")


@dataclass
class CaseRecord:
    """What the summary needs of a converted case (no arrays)."""

    slices: int
    with_structure: int
    native_size: tuple[int, int]
    dropped_empty: int
    stats: dict[str, float]
    label_values: set[int]

    @classmethod
    def of(cls, result: Slices) -> CaseRecord:
        present = result.label.reshape(result.label.shape[0], -1).any(axis=1)
        return cls(
            result.image.shape[0],
            int(present.sum()),
            result.native_size,
            result.dropped_empty,
            result.stats,
            result.label_values,
        )


def summarise(
    records: Mapping[str, CaseRecord],
    splits: Mapping[str, list[str]],
    cases: Sequence[Case],
    skipped: list[dict[str, str]],
    ignored: list[Path],
    size: Sequence[int],
    labels_used: bool,
) -> dict[str, Any]:
    """The preparation summary stored in ``meta.json`` (and printed by :func:`format_summary`)."""
    patient_of = {c.name: c.patient for c in cases}
    values = {k: [r.stats[k] for r in records.values()] for k in ("min", "max", "mean", "p01", "p99")}
    native = Counter("x".join(map(str, r.native_size)) for r in records.values())
    return {
        "cases": {s: len(splits[s]) for s in SPLITS},
        "patients": {s: len({patient_of[n] for n in splits[s]}) for s in SPLITS},
        "slices": {s: sum(records[n].slices for n in splits[s]) for s in SPLITS},
        "slices_with_structure": {s: sum(records[n].with_structure for n in splits[s]) for s in SPLITS},
        "has_labels": labels_used and any(r.label_values for r in records.values()),
        "size": [int(size[0]), int(size[1])],
        "native_sizes": dict(native),
        "dropped_empty_slices": sum(r.dropped_empty for r in records.values()),
        "raw_intensity": {
            "min": min(values["min"]),
            "max": max(values["max"]),
            "mean": float(np.mean(values["mean"])),
            "median_p01": float(np.median(values["p01"])),
            "median_p99": float(np.median(values["p99"])),
        },
        "skipped": skipped,
        "ignored_files": [str(p) for p in ignored],
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few human-readable lines of a preparation summary."""
    splits = SPLITS
    lines = [
        "split     cases  patients  slices  with structure",
        *(
            f"{s:<8} {summary['cases'][s]:>6} {summary['patients'][s]:>9} {summary['slices'][s]:>7} "
            f"{summary['slices_with_structure'][s]:>15}"
            for s in splits
        ),
        f"slice size {summary['size'][0]}x{summary['size'][1]} (native: "
        + ", ".join(f"{k}: {v}" for k, v in summary["native_sizes"].items())
        + ")",
        "labels: " + ("yes" if summary["has_labels"] else "none (SIS cannot be computed on this dataset)"),
        "raw intensity: min {min:.4g}, max {max:.4g}, mean {mean:.4g}, median 1st/99th percentile "
        "{median_p01:.4g}/{median_p99:.4g}".format(**summary["raw_intensity"]),
        f"dropped all-zero slices: {summary['dropped_empty_slices']}",
        f"skipped inputs: {len(summary['skipped'])}",
        *(f"  {s['path']}: {s['reason']}" for s in summary["skipped"]),
    ]
    if summary["ignored_files"]:
        lines.append(f"ignored files of unknown type: {len(summary['ignored_files'])}")
    return "\n".join(lines)


def named_source(name: str, **overrides: Any) -> FolderSource:
    """The :class:`FolderSource` of ``conf/data/<name>.yaml`` (``folder``, ``la2018``, ``acdc``,
    ``fastmri_singlecoil``) with keyword ``overrides``: the config files are the one source of the presets."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from csmri.config import config_dir

    def load(stem: str) -> Any:
        path = config_dir() / "data" / f"{stem}.yaml"
        if not path.is_file():
            raise ValueError(f"no data config {path}")
        config = OmegaConf.load(path)
        bases = [load(str(d)) for d in config.pop("defaults", []) if str(d) != "_self_"]
        return OmegaConf.merge(*bases, config)

    return instantiate(OmegaConf.merge(load(name).source, overrides))
