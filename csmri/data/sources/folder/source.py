"""The folder source: :class:`FolderSource` prepares a folder of your own scans once. The presets of ``conf/data``
(``folder``, ``la2018``, ``acdc``, ``fastmri_singlecoil``) come from :func:`csmri.config.data_source`."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from csmri.data import layout
from csmri.data.layout import SPLITS, has_layout
from csmri.data.sources.folder.convert import load_case
from csmri.data.sources.folder.discovery import Case, CaseFinder, Discovery, fingerprint
from csmri.data.sources.folder.options import FolderOptions
from csmri.data.sources.folder.summary import CaseRecord, format_summary, summarise_preparation
from csmri.errors import BadInputError, ConfigError, DatasetFolderError, OutputError, did_you_mean

log = logging.getLogger(__name__)

__all__ = ["PREPARED_DIR", "FolderSource"]

PREPARED_DIR = ".csmri_prepared"


class FolderSource:
    """A :class:`csmri.data.sources.DatasetSource` for a folder of your own scans (:mod:`csmri.data.sources.folder`).

    Takes the fields of :class:`FolderOptions` as keyword arguments (as Hydra passes ``data.source``); an unknown
    one is a :class:`csmri.errors.ConfigError` naming the key ``data.source.<name>``.
    """

    def __init__(self, **options: Any) -> None:
        known = FolderOptions.__dataclass_fields__
        for name in options:
            if name not in known:
                close = did_you_mean(name, known, "data.source.")
                raise ConfigError(
                    f"unknown option `data.source.{name}` of the folder source{close}",
                    "the options are listed in csmri/conf/data/folder.yaml",
                )
        self.settings = FolderOptions(**options)

    def __getattr__(self, name: str) -> Any:
        """The options read as attributes (``source.size``), as before they moved into :class:`FolderOptions`."""
        settings = self.__dict__.get("settings")
        if settings is not None and name in FolderOptions.__dataclass_fields__:
            return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- identity -----------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """Everything that determines the prepared content (not ``out`` or ``progress``), JSON-able."""
        return self.settings.content()

    def options_hash(self) -> str:
        """12 hex digits of SHA-256 over :meth:`options` (names the default layout folder)."""
        return self.settings.content_hash()

    # -- DatasetSource ------------------------------------------------------------------------------
    def layout_dir(self, root: Path) -> Path:
        """``out`` if set; ``root`` itself when it already is a prepared layout; else the hashed folder."""
        root = Path(root)
        if self.settings.out is not None:
            return Path(self.settings.out)
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
        discovery = CaseFinder(self.settings).discover(root)
        inputs = fingerprint(root, discovery.cases)
        if self._up_to_date(root, out, inputs):
            log.info("using the dataset prepared earlier at %s", out)
            return out
        summary = self.write(root, out, discovery, inputs)
        log.info("prepared %s -> %s\n%s", root, out, format_summary(summary))
        return out

    def _up_to_date(self, root: Path, out: Path, inputs: str) -> bool:
        """True when ``out`` holds this source's layout of ``root``'s current files; raises rather than
        overwrite a folder that holds something else (another dataset, other options, other raw data)."""
        if not out.exists():
            return False
        if not out.is_dir():
            raise DatasetFolderError(
                f"{out} is a file, not a folder; refusing to write a dataset there",
                "set data.source.out (or --out) to a new or empty folder",
            )
        if not has_layout(out):
            if any(out.iterdir()):
                raise DatasetFolderError(
                    f"{out} exists and is not a csmri dataset; refusing to write into it",
                    "set data.source.out (or --out) to a new or empty folder",
                )
            return False
        meta = json.loads((out / layout.META_FILE).read_text())
        if meta.get("source") != "folder" or meta.get("options_hash") != self.options_hash():
            raise DatasetFolderError(
                f"{out} already holds a dataset prepared from other options or another source",
                f"delete {out} to prepare it again with these settings, or set data.source.out to another folder",
            )
        if meta.get("raw_root") != str(root.resolve()):
            raise DatasetFolderError(
                f"{out} holds a dataset prepared from {meta.get('raw_root')}, not {root.resolve()}",
                f"delete {out} to prepare it again, or set data.source.out to another folder",
            )
        if meta.get("inputs_fingerprint") != inputs:
            log.warning("the raw files changed since %s was prepared: preparing it again", out)
            return False
        return True

    # -- splits -------------------------------------------------------------------------------------
    def check_split_lists(self, cases: Sequence[Case], root: Path) -> tuple[list[Case], list[BadInputError]]:
        """Cases whose patient is in the explicit split lists, and the problems: a listed patient without
        a scan (named by ``root``), a case whose patient is in no list (named by its image).

        A no-op without lists (ratio splits)."""
        if self.settings.splits is None:
            return list(cases), []
        problems: list[BadInputError] = []
        patients = {c.patient for c in cases}
        listed = {p for ids in self.settings.splits.values() for p in ids}
        for split, ids in self.settings.splits.items():
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
        (sorted) split by :func:`csmri.data.layout.split_indices` (seeded by ``seed``)."""
        patients = sorted({c.patient for c in cases})
        if self.settings.splits is not None:
            by_patient = self.settings.splits
        else:
            if len(patients) < 3:
                raise BadInputError(root, f"a train/val/test split needs at least 3 patients, found {len(patients)}")
            indices = layout.split_indices(len(patients), self.settings.seed, self.settings.split_ratios)
            by_patient = {s: [patients[i] for i in ids] for s, ids in indices.items()}
        split_of = {pid: s for s, ids in by_patient.items() for pid in ids}
        out: dict[str, list[str]] = {s: [] for s in SPLITS}
        for case in cases:
            out[split_of[case.patient]].append(case.name)
        return {s: sorted(names) for s, names in out.items()}

    # -- conversion ---------------------------------------------------------------------------------
    def write(self, root: Path, out: Path, discovery: Discovery, inputs: str) -> dict[str, Any]:
        """Convert every case into ``out`` and return the summary.

        Cases are converted into a temporary sibling of ``out``; the split is made over the cases that could
        be converted (so a skipped case never empties a split), then the folder is renamed to ``out``. A failure
        leaves nothing behind: neither the temporary folder nor the parent folders it had to create (such as
        ``<root>/.csmri_prepared``).
        """
        cases, problems = self.check_split_lists(discovery.cases, root)
        if problems and not self.settings.skip_bad:
            raise problems[0]
        skipped = [_skip_record(p) for p in (*discovery.problems, *problems)]
        for problem in problems:
            log.warning("skipping: %s", problem)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        staging = tmp / "_cases"
        created = _first_missing(out.parent)
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            staging.mkdir(parents=True)
        except OSError as err:
            raise OutputError(
                f"cannot write the prepared dataset next to {out} ({err})",
                "set data.source.out (or --out) to a writable folder",
            ) from err
        records: dict[str, CaseRecord] = {}
        size = self.settings.size
        try:
            for case in _progress(cases, self.settings.progress, f"prepare {root.name}"):
                try:
                    result = load_case(self.settings, case, size)
                except BadInputError as err:
                    if not self.settings.skip_bad:
                        raise
                    log.warning("skipping: %s", err)
                    skipped.append(_skip_record(err))
                    continue
                size = size or (result.image.shape[-2], result.image.shape[-1])
                layout.write_case_file(
                    staging / f"{case.name}.h5",
                    case.name,
                    result.image,
                    result.label,
                    result.indices,
                    attrs={
                        "patient": case.patient,
                        "source_image": str(case.image.relative_to(root)),
                        "source_label": "" if case.label is None else str(case.label.relative_to(root)),
                    },
                )
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
            labels_used = self.settings.labels != "none"
            summary = summarise_preparation(records, splits, done, skipped, discovery.ignored, size, labels_used)
            self._final_checks(root, splits, summary, records)
            layout.write_meta(tmp, self._meta(root, splits, done, size, summary, inputs))
            if out.exists():
                shutil.rmtree(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            if created is not None and not out.exists():
                _remove_empty(out.parent, created)
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
        if self.settings.structure is not None and summary["has_labels"]:
            absent = [v for v in self.settings.structure if v not in values]
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
        inputs: str,
    ) -> dict[str, Any]:
        has_labels = bool(summary["has_labels"])
        return layout.build_meta(
            "folder",
            size,
            splits=splits,
            has_labels=has_labels,
            label_names={"1": self.settings.structure_name} if has_labels else {},
            patients={c.name: c.patient for c in cases},
            seed=self.settings.seed,
            raw_root=str(Path(root).resolve()),
            options=self.options(),
            options_hash=self.options_hash(),
            inputs_fingerprint=inputs,
            summary=summary,
        )


def _first_missing(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist yet (``None`` if ``folder`` exists)."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to ``top`` (included) while they are empty."""
    for path in (folder, *folder.parents):
        try:
            path.rmdir()
        except OSError:
            return
        if path == top:
            return


def _skip_record(err: BadInputError) -> dict[str, str]:
    return {"path": str(err.path), "reason": err.reason}


def _progress(items: Sequence[Case], enabled: bool, desc: str) -> Iterable[Case]:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="case")
