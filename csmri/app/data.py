"""`csmri data`: write the synthetic phantom dataset, or prepare a folder of scans once."""

from __future__ import annotations

import argparse

from csmri.data.layout import FORMAT


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
            resolution=args.resolution[0] if len(args.resolution) == 1 else args.resolution,
        )
    except ValueError as err:
        parser.error(str(err))
    print(f"wrote phantom dataset to {root}")
    if args.examples:
        print(f"wrote {save_example_grid(root, args.examples)}")
    return 0
