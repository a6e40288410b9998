"""The package's dependency rules (see the layout notes): imports run one way.

ops and hooks are leaves; models may use hooks; optvis reaches activations through hooks and never
imports models or analysis; weights uses hooks and ops; nothing in the core imports viz.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "circuits_vision"

# subpackage -> subpackages it must not import
FORBIDDEN = {
    "ops": {"hooks", "models", "optvis", "weights", "analysis", "stimuli", "atlas", "viz"},
    "hooks": {"ops", "models", "optvis", "weights", "analysis", "stimuli", "atlas", "viz"},
    "models": {"optvis", "weights", "analysis", "atlas", "viz"},
    "optvis": {"models", "weights", "analysis", "atlas", "viz"},
    "weights": {"models", "optvis", "analysis", "atlas", "viz"},
    "stimuli": {"models", "optvis", "weights", "analysis", "atlas", "viz"},
    "analysis": {"atlas", "viz"},
}


def _absolute_module(path: Path, node: ast.ImportFrom, package_root: Path) -> str:
    """The absolute dotted name a (possibly relative) `from ... import` refers to."""
    if node.level == 0:
        return node.module or ""
    parts = ["circuits_vision", *path.relative_to(package_root).parent.parts]
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path, package_root: Path = PACKAGE) -> list[tuple[str, list[str]]]:
    """``(module, names)`` for every import in ``path``: ``import a.b`` gives ``("a.b", [])``, ``from .x import y``
    gives the absolute module and ``["y"]``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((_absolute_module(path, node, package_root), [alias.name for alias in node.names]))
    return found


def _imported_names(path: Path, package_root: Path = PACKAGE) -> list[str]:
    """Every dotted name ``path`` imports: each module, and each ``module.name`` of a ``from`` import."""
    return [
        full for module, names in _imports(path, package_root) for full in [module] + [f"{module}.{n}" for n in names]
    ]


def _imported_subpackages(path: Path, package_root: Path = PACKAGE) -> set[str]:
    found = set()
    for name in _imported_names(path, package_root):
        parts = name.split(".")
        if parts[0] == "circuits_vision" and len(parts) > 1:
            found.add(parts[1])
    return found


@pytest.mark.parametrize("subpackage", sorted(FORBIDDEN))
def test_imports_run_one_way(subpackage):
    offenders = []
    for path in sorted((PACKAGE / subpackage).rglob("*.py")):
        bad = _imported_subpackages(path) & FORBIDDEN[subpackage]
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_checker_sees_imports(tmp_path):
    (tmp_path / "optvis").mkdir()
    sample = tmp_path / "optvis" / "sample.py"
    sample.write_text(
        "import circuits_vision.viz.grid\nfrom circuits_vision.models import load\nfrom ..analysis import tuning\nfrom . import x\n"
    )
    assert _imported_subpackages(sample, tmp_path) == {"viz", "models", "analysis", "optvis"}


def _private_imports(path: Path, package_root: Path = PACKAGE) -> list[str]:
    """Imports of another subpackage's private modules or names (``_x``) in ``path``."""
    own = path.relative_to(package_root).parts[0]
    found = []
    for module, names in _imports(path, package_root):
        parts = module.split(".")
        if parts[0] != "circuits_vision" or len(parts) < 2 or parts[1] == own:
            continue
        if any(p.startswith("_") for p in parts[1:]) or any(n.startswith("_") for n in names):
            found.append(f"{module}: {names}")
    return found


def test_compat_uses_only_public_names():
    offenders = []
    for path in sorted((PACKAGE / "compat").rglob("*.py")):
        offenders += [f"{path.relative_to(PACKAGE)} imports {bad}" for bad in _private_imports(path)]
    assert not offenders, "\n".join(offenders)


