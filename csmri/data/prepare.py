"""``csmri data prepare``: convert a configured data source into a prepared dataset (:mod:`csmri.data.layout`) once.

    csmri data prepare data=<name> data.root=DIR [--out DIR] [--force] [data.source.key=value ...]

The arguments after the options are Hydra overrides of ``conf/train.yaml``, exactly as for ``csmri train``,
so a dataset prepared here is the one training would prepare: ``csmri train data=<name> data.root=DIR``
with the same ``data.source`` overrides finds it and does not convert again. With ``--out`` the layout is
written to that folder instead (train on it with ``data=h5 data.root=OUT``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from csmri.data.layout import FORMAT, META_FILE, has_layout, read_meta
from csmri.errors import ConfigError, MissingValueError, user_error

__all__ = ["add_prepare_parser", "run_prepare"]

EXAMPLES = """examples:
  csmri data prepare data=folder data.root=scans/
  csmri data prepare data=la2018 "data.root=LA2018/Training Set" --out data/la2018
  csmri data prepare data=acdc data.root=ACDC/training data.source.structure=[2]
  csmri data prepare data=fastmri_singlecoil data.root=knee/singlecoil_val --out data/fastmri_val
"""


def add_prepare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``prepare`` sub-command to ``csmri data``'s ``subparsers``; returns its parser."""
    parser = subparsers.add_parser(
        "prepare",
        help="convert a raw data source (data=folder, la2018, acdc, ...) into the csmri layout once",
        description=f"Convert a configured data source into the {FORMAT} layout once (README: Bring your own data).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # REMAINDER (with the options picked out again in run_prepare) lets options and overrides mix freely
    parser.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        metavar="KEY=VALUE",
        help="Hydra overrides of conf/train.yaml: data=<name> data.root=DIR data.source.<key>=...",
    )
    parser.add_argument("--out", metavar="DIR", help="write the layout here (default: <root>/.csmri_prepared/<hash>)")
    parser.add_argument("--force", action="store_true", help="prepare again even if an up-to-date layout exists")
    return parser


def _compose(overrides: list[str]) -> Any:
    from csmri.config import compose

    return compose("train", overrides)


def _options_among_overrides(args: argparse.Namespace) -> argparse.Namespace:
    """Move ``--out DIR``/``--out=DIR``/``--force`` given after the first override into ``args``."""
    overrides, rest = [], list(args.overrides or [])
    while rest:
        item = rest.pop(0)
        if item == "--force":
            args.force = True
        elif item == "--out" and rest:
            args.out = rest.pop(0)
        elif item.startswith("--out="):
            args.out = item.split("=", 1)[1]
        elif item.startswith("-"):
            raise ConfigError(f"unknown option {item!r}", "the options are --out DIR and --force")
        else:
            overrides.append(item)
    return argparse.Namespace(**{**vars(args), "overrides": overrides})


def run_prepare(args: argparse.Namespace) -> int:
    """Run ``csmri data prepare`` for parsed ``args``; returns the exit status.

    A user mistake (a bad override, a bad input file, a folder it must not write into) raises a
    :class:`csmri.errors.CsmriError` (or an error :func:`csmri.errors.user_error` recognises, such as
    :class:`csmri.data.scan_files.BadInputError`) naming the key or file: the ``csmri`` command prints it as one
    line plus a hint and exits with status 2, as for every command. Nothing half-written is left behind.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _options_among_overrides(args)
    cfg = _compose(list(args.overrides))
    data = cfg.data
    if OmegaConf.is_missing(data, "root"):
        raise MissingValueError("data.root", "the folder of your scans, e.g. data.root=DIR")
    if data.get("source") is None:
        raise ConfigError(
            f"this data config has no source to prepare (data.root={data.root} must already hold a prepared dataset)",
            "use data=folder, la2018, acdc or fastmri_singlecoil",
        )
    if args.out:
        if "out" in data.source:
            data.source.out = str(args.out)
        else:  # e.g. the phantom: it is written into its root
            data.root = str(args.out)
    source = _instantiate_source(data.source)
    root = Path(str(data.root))
    if args.force:
        _remove_prepared(source.layout_dir(root), root)
    out = source.prepare(root)
    _report(Path(out), list(args.overrides), bool(args.out))
    return 0


def _instantiate_source(config: Any) -> Any:
    """``data.source`` instantiated; a failure that is not already a user error becomes a :class:`ConfigError`
    (the arguments come from the command line: a wrong name or type of a ``data.source`` option)."""
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
    import shutil

    if layout.resolve() == root.resolve() or not has_layout(layout):
        return
    if json.loads((layout / META_FILE).read_text()).get("source") == "folder":
        shutil.rmtree(layout)


def _report(out: Path, overrides: list[str], explicit_out: bool) -> None:
    from csmri.data.sources.folder.summary import format_summary

    meta = read_meta(out)
    if "summary" in meta:
        print(format_summary(meta["summary"]))
    print(f"prepared dataset: {out}")
    if explicit_out:
        print(f"train on it with: csmri train experiment=stage1 data=h5 data.root={out}")
    else:
        print("train on it with: csmri train experiment=stage1 " + " ".join(overrides))
