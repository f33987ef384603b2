"""Finding the cases of a raw folder by the naming rule, grouping them into patients, and fingerprinting inputs."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from csmri.data.layout import has_layout
from csmri.data.scan_files import is_scan_entry, split_extension
from csmri.data.sources.folder.options import FolderOptions
from csmri.errors import BadInputError, path_hint

log = logging.getLogger(__name__)

__all__ = ["Case", "CaseFinder", "Discovery", "fingerprint"]


@dataclass
class Case:
    """One raw volume: ``name`` (the layout's file stem), its ``patient`` (split unit) and files."""

    name: str
    patient: str
    image: Path
    label: Path | None = None


@dataclass
class Discovery:
    """What :meth:`CaseFinder.discover` found: cases, problems (skipped if ``skip_bad``), unknown files."""

    cases: list[Case]
    problems: list[BadInputError] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


class CaseFinder:
    """Discovers the cases of a raw folder for :class:`FolderOptions` (naming, pattern, labels, patients)."""

    def __init__(self, options: FolderOptions) -> None:
        self.options = options

    def discover(self, root: Path) -> Discovery:
        """Find the cases of ``root`` by the naming rule. Empty or missing folders always raise."""
        root = Path(root)
        if not root.is_dir():
            raise BadInputError(
                root, "no such folder", f"set data.root to your scans' folder (nearest existing: {path_hint(root)})"
            )
        finder = {
            "suffix": self._find_suffix,
            "parallel": self._find_parallel,
            "case_dirs": self._find_case_dirs,
        }
        discovery = finder[self.options.naming](root)
        if not discovery.cases and not discovery.problems:
            raise BadInputError(
                root,
                f"no scans found (naming={self.options.naming}, pattern={self._pattern()!r}); {self._naming_hint()}",
                "set data.root to the folder of your scans, or data.source.naming / data.source.pattern to how "
                "they are named",
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
        if discovery.problems and not self.options.skip_bad:
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
        if self.options.pattern:
            return self.options.pattern
        return f"**/{self.options.image_name}" if self.options.naming == "case_dirs" else "*"

    def _naming_hint(self) -> str:
        return {
            "suffix": f"expected <case>.<ext> with labels <case>{self.options.label_suffix}.<ext>",
            "parallel": f"expected {self.options.image_dir}/<case>.<ext> and {self.options.label_dir}/<case>.<ext>",
            "case_dirs": f"expected <case>/{self.options.image_name} and <case>/{self.options.label_name}",
        }[self.options.naming]

    def _entries(self, base: Path) -> tuple[list[Path], list[Path]]:
        """Scan entries matched by the pattern under ``base``, and unknown files (default pattern only)."""
        matched = sorted(p for p in base.glob(self._pattern()) if not _hidden(p, base))
        out = Path(self.options.out).resolve() if self.options.out else None
        matched = [p for p in matched if not (p.is_dir() and (has_layout(p) or p.resolve() == out))]
        scans = [p for p in matched if is_scan_entry(p)]
        ignored = [p for p in matched if p.is_file() and not is_scan_entry(p)] if not self.options.pattern else []
        return scans, ignored

    def _find_suffix(self, root: Path) -> Discovery:
        entries, ignored = self._entries(root)
        images, labels = {}, {}
        for path in entries:
            stem = split_extension(path.name)[0]
            if self.options.label_suffix and stem.endswith(self.options.label_suffix):
                labels[(path.parent, stem[: -len(self.options.label_suffix)])] = path
            else:
                images.setdefault((path.parent, stem), []).append(path)
        if self.options.pattern:  # labels are not matched by an image pattern: look for them next to the images
            for parent, stem in images:
                for candidate in _siblings(parent, stem + self.options.label_suffix):
                    labels.setdefault((parent, stem), candidate)
        return self._pair(images, labels, ignored)

    def _find_parallel(self, root: Path) -> Discovery:
        image_root, label_root = root / self.options.image_dir, root / self.options.label_dir
        if not image_root.is_dir():
            raise BadInputError(
                image_root,
                f"no such folder (naming=parallel); {self._naming_hint()}",
                "set data.source.image_dir (and label_dir) to the folders of your images (and labels)",
            )
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
            if self.options.label_name and (path.parent / self.options.label_name).exists():
                labels[(path.parent, path.parent.name)] = path.parent / self.options.label_name
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
            label = labels.get((parent, name)) if self.options.labels != "none" else None
            discovery.cases.append(Case(name=name, patient=name, image=paths[0], label=label))
        if self.options.labels != "none":
            for key, path in sorted(labels.items()):
                if key not in images:
                    discovery.problems.append(
                        BadInputError(path, f"label map without an image ({self._naming_hint()})")
                    )
        return discovery

    def _assign_patients(self, discovery: Discovery) -> list[Case]:
        if self.options.patient_regex is None:
            return discovery.cases
        pattern = re.compile(self.options.patient_regex)
        kept = []
        for case in discovery.cases:
            match = pattern.search(case.name)
            if match is None:
                discovery.problems.append(
                    BadInputError(
                        case.image,
                        f"case name {case.name!r} does not match patient_regex {self.options.patient_regex!r}",
                    )
                )
                continue
            groups = match.groupdict()
            case.patient = groups.get("patient") or (match.group(1) if match.re.groups else match.group(0))
            kept.append(case)
        return kept

    def _check_label_presence(self, discovery: Discovery) -> None:
        if self.options.labels == "none":
            return
        with_label = [c for c in discovery.cases if c.label is not None]
        if self.options.labels == "auto" and not with_label:
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
        if self.options.naming == "suffix":
            return f"{case.name}{self.options.label_suffix}.<ext> next to it"
        if self.options.naming == "parallel":
            return f"{self.options.label_dir}/{case.name}.<ext>"
        return str(case.image.parent / str(self.options.label_name))


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def _siblings(parent: Path, stem: str) -> Iterable[Path]:
    for path in sorted(parent.glob(f"{glob_escape(stem)}*")):
        if split_extension(path.name)[0] == stem and is_scan_entry(path):
            yield path


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def fingerprint(root: Path, cases: Sequence[Case]) -> str:
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
