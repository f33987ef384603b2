"""Which way the package's imports point, read from the source (nothing is imported or run).

- ``csmri/app/`` is the command-line layer: the only one that parses arguments, composes configs (besides
  ``csmri.config`` itself, their one owner, and the runner of the declared pipeline, ``csmri/pipeline/``, whose job
  is to compose each stage's config) or exits.
- Every exception class is defined in ``csmri/errors.py``, which imports nothing from csmri, so any module can
  import it without a cycle.
- The LightningModules (``csmri/lit``) do not import the data modules; one device helper (``csmri.device``).
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

import csmri
import csmri.errors

PACKAGE = Path(csmri.__file__).resolve().parent
CLI_LAYER = ("app/", "__main__.py")  # relative to the package
COMPOSERS = ("config.py", "pipeline/")  # the owner of composition, and the runner that composes each stage
EXCEPTIONS = {
    n
    for n in dir(builtins)
    if isinstance(getattr(builtins, n), type) and issubclass(getattr(builtins, n), BaseException)
}
EXCEPTIONS |= {n for n in csmri.errors.__all__ if isinstance(getattr(csmri.errors, n), type)}


def modules() -> dict[str, ast.Module]:
    """Every module of the package by its path relative to ``csmri/`` (``app/cli.py``), parsed."""
    return {str(p.relative_to(PACKAGE)): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(tree: ast.Module) -> set[str]:
    """Every module a tree imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``), at any depth."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def below_cli() -> dict[str, ast.Module]:
    return {path: tree for path, tree in modules().items() if not path.startswith(CLI_LAYER)}


def test_errors_module_imports_nothing_from_csmri():
    tree = modules()["errors.py"]
    assert not {m for m in imported_modules(tree) if m == "csmri" or m.startswith("csmri.")}


def test_every_exception_class_is_defined_in_the_errors_module():
    elsewhere = []
    for path, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and path != "errors.py":
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & EXCEPTIONS:
                    elsewhere.append(f"{path}: {node.name}")
    assert not elsewhere, "exception classes belong in csmri/errors.py"


def test_nothing_below_the_cli_layer_imports_it():
    importing = [p for p, tree in below_cli().items() if any(m.startswith("csmri.app") for m in imported_modules(tree))]
    assert not importing


def test_no_argument_parsing_below_the_cli_layer():
    parsing = [path for path, tree in below_cli().items() if {"argparse", "click", "typer"} & imported_modules(tree)]
    assert not parsing


@pytest.mark.parametrize("composer", ["csmri.config.compose", "hydra.compose", "hydra.initialize_config_module"])
def test_no_config_composition_below_the_cli_layer(composer):
    below = {p: tree for p, tree in below_cli().items() if not p.startswith(COMPOSERS)}
    composing = [p for p, tree in below.items() if composer in imported_modules(tree)]
    assert not composing


def exits(node: ast.AST) -> bool:
    """``raise SystemExit(...)``, ``sys.exit(...)``, ``os._exit(...)``, ``exit()`` or ``quit()``."""
    if isinstance(node, ast.Raise) and node.exc is not None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        return isinstance(exc, ast.Name) and exc.id == "SystemExit"
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return func.id in {"exit", "quit"}
        module = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
        return module in {"sys", "os"} and func.attr in {"exit", "_exit"}
    return False


def test_no_exit_below_the_cli_layer():
    exiting = [f"{path}:{node.lineno}" for path, tree in below_cli().items() for node in ast.walk(tree) if exits(node)]
    assert not exiting


def test_lightning_modules_do_not_import_the_data_package():
    lit = {p: t for p, t in modules().items() if p.startswith("lit/")}
    assert not [p for p, tree in lit.items() if any(m.startswith("csmri.data") for m in imported_modules(tree))]


def test_one_device_helper():
    defined = [
        path
        for path, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "resolve_device"
    ]
    assert defined == ["device.py"]
