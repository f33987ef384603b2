"""Convert a configured data source into a prepared dataset (:mod:`csmri.data.layout`) once.

:func:`prepare_dataset` takes the ``data`` block of a composed train config (``data.root``, ``data.source``), so a
dataset prepared here is the one training would prepare: ``csmri train data=<name> data.root=DIR`` with the same
``data.source`` options finds it and does not convert again. The command line is ``csmri data prepare``
(:mod:`csmri.app.data`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from csmri.data.layout import META_FILE, has_layout
from csmri.errors import ConfigError, MissingValueError, user_error

__all__ = ["prepare_dataset"]


def prepare_dataset(data: Mapping[str, Any] | DictConfig, out: str | Path | None = None, force: bool = False) -> Path:
    """Prepare the dataset of the ``data`` config block once; returns the prepared layout folder.

    Args:
        data: the ``data`` block of a composed train config (``root`` and ``source``; not changed).
        out: write the layout to this folder instead of where training looks for it (the source's ``out``, or
            ``root`` for a source that writes into its root, e.g. the phantom).
        force: prepare again even if an up-to-date layout exists.

    A user mistake (a required value left unset, a data config without a source, a bad ``data.source`` option or
    input file, a folder it must not write into) raises a :class:`csmri.errors.CsmriError` (or an error
    :func:`csmri.errors.user_error` recognises, such as :class:`csmri.errors.BadInputError`) naming the key or
    file. Nothing half-written is left behind.
    """
    if not isinstance(data, DictConfig):
        data = OmegaConf.create(dict(data))
    if OmegaConf.is_missing(data, "root"):
        raise MissingValueError("data.root", "the folder of your scans, e.g. data.root=DIR")
    root = Path(str(data.root))
    if data.get("source") is None:
        raise ConfigError(
            f"this data config has no source to prepare (data.root={root} must already hold a prepared dataset)",
            "use data=folder, la2018, acdc or fastmri_singlecoil",
        )
    options = OmegaConf.create(OmegaConf.to_container(data.source, resolve=True))  # a copy: `data` stays as given
    if out:
        if "out" in options:
            options.out = str(out)
        else:  # e.g. the phantom: it is written into its root
            root = Path(str(out))
    source = _instantiate_source(options)
    if force:
        _remove_prepared(source.layout_dir(root), root)
    return Path(source.prepare(root))


def _instantiate_source(config: Any) -> Any:
    """``data.source`` instantiated; a failure that is not already a user error becomes a :class:`ConfigError`
    (the options come from the command line: a wrong name or type of a ``data.source`` option)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(config)
    except InstantiationException as err:
        if user_error(err) is not None:
            raise
        cause = err.__cause__ or err
        raise ConfigError(
            f"cannot build data.source ({type(cause).__name__}: {str(cause).strip().splitlines()[0]})",
            "check the data.source.* overrides against csmri/conf/data/",
        ) from err


def _remove_prepared(layout: Path, root: Path) -> None:
    """Delete a layout written by a source (never ``root`` itself, never a folder that is not a dataset)."""
    if layout.resolve() == root.resolve() or not has_layout(layout):
        return
    if json.loads((layout / META_FILE).read_text()).get("source") == "folder":
        shutil.rmtree(layout)