def test_private_import_checker_sees_them(tmp_path):
    (tmp_path / "compat").mkdir()
    sample = tmp_path / "compat" / "sample.py"
    sample.write_text(
        "from circuits_vision.optvis._session import x\nfrom circuits_vision.optvis import _x, render\n"
        "from circuits_vision.compat import _mine\nimport circuits_vision.hooks\n"
    )
    assert _private_imports(sample, tmp_path) == [
        "circuits_vision.optvis._session: ['x']",
        "circuits_vision.optvis: ['_x', 'render']",
    ]


def _nested_private_imports(path: Path, package_root: Path = PACKAGE) -> list[str]:
    """Private (``_name``) modules of another package, at any depth, that ``path`` imports (a sibling module of
    ``analysis`` reaching into ``analysis.equivariance._x`` counts)."""
    own = ".".join(["circuits_vision", *path.relative_to(package_root).parent.parts])
    found = []
    for name in _imported_names(path, package_root):
        parts = name.split(".")
        for depth, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__") and depth > 0:
                parent = ".".join(parts[:depth])
                if parent != own and parent.startswith("circuits_vision"):
                    found.append(name)
                break
    return found


def test_no_room_imports_the_equivariance_subpackage_private_modules():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "equivariance" in path.relative_to(PACKAGE).parts:
            continue
        bad = [n for n in _nested_private_imports(path) if n.startswith("circuits_vision.analysis.equivariance._")]
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE)} imports {bad}")
    assert not offenders, "\n".join(offenders)


def test_nested_private_import_checker_sees_them(tmp_path):
    (tmp_path / "atlas").mkdir()
    sample = tmp_path / "atlas" / "sample.py"
    sample.write_text(
        "from circuits_vision.analysis.equivariance._kernels import unit_kernels\n"
        "from circuits_vision.analysis.equivariance import report\nfrom . import _own\n"
    )
    assert _nested_private_imports(sample, tmp_path) == [
        "circuits_vision.analysis.equivariance._kernels",
        "circuits_vision.analysis.equivariance._kernels.unit_kernels",
    ]


# Top-level modules every subpackage may use; they import nothing from the package themselves.
LEAVES = ("_utils", "errors", "results")


def test_no_subpackage_imports_another_subpackage_private_names():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE:
            continue
        bad = [b for b in _private_imports(path) if not b.startswith("circuits_vision._utils:")]
        offenders += [f"{path.relative_to(PACKAGE)} imports {b}" for b in bad]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_modules_import_nothing_from_the_package(leaf):
    path = PACKAGE / f"{leaf}.py"
    assert not _imported_subpackages(path), f"{leaf}.py imports {sorted(_imported_subpackages(path))}"


def test_the_leaf_helpers_have_one_home():
    # Each helper is defined once, in circuits_vision/_utils.py, and used from there (compat, which may
    # use only public names, calls html.escape itself).
    import re

    patterns = {
        "HTML escaping": re.compile(r"def _e\(|escape\(str\("),
        "the first line of an error": re.compile(r"str\(error\)\.strip\(\)\.splitlines\(\)"),
        "int pairs": re.compile(
            r"\(int\(size\), int\(size\)\) if isinstance|def size_pair\(size: int \| tuple|utils\._pair\("
        ),
        "restoring the training mode": re.compile(r"was_training = model\.training"),
    }
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_utils.py" or path.relative_to(PACKAGE).parts[0] == "compat":
            continue
        text = path.read_text()
        offenders += [f"{path.relative_to(PACKAGE)}: {what}" for what, p in patterns.items() if p.search(text)]
    assert not offenders, "\n".join(offenders)


def test_private_names_checker_allows_only_the_leaf_helpers(tmp_path):
    (tmp_path / "atlas").mkdir()
    sample = tmp_path / "atlas" / "sample.py"
    sample.write_text("from circuits_vision._utils import first_line\nfrom circuits_vision.ops._reference import x\n")
    found = [b for b in _private_imports(sample, tmp_path) if not b.startswith("circuits_vision._utils:")]
    assert found == ["circuits_vision.ops._reference: ['x']"]
