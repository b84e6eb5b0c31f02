"""Imports point down: no smartfrz module imports a layer above its own (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "smartfrz"

LAYERS: list[set[str]] = [
    {"_version", "utils", "cadence", "train_context"},
    {"traces"},
    {"ops", "layers"},
    {"blocks"},
    {"zoo", "predictor", "runtime"},  # the runtime takes a predictor object; it does not import the predictor
    {"collection"},
    {"calibration"},
    {"bench"},
    {"cli"},  # the `smartfrz` command: one module per subcommand over the layers below
    {"collect", "fit_predictor", "pipeline"},  # `python -m` entry points, thin wrappers over cli
]
"""Bottom to top. A unit is a top-level module or subpackage; an unlisted one (an entry point) is above all.
A ``__main__`` module is an entry point too, wherever it lives (``bench.__main__`` wraps ``cli.bench``)."""

LAZY_EDGES = {("runtime.freezer", "predictor")}
"""Imports inside a function that resolve a name at the API edge (``Freezer(policy="default")``)."""


def _layer(unit: str) -> int:
    return next((i for i, units in enumerate(LAYERS) if unit in units), len(LAYERS))


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(imported smartfrz module without the prefix, imported at module level) for every import."""
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "smartfrz":
                names = [alias.name for alias in node.names]
            elif node.module.startswith("smartfrz."):
                names = [node.module.removeprefix("smartfrz.")]
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("smartfrz.") for a in node.names if a.name.startswith("smartfrz.")]
        found += [(name, id(node) in top) for name in names]
    return found


def _edges() -> list[tuple[str, str, bool]]:
    """(importing module, imported module, at module level) over the package, `__init__` excluded at the root."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        if module == "__init__":  # the lazy facade `smartfrz.X` sits above everything
            continue
        out += [(module, target, top) for target, top in _imports(ast.parse(path.read_text()))]
    return out


def _violations(edges: list[tuple[str, str, bool]]) -> list[str]:
    bad = []
    for module, target, top in edges:
        src, dst = module.split(".")[0], target.split(".")[0]
        if module.endswith("__main__") or src == dst or _layer(dst) < _layer(src):
            continue
        if not top and any(module == m and target.startswith(t) for m, t in LAZY_EDGES):
            continue
        bad.append(f"{module} (layer {_layer(src)}) imports {target} (layer {_layer(dst)})")
    return bad


def test_every_import_points_down():
    edges = _edges()
    assert len(edges) > 50  # the walk found the package's imports
    assert _violations(edges) == []


@pytest.mark.parametrize(
    ("edge", "ok"),
    [
        (("runtime.freezer", "predictor", False), True),
        (("runtime.freezer", "predictor", True), False),
        (("runtime.cache", "collection.tracer", True), False),
        (("predictor.probes", "collection.grid", True), False),
        (("zoo.models", "predictor", True), False),
        (("bench.train", "runtime", True), True),
    ],
)
def test_checker_flags_upward_and_sideways_imports(edge, ok):
    assert (_violations([edge]) == []) is ok


def test_op_schemas_are_defined_only_in_python():
    """csrc registers kernels only (TORCH_LIBRARY_IMPL); smartfrz/ops/_schemas.py holds the one definition."""
    sources = [p for p in (PACKAGE.parent / "csrc").rglob("*") if p.suffix in {".cpp", ".cu", ".h", ".cuh"}]
    assert sources
    for path in sources:
        text = path.read_text()
        assert "TORCH_LIBRARY(" not in text and "TORCH_LIBRARY_FRAGMENT(" not in text, path
        assert ".def(" not in text, path


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("code_version", "_version.py"),
        ("seed_everything", "utils/seed.py"),
        ("centred_unit_gram", "utils/gram.py"),
        ("to_device", "utils/batches.py"),
        ("Activation", "blocks.py"),
        ("WEIGHT_STAT_NAMES", "traces/schema.py"),
        ("STAT_NAMES", "traces/schema.py"),
        ("RunRecord", "traces/schema.py"),
    ],
)
def test_each_fact_is_defined_once(name, home):
    """A function, class or constant named ``name`` is defined in ``home`` only (imports may re-export it)."""
    homes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            defined = isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name
            assigned = isinstance(node, ast.Assign | ast.AnnAssign) and any(
                isinstance(t, ast.Name) and t.id == name
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
            literal = assigned and not isinstance(node.value, ast.Name)  # `X = Y` is an alias, not a copy
            if defined or literal:
                homes.append(path.relative_to(PACKAGE).as_posix())
    assert homes == [home]
