"""The content identities of a pipeline stage's inputs, recorded beside its run and compared on the next run.

A stage of a declared pipeline (:mod:`csmri.pipeline`) consumes files (an upstream stage's checkpoint, perceptual
weights) and a dataset.
Each input has an identity (a lowercase hex SHA-256, or ``None`` for an absent file):

- a file: SHA-256 of its bytes, streamed in 1 MiB blocks and cached within the process by (path, size, mtime in
  ns), so touching a file costs one re-hash and never counts as a change;
- a dataset (:func:`data_fingerprint`): SHA-256 over the bytes of each prepared layout's ``meta.json`` (which
  records the source and its settings, e.g. the phantom's generator settings, and the patient splits) and the
  relative path and size of every file in its split folders (a rewritten or missing case). The HDF5 contents are
  not read: cheap at any dataset size.

The record is ``<run_dir>/inputs.json`` (:data:`INPUTS_FILE`)::

    {"inputs": {"<name>": {"path": "<file or data root>", "sha256": "<hex>" | null}, ...}, "key": "<run key>",
     "recorded": "<time>"}

A run's key (:func:`run_key`) names it by content: 12 hex digits of SHA-256 over its settings and its inputs'
identities; it changes when a setting or an input changes and not otherwise.

It sits beside ``run_info.json``, which ``csmri train`` rewrites when a run starts or resumes; the pipeline writes
``inputs.json`` when it launches a training run and again when the run has finished (the dataset, made on first
use, is recorded once it exists).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INPUTS_FILE = "inputs.json"
_BLOCK = 1 << 20
_file_hashes: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class Input:
    """One input of a stage: ``name`` (as reasons print it, e.g. ``stage1 checkpoint``), ``path`` (a file, or a
    data root for ``kind="data"``) and ``producer`` (the pipeline stage that writes it; ``None`` for an external
    file such as the ImageNet VGG weights or the dataset)."""

    name: str
    path: Path
    kind: str = "file"  # file | data
    producer: str | None = None


def file_sha256(path: str | Path) -> str | None:
    """SHA-256 (hex) of the bytes of ``path``; ``None`` if it is not a file. Cached by (path, size, mtime_ns)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _file_hashes:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(_BLOCK):
                digest.update(block)
        _file_hashes[key] = digest.hexdigest()
    return _file_hashes[key]


def dataset_layouts(root: str | Path) -> list[Path]:
    """The prepared layouts of data root ``root``: ``root`` itself when it holds ``meta.json`` (the phantom,
    ``data=h5``), else the layouts a raw-folder source prepared under it (``<root>/.csmri_prepared/<hash>/``)."""
    from csmri.data.layout import has_layout

    root = Path(root)
    if has_layout(root):
        return [root]
    from csmri.data.sources.folder.source import PREPARED_DIR

    return sorted(meta.parent for meta in root.glob(f"{PREPARED_DIR}/*/meta.json"))


def data_fingerprint(root: str | Path) -> str | None:
    """SHA-256 (hex) identifying the dataset at ``root`` (see the module docstring); ``None`` if it has none yet."""
    from csmri.data.layout import META_FILE, SPLITS

    layouts = dataset_layouts(root)
    if not layouts:
        return None
    digest = hashlib.sha256()
    for layout in layouts:
        digest.update(b"layout\0" + (layout / META_FILE).read_bytes() + b"\0")
        for split in SPLITS:
            folder = layout / split
            files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
            for p in files:
                digest.update(f"{p.relative_to(layout).as_posix()}\0{p.stat().st_size}\0".encode())
    return digest.hexdigest()


def identities(inputs: list[Input]) -> dict[str, dict[str, Any]]:
    """``{name: {"path", "sha256"}}`` of ``inputs`` now; a dataset that does not exist yet is left out (it is made
    on first use, from settings the run's recorded overrides already pin)."""
    out: dict[str, dict[str, Any]] = {}
    for item in inputs:
        sha = data_fingerprint(item.path) if item.kind == "data" else file_sha256(item.path)
        if item.kind == "data" and sha is None:
            continue
        out[item.name] = {"path": str(item.path), "sha256": sha}
    return out


def run_key(settings: Sequence[str], inputs: Mapping[str, Mapping[str, Any]]) -> str:
    """The run's name by content: 12 hex digits of SHA-256 over the effective ``settings`` (a command's ``key=value``
    overrides, the last one of a key winning as in Hydra, so their order does not count otherwise) and the ``sha256``
    of each input of ``inputs`` (from :func:`identities`; an input's path does not count, its content does)."""
    effective: dict[str, str] = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        effective[key.lstrip("+")] = value
    digest = hashlib.sha256()
    for key in sorted(effective):
        digest.update(f"setting\0{key}\0{effective[key]}\0".encode())
    for name in sorted(inputs):
        digest.update(f"input\0{name}\0{inputs[name].get('sha256')}\0".encode())
    return digest.hexdigest()[:12]


def write_record(run_dir: str | Path, inputs: list[Input], settings: Sequence[str] = ()) -> Path:
    """Write ``<run_dir>/inputs.json`` with the identities of ``inputs`` now and the run's key (:func:`run_key` of
    ``settings`` and those identities); returns its path."""
    path = Path(run_dir) / INPUTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    found = identities(inputs)
    record = {"inputs": found, "key": run_key(settings, found), "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    return path


def read_record(run_dir: str | Path) -> dict[str, dict[str, Any]] | None:
    """The recorded ``{name: {"path", "sha256"}}`` of ``<run_dir>/inputs.json``; ``None`` when the run has none (a
    run trained before csmri recorded its inputs, or outside ``csmri reproduce``)."""
    path = Path(run_dir) / INPUTS_FILE
    if not path.is_file():
        return None
    return dict(json.loads(path.read_text()).get("inputs", {}))


def _short(sha: str | None) -> str:
    return "absent" if sha is None else f"{sha[:8]}…"


def changes(recorded: Mapping[str, Mapping[str, Any]], now: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One phrase per input whose identity differs between ``recorded`` and ``now`` (both from :func:`identities`),
    e.g. ``stage1 checkpoint changed (sha256 ab12cd34… → 9f00e1d2…)``. An input only one side names is no change:
    a dataset made on first use, or an input that appeared with another setting (which the recorded overrides
    catch)."""
    out = []
    for name, entry in now.items():
        if name not in recorded:
            continue
        was, is_now = recorded[name].get("sha256"), entry.get("sha256")
        if was != is_now:
            out.append(f"{name} changed (sha256 {_short(was)} → {_short(is_now)})")
    return out
