"""`make mutation`'s bookkeeping: mutmut's result lines parsed, kill rates counted, the per-module mutmut table."""

from __future__ import annotations

import math

import tomllib

from experiments import mutation


def test_result_lines_are_parsed_and_counted():
    out = "\n".join(
        [
            "    csmri.physics.fft.x_fft2c__mutmut_1: killed",
            "    csmri.physics.fft.x_fft2c__mutmut_2: survived",
            "    csmri.physics.mask.xǁMaskǁdraw__mutmut_3: timeout",
            "    csmri.physics.mask.x_lines__mutmut_4: no tests",
            "    csmri.physics.mask.x_lines__mutmut_5: not checked",
            "    csmri.physics.mask.x_lines__mutmut_6: killed",
            "some other line mutmut prints",
        ]
    )
    results = {m["name"]: m["status"] for line in out.splitlines() if (m := mutation._RESULT_LINE.match(line))}
    assert len(results) == 6 and results["csmri.physics.mask.xǁMaskǁdraw__mutmut_3"] == "timeout"
    row = mutation.summarise("physics", results)
    # killed: 2 killed + 1 timeout; survived: 1; the rate leaves out untested and unreached mutants: 3 / 4
    assert (row["killed"], row["survived"], row["no_tests"], row["not_checked"], row["other"]) == (3, 1, 1, 1, 0)
    assert row["kill_rate"] == 0.75
    assert math.isnan(mutation.summarise("physics", {})["kill_rate"])


def test_each_module_is_mutated_against_its_own_tests():
    for module, tests in mutation.MODULES.items():
        table = tomllib.loads(mutation.mutmut_config(module))["tool"]["mutmut"]
        assert table["only_mutate"] == mutation.mutated_paths(module)
        assert all(list(mutation.ROOT.glob(pattern)) for pattern in table["only_mutate"]), module
        assert table["pytest_add_cli_args_test_selection"] == tests
        assert all((mutation.ROOT / t).exists() for t in tests), tests
    assert mutation.mutated_paths("physics") == ["csmri/physics/*"]
    # the training steps are mutated again, apart, against the focused tests the hand-made mutants run
    assert mutation.mutated_paths("gan") == [
        f"csmri/lit/{n}.py" for n in ("gan", "replay", "adversarial", "refinement", "reconstruction")
    ]


def test_constructors_are_kept_out_of_mutation_and_nothing_else(tmp_path, monkeypatch):
    """mutmut's trampolines hide a LightningModule's __init__ frame from save_hyperparameters(): the scratch copy's
    constructors carry mutmut's block pragma (which mutmut honours: no mutant is made there), other methods do not."""
    from mutmut.mutation.file_mutation import create_mutations

    source = (
        "class Module:\n"
        "    def __init__(\n"
        "        self,\n"
        "        lr: float = 1.0,\n"
        "    ) -> None:\n"
        "        self.lr = lr * 2\n"
        "\n"
        "    def step(self, x):\n"
        "        return x + 1\n"
    )
    path = tmp_path / "module.py"
    path.write_text(source)
    (tmp_path / "pyproject.toml").write_text('[tool.mutmut]\nsource_paths = ["module.py"]\n')
    monkeypatch.chdir(tmp_path)  # mutmut reads its configuration from the working directory
    assert mutation.protect_constructors(path)
    assert not mutation.protect_constructors(path)  # idempotent
    protected = path.read_text()
    assert f") -> None:  {mutation.PROTECTED_INIT}\n" in protected
    assert protected.count("pragma") == 1
    _, mutants, _, ignored_functions = create_mutations("module.py", protected)
    assert ignored_functions == {"__init__"}
    assert mutants  # step is still mutated
    _, unprotected_mutants, _, _ = create_mutations("module.py", source)
    assert len(unprotected_mutants) > len(mutants)


def test_mutmuts_one_time_copies_are_refreshed_and_its_records_kept(tmp_path):
    """mutmut copies configs, tests and data into ``mutants/`` once; a later run must see today's, and a module deleted
    since must go, while the mutated sources and mutmut's records of them stay."""
    work = tmp_path
    for rel in ("csmri/lit/a.py", "csmri/conf/x.yaml", "tests/test_a.py"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text("today")
    kept = ["csmri/lit/a.py", "csmri/lit/a.py.meta", "csmri/lit/a.py.spans", "mutmut-stats.json"]
    dropped = ["csmri/conf/x.yaml", "tests/test_a.py", "csmri/gone.py", "csmri/gone.py.meta"]
    for rel in kept + dropped:
        (work / "mutants" / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / "mutants" / rel).write_text("first run")
    mutation.refresh_unmutated(work)
    assert all((work / "mutants" / rel).is_file() for rel in kept)
    assert not any((work / "mutants" / rel).exists() for rel in dropped)


def test_every_hand_made_mutant_applies_once_and_changes_the_code():
    from experiments.hand_mutants import MUTANTS, apply
    from experiments.mutation import ROOT

    assert len({m.id for m in MUTANTS}) == len(MUTANTS)
    for mutant in MUTANTS:
        assert apply(mutant) != (ROOT / mutant.file).read_text(), mutant.id
