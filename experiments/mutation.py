"""`make mutation`: mutation testing of the science-critical modules with mutmut, and the kill rate per module.

    python -m experiments.mutation [physics losses metrics lit eval gan] [--jobs N] [--fresh] [--report]
                                    [--retest REGEX] [--only PATTERN ...] [--json PATH]

mutmut (3.x) rewrites every function of the mutated files many times over (``<`` to ``<=``, a constant plus one, an
argument dropped, ...) and runs, for each mutant, the tests that call the function; a mutant is *killed* when one of
them fails, *survives* when all pass. A survivor is either a behaviour no test pins down or an equivalent mutant
(a change with no observable effect). The kill rate is killed / (killed + survived + timeout); mutants no test
reaches ("no tests") are counted apart, as they say where coverage is missing rather than where tests are weak.

Each module is mutated against its own tests (``MODULES`` below), in a scratch copy of the tracked files
(``.mutation/<module>/``), so the working tree is never touched and results persist between runs: rerunning only
tests what changed (``--fresh`` starts over). Survivors are listed in ``.mutation/<module>/survivors.txt``; inspect
one with ``cd .mutation/<module> && ../../.venv/bin/mutmut show <name>``. Not part of ``make test``: a full run takes
hours on two CPU cores.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".mutation"

# module -> the tests that exercise it (mutmut picks, per mutated function, those of them that call it)
MODULES: dict[str, list[str]] = {
    "physics": ["tests/physics", "tests/data/test_datamodule.py"],
    "losses": [
        "tests/losses",
        "tests/lit/test_gan_training.py",
        "tests/lit/test_stage2.py",
        "tests/lit/test_baselines.py",
        "tests/models/test_segnet.py",  # the segmentation losses
    ],
    "metrics": ["tests/metrics", "tests/eval/test_runner.py"],
    "lit": ["tests/lit"],
    "eval": ["tests/eval"],
    # the adversarial training steps again, against only the focused tests that pin them (the hand mutants' list):
    # under "lit" each of their mutants runs every training test that calls the step, minutes per mutant
    "gan": [
        "tests/lit/test_gan_training.py",
        "tests/lit/test_no_target_leak.py",
        "tests/lit/test_stage2.py",
        "tests/lit/test_stage1.py",
        "tests/lit/test_baselines.py",
        "tests/lit/test_resume.py",
        "tests/lit/test_shipped_defaults.py",
        "tests/lit/test_selection_metrics.py",
        "tests/app/test_lean_checkpoints.py",  # best.ckpt (D and the replay buffer left out) loads strictly
        "tests/losses/test_dagan_terms.py",
        "tests/losses/test_visual_losses.py",
    ],
}
# module -> what it mutates, where that is not ``csmri/<module>/*``
MUTATED: dict[str, list[str]] = {
    "gan": [f"csmri/lit/{name}.py" for name in ("gan", "replay", "adversarial", "refinement", "reconstruction")],
}
KILLED, SURVIVED = ("killed", "timeout", "segfault"), ("survived", "suspicious")
KEPT = ("mutants/", ".pytest_cache/", "survivors.txt")  # mutmut's state and ours, kept when the copy is synced
_RESULT_LINE = re.compile(r"^\s*(?P<name>\S+): (?P<status>[a-z ]+)$")


def tracked_files() -> list[str]:
    """The repository's tracked files plus untracked, not-ignored ones (a run mutates the tree as it is now)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if line and (ROOT / line).is_file()]


def sync_copy(dest: Path) -> None:
    """Mirror the tracked tree into ``dest``: copy what changed, delete what is gone (mutmut's own state is kept)."""
    wanted = set(tracked_files())
    for rel in wanted:
        src, dst = ROOT / rel, dest / rel
        if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    for path in dest.rglob("*"):
        rel = path.relative_to(dest).as_posix()
        if path.is_file() and not rel.startswith(KEPT) and rel not in wanted:
            if "__pycache__" not in rel:
                path.unlink()


def mutated_paths(module: str) -> list[str]:
    """The globs of the files ``module`` mutates."""
    return MUTATED.get(module, [f"csmri/{module}/*"])


def mutmut_config(module: str) -> str:
    """The ``[tool.mutmut]`` table for one module (appended to the scratch copy's pyproject.toml)."""
    tests = ", ".join(f'"{t}"' for t in MODULES[module])
    mutated = ", ".join(f'"{path}"' for path in mutated_paths(module))
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["csmri/"]\n'
        f"only_mutate = [{mutated}]\n"
        f"pytest_add_cli_args_test_selection = [{tests}]\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\n'
        # torch is not fork-safe once a test has run in the parent: fork workers from a clean server
        'process_isolation = "forkserver"\n'
    )


PROTECTED_INIT = "# pragma: no mutate block"


def protect_constructors(path: Path) -> bool:
    """Exclude every ``__init__`` in ``path`` from mutation (mutmut's block pragma on its header); True if it changed.

    mutmut replaces each mutated function by a ``(self, *args, **kwargs)`` trampoline, and Lightning's
    ``save_hyperparameters()`` reads the constructor's signature and frame: a LightningModule with a mutated
    ``__init__`` records ``args``/``kwargs`` as its hyperparameters and every test of it fails for that reason alone.
    Only the scratch copy is edited.
    """
    import libcst as cst

    class Protect(cst.CSTTransformer):
        def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
            body = updated.body
            if updated.name.value != "__init__" or not isinstance(body, cst.IndentedBlock) or body.header.comment:
                return updated
            header = body.header.with_changes(
                whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(PROTECTED_INIT)
            )
            return updated.with_changes(body=body.with_changes(header=header))

    source = path.read_text()
    protected = cst.parse_module(source).visit(Protect()).code
    if protected != source:
        path.write_text(protected)
    return protected != source


