"""``python -m csmri.app.sync_wandb [FOLDER ...]`` (``make sync-wandb``): upload offline W&B runs.

Finds every ``offline-run-*`` folder under the given folders (default ``outputs``) and passes them to
``wandb sync`` (the pinned wandb has no ``--sync-all``). Says so and exits 0 when there are none; exits 2
without uploading when no W&B credentials are configured (``wandb login`` or ``$WANDB_API_KEY``).
"""

from __future__ import annotations

import argparse
import netrc
import os
import shutil
import subprocess
import sys
from pathlib import Path


def offline_runs(folders: list[Path]) -> list[Path]:
    """The ``offline-run-*`` folders below ``folders``, sorted."""
    return sorted({p for f in folders if f.is_dir() for p in f.rglob("offline-run-*") if p.is_dir()})


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return bool(netrc.netrc().authenticators("api.wandb.ai"))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_command() -> str | None:
    beside = Path(sys.executable).parent / "wandb"
    return str(beside) if beside.is_file() else shutil.which("wandb")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make sync-wandb", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[Path("outputs")])
    parser.add_argument("--dry-run", action="store_true", help="list the runs, upload nothing")
    args = parser.parse_args(argv)
    runs = offline_runs(args.folders)
    where = ", ".join(map(str, args.folders))
    if not runs:
        print(f"no offline W&B runs (offline-run-*) under {where}: nothing to upload")
        return 0
    print(f"{len(runs)} offline W&B run(s) under {where}")
    if args.dry_run:
        print("\n".join(map(str, runs)))
        return 0
    if not has_credentials():
        print(
            "sync-wandb: error: no W&B credentials: run `wandb login` (or set WANDB_API_KEY), then `make sync-wandb`",
            file=sys.stderr,
        )
        return 2
    command = wandb_command()
    if command is None:
        print("sync-wandb: error: the wandb command is not installed (pip install wandb)", file=sys.stderr)
        return 2
    return subprocess.run([command, "sync", *map(str, runs)], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
