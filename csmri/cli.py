"""The ``csmri`` command.

csmri train [hydra overrides...]        train a stage (see conf/train.yaml)
csmri eval [hydra overrides...]         evaluate methods on the test split (see conf/eval.yaml)
csmri reproduce [profile=quick|paper|smoke] [key=value...]
                                        the whole study, resumable, into results/
csmri data phantom --out DIR [...]      write the synthetic LGE-cardiac phantom dataset
csmri data prepare data=NAME data.root=DIR [--out DIR]
                                        convert a folder of scans (NIfTI, NRRD, DICOM, ...) once
csmri compare RUN_DIR... [--metric val/psnr]   final metrics side by side + a metric-over-steps plot
csmri readers export --eval-dir DIR --out DIR   blinded reader-study kit from an evaluation
csmri readers score RATINGS.csv --key KEY.json  un-blind ratings: MOS per method + Wilcoxon
"""

from __future__ import annotations

import argparse
import os
import sys

USAGE = __doc__


def _data(argv: list[str]) -> int:
    from csmri.data.layout import FORMAT

    parser = argparse.ArgumentParser(prog="csmri data", description="Dataset tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    phantom = commands.add_parser("phantom", help="write the synthetic LGE-cardiac phantom dataset")
    phantom.add_argument("--out", required=True, help=f"output directory ({FORMAT} layout)")
    phantom.add_argument("--patients", type=int, default=37, help="patients (split 24/6/7 for 37)")
    phantom.add_argument("--size", type=int, default=128, help="image size N (N x N, even)")
    phantom.add_argument("--slices", type=int, default=20, help="slices per patient")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--noise-std", type=float, default=0.0, help="complex image noise std")
    phantom.add_argument("--examples", metavar="PNG", help="also write a PNG grid of example slices")
    from csmri.data.prepare import add_prepare_parser, run_prepare

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
        )
    except ValueError as err:
        parser.error(str(err))
    print(f"wrote phantom dataset to {root}")
    if args.examples:
        print(f"wrote {save_example_grid(root, args.examples)}")
    return 0


HYDRA_APP_ENV = "CSMRI_HYDRA_APP"
HYDRA_APPS = {"train": "train", "eval": "evaluate"}


def _hydra(module: str, argv: list[str]) -> int:
    """Run the Hydra app of ``csmri.<module>`` with ``argv`` as its command line.

    Lightning relaunches DDP workers with this process's command line plus Hydra overrides; the app's
    own file as ``argv[0]`` and ``$CSMRI_HYDRA_APP`` make those relaunches run the same app again.
    """
    import importlib

    app = importlib.import_module(f"csmri.{module}")
    os.environ[HYDRA_APP_ENV] = module
    sys.argv = [app.__file__, *argv]
    app.main()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command in HYDRA_APPS:
        return _hydra(HYDRA_APPS[command], rest)
    if os.environ.get(HYDRA_APP_ENV) and "=" in command:  # a DDP worker relaunched by Lightning
        return _hydra(os.environ[HYDRA_APP_ENV], argv)
    if command == "reproduce":
        from csmri.reproduce import main as reproduce

        return reproduce(rest)
    if command == "data":
        return _data(rest)
    if command == "compare":
        from csmri.compare import main as compare

        return compare(rest)
    if command == "readers":
        from csmri.eval.readers import readers_main

        return readers_main(rest)
    print(f"csmri: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
