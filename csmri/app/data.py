"""`csmri data`: write the synthetic phantom dataset, or prepare a folder of scans once.

    csmri data prepare data=<name> data.root=DIR [--out DIR] [--force] [data.source.key=value ...]

The arguments of ``prepare`` after its options are Hydra overrides of ``conf/train.yaml``, exactly as for
``csmri train``; the composed ``data`` block goes to :func:`csmri.data.prepare.prepare_dataset`. With ``--out`` the
layout is written to that folder instead (train on it with ``data=h5 data.root=OUT``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from csmri.data.layout import FORMAT
from csmri.errors import ConfigError

PREPARE_EXAMPLES = """examples:
  csmri data prepare data=folder data.root=scans/
  csmri data prepare data=la2018 "data.root=LA2018/Training Set" --out data/la2018
  csmri data prepare data=acdc data.root=ACDC/training data.source.structure=[2]
  csmri data prepare data=fastmri_singlecoil data.root=knee/singlecoil_val --out data/fastmri_val
"""


def main(argv: list[str]) -> int:
    """``csmri data phantom|prepare ...``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="csmri data", description="Dataset tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    phantom = commands.add_parser("phantom", help="write the synthetic LGE-cardiac phantom dataset")
    phantom.add_argument("--out", required=True, help=f"output directory ({FORMAT} layout)")
    phantom.add_argument("--patients", type=int, default=37, help="patients (split 24/6/7 for 37)")
    phantom.add_argument("--size", type=int, default=128, help="image size N (N x N, even)")
    phantom.add_argument("--slices", type=int, default=20, help="slices per patient")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--noise-std", type=float, default=0.0, help="complex image noise std")
    phantom.add_argument(
        "--resolution",
        type=float,
        nargs="+",
        default=[0.5, 1.0],
        metavar="R",
        help="acquired fraction of the k-space extent (1 = the grid's), or LOW HIGH: per patient uniform in the "
        "range (default: 0.5 1.0, as data=phantom)",
    )
    phantom.add_argument(
        "--atrium",
        choices=("walled", "open"),
        default="walled",
        help="the LA in a bright wall of its own (walled), or its wall nulled and its blood continuing, unlabelled, "
        "into the pulmonary veins and the LV (open: the label's boundary is partly invisible, as in LGE)",
    )
    phantom.add_argument(
        "--tracing",
        type=float,
        default=0.0,
        metavar="PX",
        help="label the LA as an annotator traces it: each slice's outline off the true one by a smooth offset of "
        "this rms, in pixels at 128^2 (default 0: the true outline)",
    )
    phantom.add_argument("--examples", metavar="PNG", help="also write a PNG grid of example slices")
    add_prepare_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        return run_prepare(args)

    from csmri.data.sources.phantom import save_example_grid, write_phantom_dataset

    try:
        root = write_phantom_dataset(
            args.out,
            n_patients=args.patients,
            size=args.size,
            n_slices=args.slices,
            seed=args.seed,
            noise_std=args.noise_std,
            resolution=args.resolution[0] if len(args.resolution) == 1 else args.resolution,
            atrium=args.atrium,
            tracing=args.tracing,
        )
    except ValueError as err:
        parser.error(str(err))
    print(f"wrote phantom dataset to {root}")
    if args.examples:
        print(f"wrote {save_example_grid(root, args.examples)}")
    return 0


def add_prepare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``prepare`` sub-command to ``csmri data``'s ``subparsers``; returns its parser."""
    parser = subparsers.add_parser(
        "prepare",
        help="convert a raw data source (data=folder, la2018, acdc, ...) into the csmri layout once",
        description=f"Convert a configured data source into the {FORMAT} layout once (README: Bring your own data).",
        epilog=PREPARE_EXAMPLES,
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
    """Run ``csmri data prepare`` for parsed ``args``: compose the train config with the overrides, prepare its
    ``data`` block (:func:`csmri.data.prepare.prepare_dataset`) and print what was written; returns the exit status.

    A user mistake raises a :class:`csmri.errors.CsmriError` (or an error :func:`csmri.errors.user_error`
    recognises): the ``csmri`` command prints it as one line plus a hint and exits with status 2.
    """
    from csmri.config import compose
    from csmri.data.prepare import prepare_dataset

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _options_among_overrides(args)
    cfg = compose("train", list(args.overrides))
    out = prepare_dataset(cfg.data, out=args.out, force=bool(args.force))
    _report(out, list(args.overrides), bool(args.out))
    return 0


def _report(out: Path, overrides: list[str], explicit_out: bool) -> None:
    from csmri.data.layout import read_meta
    from csmri.data.sources.folder.summary import format_summary

    meta = read_meta(out)
    if "summary" in meta:
        print(format_summary(meta["summary"]))
    print(f"prepared dataset: {out}")
    if explicit_out:
        print(f"train on it with: csmri train experiment=stage1 data=h5 data.root={out}")
    else:
        print("train on it with: csmri train experiment=stage1 " + " ".join(overrides))
