"""``csmri readers export | score``: the command line of the blinded reader study (:mod:`csmri.eval.reader_study`).

Errors in the inputs (a missing file, an unknown method, malformed ratings) print
``csmri readers <command>: error: <message>`` and return status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_readers_parser", "main", "run_readers"]


def add_readers_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``readers`` (with ``export`` and ``score``) to an argparse sub-parser collection.

    The parsed namespace has ``readers_command`` in ``{"export", "score"}`` and ``func=run_readers``.
    """
    from csmri.eval.recons import RECONS_FILE

    parser = subparsers.add_parser(
        "readers",
        help="blinded reader study: export images, score ratings",
        description="Blinded reader-study kit (the paper's MOS).",
    )
    commands = parser.add_subparsers(dest="readers_command", required=True)
    export = commands.add_parser("export", help="write shuffled anonymous images + rating page + key.json")
    export.add_argument("--eval-dir", required=True, help=f"output dir of `csmri eval` (holds {RECONS_FILE})")
    export.add_argument("--out", required=True, help="study dir: study/ for the readers, key.json kept back")
    export.add_argument("--seed", type=int, default=0, help="shuffle seed (recorded in key.json)")
    export.add_argument("--methods", nargs="+", help="subset of methods (default: all in the file)")
    export.add_argument(
        "--all-slices",
        action="store_true",
        help="also export slices without the structure (default: only those whose label has it)",
    )
    export.add_argument("--max-slices", type=int, help="random subset of this many slices (seeded)")
    score = commands.add_parser("score", help="un-blind ratings.csv files and report MOS per method")
    score.add_argument("ratings", nargs="+", help="ratings.csv file(s) downloaded from the rating page")
    score.add_argument("--key", required=True, help="key.json written by `csmri readers export`")
    score.add_argument(
        "--reference",
        default="refinement",
        help="method for the p-values ('none': no tests; default: refinement)",
    )
    score.add_argument("--out", help="directory for scores.md / scores.json (default: next to key.json)")
    parser.set_defaults(func=run_readers)
    return parser


def _export(args: argparse.Namespace) -> int:
    from csmri.eval.reader_study.export import export_reader_study, select_slices
    from csmri.eval.recons import RECONS_FILE, load_recons

    recons = Path(args.eval_dir) / RECONS_FILE
    if not recons.is_file():
        raise FileNotFoundError(f"{recons} not found: run `csmri eval` first (it writes {RECONS_FILE})")
    images, labels = load_recons(recons)
    if not args.all_slices and not labels:
        n = len({k for per_key in images.values() for k in per_key})
        print(f"note: {recons} has no label maps; exporting all {n} slices")
    try:
        images = select_slices(images, labels, args.methods, args.all_slices, args.max_slices, args.seed)
    except ValueError as err:
        raise ValueError(f"{recons}: {err}") from err
    n_keys = len({k for per_key in images.values() for k in per_key})
    out = export_reader_study(args.out, images, seed=args.seed)
    n = sum(len(v) for v in images.values())
    print(f"wrote {n} images of {n_keys} slices x {len(images)} methods to {out / 'study'}")
    print(f"un-blinding key: {out / 'key.json'} (keep it away from the readers)")
    return 0


def _score(args: argparse.Namespace) -> int:
    from csmri.eval.reader_study.score import score_ratings, write_scores

    reference = None if str(args.reference).lower() == "none" else args.reference
    result = score_ratings(args.ratings, args.key, reference=reference)
    out = Path(args.out) if args.out else Path(args.key).parent
    md, js = write_scores(result, out / "scores.md", out / "scores.json")
    print(md.read_text())
    print(f"wrote {md} and {js}")
    return 0


def run_readers(args: argparse.Namespace) -> int:
    """Run a parsed ``csmri readers ...`` command; errors in the inputs print a message and return 2."""
    try:
        if args.readers_command == "export":
            return _export(args)
        if args.readers_command == "score":
            return _score(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"csmri readers {args.readers_command}: error: {err}", file=sys.stderr)
        return 2
    raise ValueError(f"unknown readers command {args.readers_command!r}")


def main(argv: Sequence[str]) -> int:
    """``csmri readers <argv>``: parse and run; returns the exit status."""
    parser = argparse.ArgumentParser(prog="csmri")
    add_readers_parser(parser.add_subparsers(dest="command", required=True))
    return run_readers(parser.parse_args(["readers", *argv]))
