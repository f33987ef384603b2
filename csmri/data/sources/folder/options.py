"""The options of a folder conversion (``data.source`` of ``conf/data/folder.yaml``), validated once.

Every option but ``out`` and ``progress`` determines the prepared content: :meth:`FolderOptions.content` is
stored in ``meta.json`` and its hash names the default layout folder, so a changed option prepares again.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from omegaconf import ListConfig, OmegaConf

from csmri.config import plain
from csmri.data.layout import SPLITS
from csmri.data.transforms import FIT_MODES, NORMALISATIONS
from csmri.errors import ConfigError

__all__ = ["DOMAINS", "LABEL_MODES", "NAMINGS", "PREPARE_VERSION", "FolderOptions"]

PREPARE_VERSION = 1  # bump when the conversion changes, so old prepared layouts are not reused
NAMINGS = ("suffix", "parallel", "case_dirs")
LABEL_MODES = ("auto", "required", "none")
DOMAINS = ("image", "kspace")
_NOT_CONTENT = ("out", "progress")  # where and how verbosely, not what is prepared


@dataclass(frozen=True)
class FolderOptions:
    """How a folder of scans is found, converted and split (see :mod:`csmri.data.sources.folder`).

    Values are validated and normalised on construction (lists instead of tuples or OmegaConf nodes, sizes as
    ``[H, W]``); a bad value raises :class:`csmri.errors.ConfigError` (a ``ValueError``) naming the option as the
    config key ``data.source.<name>``.
    """

    naming: str = "suffix"  # suffix | parallel | case_dirs (the package docstring)
    pattern: str | None = None  # glob of the image entries relative to root (parallel: to image_dir)
    label_suffix: str = "_label"  # suffix naming: the label of <case>.<ext> is <case><label_suffix>.<ext>
    image_dir: str = "images"  # parallel naming folders
    label_dir: str = "labels"
    image_name: str | None = None  # case_dirs naming file names
    label_name: str | None = None
    # auto (use label maps where present; all cases or none must have one) | required | none (ignore label
    # maps; the layout gets all-zero labels and has_labels: false)
    labels: str = "auto"
    key: Sequence[str] | str | None = ("image", "data")  # HDF5 dataset / NPZ array names tried in order
    label_key: Sequence[str] | str | None = ("label", "seg")
    domain: str = "image"  # image | kspace (centred k-space, inverse transformed with csmri.physics.ifft2c)
    axis: int = -1  # slicing axis of 3-D volumes (default last: z of NIfTI/NRRD); 2-D images are one slice
    slices: Sequence[int | None] | None = None  # [start, stop] Python-style slice range per volume
    transpose: bool = False  # swap the in-plane axes after slicing (put the phase-encode direction on H)
    size: int | Sequence[int] | None = None  # target [H, W] (or one int), even; None: native (same for all)
    fit: str = "crop_pad"  # crop_pad (no interpolation) | resize | resize_pad (keep aspect, then pad)
    normalise: str = "max"  # max (per slice, the paper) | percentile (clip at the per-slice percentile)
    percentile: float = 99.5
    structure: int | Sequence[int] | None = None  # label values forming the structure; None: every value > 0
    structure_name: str = "structure"  # its name in meta.json's label_names
    synthetic_phase: bool = False  # give real-valued images a smooth phase seeded by (seed, case)
    phase_scale: float = math.pi  # rough amplitude of the synthetic phase in radians
    drop_empty: bool = True  # drop all-zero slices (counted in the summary)
    split_ratios: Sequence[float] | None = None  # [train, val, test] weights; None: the paper's 24/6/7
    splits: Mapping[str, Sequence[str]] | None = None  # explicit patient lists (override the ratios)
    # re.search on the case name; group "patient" (else group 1, else the match) is the patient id used for
    # splitting (None: every case is its own patient)
    patient_regex: str | None = None
    seed: int = 0  # seed of the ratio split and of the synthetic phase (independent of the training seed)
    skip_bad: bool = False  # skip bad inputs with a warning (counted in the summary) instead of raising
    out: str | None = None  # where to write the layout (None: <root>/.csmri_prepared/<content hash>)
    progress: bool = True  # show a tqdm progress bar

    def __post_init__(self) -> None:
        normalised = {
            "naming": _choice(self.naming, NAMINGS, "naming"),
            "labels": _choice(self.labels, LABEL_MODES, "labels"),
            "domain": _choice(self.domain, DOMAINS, "domain"),
            "fit": _choice(self.fit, FIT_MODES, "fit"),
            "normalise": _choice(self.normalise, NORMALISATIONS, "normalise"),
        }
        if normalised["naming"] == "case_dirs" and not self.image_name:
            raise ConfigError("data.source.naming=case_dirs needs data.source.image_name (e.g. lgemri.nrrd)")
        normalised |= {
            "key": _keys(self.key),
            "label_key": _keys(self.label_key),
            "axis": int(self.axis),
            "slices": _slice_range(self.slices),
            "transpose": bool(self.transpose),
            "size": _size(self.size),
        }
        if not 0 < float(self.percentile) <= 100:
            raise ConfigError(f"data.source.percentile must be in (0, 100], got {self.percentile}")
        normalised |= {
            "percentile": float(self.percentile),
            "structure": _int_list(self.structure, "structure"),
            "structure_name": str(self.structure_name),
            "synthetic_phase": bool(self.synthetic_phase),
            "phase_scale": float(self.phase_scale),
            "drop_empty": bool(self.drop_empty),
            "split_ratios": _ratios(self.split_ratios),
            "splits": _split_lists(self.splits),
        }
        if self.patient_regex is not None:
            try:
                re.compile(self.patient_regex)
            except re.error as err:
                raise ConfigError(f"data.source.patient_regex {self.patient_regex!r} is not a regex ({err})") from err
        normalised |= {
            "seed": int(self.seed),
            "skip_bad": bool(self.skip_bad),
            "out": None if self.out in (None, "") else str(self.out),
            "progress": bool(self.progress),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def content(self) -> dict[str, Any]:
        """Everything that determines the prepared content (not ``out`` or ``progress``), JSON-able."""
        return {"version": PREPARE_VERSION} | {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_CONTENT
        }

    def content_hash(self) -> str:
        """12 hex digits of SHA-256 over :meth:`content` (names the default layout folder)."""
        text = json.dumps(self.content(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _choice(value: str, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise ConfigError(f"data.source.{name} must be one of {list(allowed)}, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    """OmegaConf nodes (as Hydra passes them) as plain Python; anything else as is."""
    if isinstance(value, ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return plain(value) if isinstance(value, Mapping) else value


def _int_list(value: Any, name: str) -> list[int] | None:
    value = _plain(value)
    if value is None:
        return None
    values = [value] if isinstance(value, (int, np.integer)) else list(value)
    if not values or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"data.source.{name} must be an integer or a non-empty list of integers, got {value!r}")
    return [int(v) for v in values]


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
        raise ConfigError(f"data.source.slices must be [start, stop] (ints or null), got {value!r}")
    return list(value)


def _size(value: Any) -> list[int] | None:
    value = _int_list(value, "size")
    if value is None:
        return None
    if len(value) == 1:
        value = value * 2
    if len(value) != 2 or min(value) < 2 or value[0] % 2 or value[1] % 2:
        raise ConfigError(f"data.source.size must be an even int or [H, W] of even ints (masks need it), got {value}")
    return value


def _ratios(value: Any) -> list[float] | None:
    value = _plain(value)
    if value is None:
        return None
    ratios = [float(v) for v in value]
    if len(ratios) != 3 or min(ratios) <= 0:
        raise ConfigError(f"data.source.split_ratios must be 3 positive weights [train, val, test], got {value!r}")
    return ratios


def _split_lists(value: Any) -> dict[str, list[str]] | None:
    value = _plain(value)
    if value is None:
        return None
    if set(value) != set(SPLITS):
        raise ConfigError(f"data.source.splits must have exactly the keys {list(SPLITS)}, got {sorted(value)}")
    lists = {s: [str(v) for v in (value[s] or [])] for s in SPLITS}
    seen: dict[str, str] = {}
    for split, ids in lists.items():
        for pid in ids:
            if pid in seen:
                raise ConfigError(f"patient {pid!r} is in data.source.splits lists {seen[pid]!r} and {split!r}")
            seen[pid] = split
    return lists
