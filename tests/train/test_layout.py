"""The training package reads top-down: ``fit.py`` (the entry) over ``folds.py`` over
``ensemble.py`` over the single-model trainer, which knows nothing of the three. Imports are
read with ``ast`` (those inside functions too), so a lazy import cannot hide a cycle."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import leukonet.train

PACKAGE = Path(leukonet.train.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
ENTRY, FOLDS, ENSEMBLE = "leukonet.train.fit", "leukonet.train.folds", "leukonet.train.ensemble"
MAX_LINES = 400


def _imported(module):
    """Every module name ``leukonet.train.<module>`` imports, as absolute dotted names
    (``from leukonet.train import fit`` and ``from . import fit`` give ``leukonet.train.fit``)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = "leukonet.train".rsplit(".", node.level - 1)[0] if node.level > 1 else "leukonet.train"
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def _imports_any(module, banned):
    return sorted(name for name in _imported(module)
                  if any(name == b or name.startswith(b + ".") for b in banned))


def test_the_package_has_the_layout_these_tests_read():
    assert {"fit", "folds", "ensemble", "trainer"} <= set(MODULES)


@pytest.mark.parametrize("module", [m for m in MODULES if m not in ("fit", "folds", "ensemble")])
def test_the_single_model_trainer_knows_nothing_of_ensembles_folds_or_the_entry(module):
    assert _imports_any(module, (ENTRY, FOLDS, ENSEMBLE)) == []


def test_ensembles_never_import_the_entry_or_cross_validation():
    assert _imports_any("ensemble", (ENTRY, FOLDS)) == []


def test_cross_validation_never_imports_the_entry():
    assert _imports_any("folds", (ENTRY,)) == []


@pytest.mark.parametrize("module", MODULES)
def test_no_module_is_long(module):
    lines = len((PACKAGE / f"{module}.py").read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"leukonet/train/{module}.py: {lines} lines (at most {MAX_LINES})"


@pytest.mark.parametrize("module", MODULES)
def test_each_module_says_what_it_holds(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"leukonet/train/{module}.py has no module docstring"


def test_importing_the_entry_stays_light():
    """``import leukonet.train.fit`` loads no Keras (nor TensorFlow): a finished ``--resume``
    or a one-line error needs neither."""
    code = ("import sys, leukonet.train.fit; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
