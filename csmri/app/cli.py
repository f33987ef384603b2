"""The ``csmri`` command: one dispatcher for the Hydra apps (train, eval) and the argparse tools.

csmri train [hydra overrides...]        train a stage (see csmri/conf/train.yaml)
csmri eval [hydra overrides...]         evaluate methods on the test split (see csmri/conf/eval.yaml)
csmri reproduce [profile=quick_open|quick|paper|smoke] [key=value...]
                                        the whole study, resumable, into results/
csmri study [key=value...]              the alpha / loss-weight study of stage 2 into results/study/
csmri data phantom --out DIR [...]      write the synthetic LGE-cardiac phantom dataset
csmri data prepare data=NAME data.root=DIR [--out DIR]
                                        convert a folder of scans (NIfTI, NRRD, DICOM, ...) once
csmri reconstruct --ckpt CKPT|RUN_DIR --input FILE|DIR --out FILE|DIR [--acceleration 8] [--pad] [--complex]
                                        reconstruct your own image or k-space (one scan, or a folder of them)
csmri export --ckpt CKPT --format onnx|torchscript --out PATH [--size H W]
                                        a trained network as ONNX / TorchScript (FFTs over real tensors)
csmri compare RUN_DIR... [--metric val/psnr]   final metrics side by side + a metric-over-steps plot
csmri readers export --eval-dir DIR --out DIR   blinded reader-study kit from an evaluation
csmri readers score RATINGS.csv --key KEY.json  un-blind ratings: MOS per method + Wilcoxon
csmri --version                         the installed version

Errors a user can fix end with one line and a hint (exit status 2); CSMRI_DEBUG=1 shows the traceback.
Tab completion of the Hydra apps: eval "$(csmri train --shell-completion install=bash)"
"""

from __future__ import annotations

import os
import sys

USAGE = __doc__


HYDRA_APP_ENV = "CSMRI_HYDRA_APP"
HYDRA_APPS = {"train": "train", "eval": "evaluate"}
HYDRA_CONFIGS = {"train": "train", "evaluate": "eval"}  # app module -> the name of its config (csmri/conf)
# the argparse-style tools: command -> "module:function" taking the remaining arguments, returning the exit status
TOOLS = {
    "reproduce": "csmri.app.reproduce:main",
    "study": "csmri.app.study:main",
    "data": "csmri.app.data:main",
    "reconstruct": "csmri.app.reconstruct:main",
    "export": "csmri.app.export:main",
    "compare": "csmri.app.compare:main",
    "readers": "csmri.app.readers:main",
}
SUBCOMMANDS = ("data", "readers")  # tools whose second word is a sub-command (`csmri data prepare`)
COMMANDS = (*HYDRA_APPS, *TOOLS)
COMPLETION_FLAGS = ("-sc", "--shell-completion")


def _hydra(module: str, argv: list[str]) -> int:
    """Run the Hydra app of ``csmri.<module>`` with ``argv`` as its command line.

    Lightning relaunches DDP workers with this process's command line plus Hydra overrides; the app's
    own file as ``argv[0]`` and ``$CSMRI_HYDRA_APP`` make those relaunches run the same app again.
    """
    import importlib

    app = importlib.import_module(f"csmri.app.{module}")
    # shell completion names the installed command (Hydra's script completes `csmri`, not a .py file)
    completing = any(a in COMPLETION_FLAGS or a.startswith("--shell-completion=") for a in argv)
    if not completing:
        _check_overrides(HYDRA_CONFIGS[module], argv)
    os.environ[HYDRA_APP_ENV] = module
    sys.argv = ["csmri" if completing else app.__file__, *argv]
    app.main()
    return 0


def _check_overrides(config_name: str, argv: list[str]) -> None:
    """Compose the app's config with ``argv`` once before Hydra runs it, so that a bad override (an unknown key, a
    config group option that does not exist) is a user error for :func:`main` to print as one line; Hydra would
    print its own report of it (advising ``+key=`` for a typo) and exit with status 1. Command lines with Hydra
    flags (``-m``, ``--cfg``, ``--help``...) or a ``hydra.mode`` override (sweeps), and errors that csmri does not
    recognise, are left to Hydra."""
    if any(arg.startswith(("-", "hydra.mode=")) for arg in argv):
        return
    from csmri.config import compose
    from csmri.errors import user_error

    try:
        compose(config_name, argv)
    except Exception as err:
        if user_error(err) is not None:
            raise


def _complete(argv: list[str]) -> int:
    """``csmri -sc query=bash`` from the completion script: complete the command word, or hand the line
    (without ``csmri <command>``) to that command's Hydra app."""
    words = os.environ.get("COMP_LINE", "").split()
    if len(words) >= 2 and words[1] in HYDRA_APPS and (len(words) > 2 or os.environ["COMP_LINE"].endswith(" ")):
        os.environ["COMP_LINE"] = " ".join(["csmri", *words[2:]]) + (" " if os.environ["COMP_LINE"][-1:] == " " else "")
        return _hydra(HYDRA_APPS[words[1]], argv)
    if any(a.startswith("query=") for a in argv):
        prefix = words[1] if len(words) == 2 and not os.environ.get("COMP_LINE", "").endswith(" ") else ""
        print(" ".join(c for c in COMMANDS if c.startswith(prefix)))
        return 0
    return _hydra("train", argv)


def main(argv: list[str] | None = None) -> int:
    """Run ``csmri <argv>`` and return the exit status.

    The one top-level handler: a user mistake raised by any command (a :class:`csmri.errors.CsmriError` or an
    error :func:`csmri.errors.user_error` recognises) ends as ``csmri <command>: error: ...`` plus a hint line on
    stderr and status 2; anything else keeps its traceback. (The Hydra apps report their own through
    :func:`csmri.app.guard.guarded`, inside Hydra.)
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _dispatch(argv)
    except Exception as err:
        from csmri.app.guard import report

        status = report(err, _prog(argv))
        if status is None:
            raise
        return status


def _prog(argv: list[str]) -> str:
    """``csmri reconstruct``, ``csmri data prepare``: the command words of ``argv``, for error messages."""
    if not argv or argv[0] not in TOOLS:
        return "csmri"
    words = argv[:2] if argv[0] in SUBCOMMANDS and len(argv) > 1 and argv[1].isidentifier() else argv[:1]
    return " ".join(["csmri", *words])


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0
    if argv[0] in {"--version", "-V", "version"}:
        from csmri import __version__

        print(f"csmri {__version__}")
        return 0
    if argv[0] in COMPLETION_FLAGS:
        return _complete(argv)
    command, rest = argv[0], argv[1:]
    if command in HYDRA_APPS:
        return _hydra(HYDRA_APPS[command], rest)
    if os.environ.get(HYDRA_APP_ENV) and "=" in command:  # a DDP worker relaunched by Lightning
        return _hydra(os.environ[HYDRA_APP_ENV], argv)
    if command in TOOLS:
        import importlib

        module, function = TOOLS[command].split(":")
        return getattr(importlib.import_module(module), function)(rest)
    print(f"csmri: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