def refresh_unmutated(work: Path) -> None:
    """Make mutmut copy again what it only copies once: its ``mutants/`` tree keeps the configs, tests and data files of
    the first run (and modules deleted since), so a later run would test today's code against yesterday's configs.
    Kept: the mutated sources (mutmut regenerates the changed ones) and mutmut's records of them (``*.meta``,
    ``*.spans``, the stats)."""
    mutants = work / "mutants"
    for path in sorted(mutants.rglob("*"), reverse=True) if mutants.is_dir() else []:
        rel = path.relative_to(mutants)
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
            continue
        source = work / rel.with_suffix("") if path.suffix in (".meta", ".spans") else work / rel
        mutated_source = rel.parts[0] == "csmri" and rel.suffix in (".py", ".meta", ".spans")
        if rel.name == "mutmut-stats.json" or (mutated_source and source.is_file()):
            continue
        path.unlink()


def prepare(module: str, fresh: bool) -> Path:
    work = SCRATCH / module
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    sync_copy(work)
    refresh_unmutated(work)
    if module in ("lit", "gan"):
        for path in sorted((work / "csmri" / "lit").rglob("*.py")):
            protect_constructors(path)
    pyproject = work / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + mutmut_config(module))
    return work


def mutmut(work: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "WANDB_MODE": "disabled", "CSMRI_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(exe), *args], cwd=work, env=env, text=True, capture_output=capture)


def read_results(work: Path) -> dict[str, str]:
    """mutant name -> status, from ``mutmut results --all true``."""
    out = mutmut(work, "results", "--all", "true", capture=True).stdout
    results = {}
    for line in out.splitlines():
        match = _RESULT_LINE.match(line)
        if match:
            results[match["name"]] = match["status"]
    return results


def summarise(module: str, results: dict[str, str]) -> dict[str, float | int | str]:
    counts = Counter(results.values())
    killed = sum(counts[s] for s in KILLED)
    survived = sum(counts[s] for s in SURVIVED)
    scored = killed + survived
    return {
        "module": module if module in MUTATED else f"csmri/{module}",
        "mutants": len(results),
        "killed": killed,
        "survived": survived,
        "no_tests": counts["no tests"],
        "not_checked": counts["not checked"],  # a run stopped early (the rate is over the mutants tested so far)
        "other": len(results) - scored - counts["no tests"] - counts["not checked"],
        "kill_rate": round(killed / scored, 3) if scored else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants tested in parallel")
    parser.add_argument("--fresh", action="store_true", help="discard earlier results and start over")
    parser.add_argument("--report", action="store_true", help="summarise the results so far without running")
    parser.add_argument(
        "--retest",
        metavar="REGEX",
        help="run again only the survivors whose name matches REGEX (e.g. after adding tests; '.' = all of them)",
    )
    parser.add_argument(
        "--only",
        metavar="PATTERN",
        nargs="+",
        help="test only the mutants whose name matches one of these fnmatch patterns (e.g. 'csmri.lit.refinement.*')",
    )
    parser.add_argument("--json", type=Path, default=SCRATCH / "summary.json", help="where the summary goes")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    args.modules = args.modules or list(MODULES)

    rows = []
    for module in args.modules:
        start = time.monotonic()
        rc = 0
        if args.report:
            work = SCRATCH / module
            if not work.is_dir():
                parser.error(f"no results for {module} yet: run `make mutation MODULES={module}` first")
        else:
            work = prepare(module, args.fresh)
            names = list(args.only or [])
            if args.retest:
                survivors = (work / "survivors.txt").read_text().split() if (work / "survivors.txt").is_file() else []
                names = [name for name in survivors if re.search(args.retest, name)]
                if args.only:
                    names = [name for name in names if any(fnmatch.fnmatch(name, pat) for pat in args.only)]
                print(f"== csmri/{module}: {len(names)} of {len(survivors)} survivors to test again")
            print(f"== csmri/{module}: mutmut run in {work.relative_to(ROOT)} (tests: {' '.join(MODULES[module])})")
            if names or not args.retest:
                rc = mutmut(work, "run", "--max-children", str(args.jobs), *names).returncode
        results = read_results(work)
        row = summarise(module, results) | {"seconds": round(time.monotonic() - start), "mutmut_rc": rc}
        survivors = sorted(name for name, status in results.items() if status in SURVIVED)
        (work / "survivors.txt").write_text("".join(f"{name}\n" for name in survivors))
        rows.append(row)

    header = ("mutants", "killed", "survived", "no_tests", "not_checked", "other")
    print(f"\n{'module':<16}" + "".join(f"{h.replace('_', ' '):>12}" for h in header) + f"{'kill rate':>11}")
    for row in rows:
        print(f"{row['module']:<16}" + "".join(f"{row[h]:>12}" for h in header) + f"{row['kill_rate']:>11.1%}")
    previous = json.loads(args.json.read_text()) if args.json.exists() else {}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(previous | {row["module"]: row for row in rows}, indent=2) + "\n")
    print(f"summary: {args.json}; survivors: .mutation/<module>/survivors.txt")
    return 0 if all(row["mutmut_rc"] == 0 for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
