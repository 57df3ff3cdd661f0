"""Package structure: no name defined twice (nor again beside the C++ binding), ``tasks/`` holds
PipelineTasks only.

Both read the package's source with `ast`, so they check every module, imported or not.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import lsst.galmix

PACKAGE = Path(lsst.galmix.__file__).parent

ALLOWED_DUPLICATES = {"main"}
"""Names several modules may define: ``main`` is the command-line entry point of each module that has one
(``python -m``, ``[project.scripts]``), found by module, never imported by name."""


def _constant(name: str) -> bool:
    return name.lstrip("_").isupper()


def top_level_names(source: str) -> list[str]:
    """Classes, functions and constants (UPPER_CASE names) a module defines at its top level."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name) and _constant(t.id)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and _constant(node.target.id):
            names.append(node.target.id)
    return [n for n in names if not (n.startswith("__") and n.endswith("__"))]


def duplicate_names(sources: dict[str, str]) -> dict[str, list[str]]:
    """Names defined in more than one module (``{name: [module, ...]}``), allowed ones excepted."""
    where: dict[str, list[str]] = defaultdict(list)
    for module, source in sources.items():
        for name in set(top_level_names(source)):
            where[name].append(module)
    return {n: sorted(m) for n, m in where.items() if len(m) > 1 and n not in ALLOWED_DUPLICATES}


def package_sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_class_function_or_constant_is_defined_twice():
    duplicates = duplicate_names(package_sources())
    assert not duplicates, "defined in several modules (give each its own name or keep one):\n" + "\n".join(
        f"  {name}: {', '.join(modules)}" for name, modules in sorted(duplicates.items())
    )


def test_duplicate_scan_finds_planted_duplicates():
    sources = {
        "a.py": "class Moments:\n    pass\n\ndef _one_line(e):\n    return str(e)\n\nFLAGS = ()\n_log = None\n",
        "b.py": "from a import Moments\nMoments = 1\n\ndef _one_line(e):\n    return repr(e)\n\nFLAGS: dict = {}\n",
        "c.py": "def main():\n    return 0\n\n_log = None\n\ndef f():\n    def _one_line(e):\n        return e\n",
        "d.py": "def main():\n    return 1\n\n__all__ = ['main']\n",
    }
    # Moments: a class in a.py and (capitalised, but not UPPER_CASE) reassigned in b.py is not a constant.
    assert duplicate_names(sources) == {"_one_line": ["a.py", "b.py"], "FLAGS": ["a.py", "b.py"]}
    sources["b.py"] += "\nclass Moments:\n    pass\n"
    assert duplicate_names(sources)["Moments"] == ["a.py", "b.py"]


def test_no_python_name_repeats_a_binding_name():
    """A class or function of the package never takes a name the C++ binding already gives
    (``lsst.galmix._galmix``, re-exported by `lsst.galmix.engine`): two ``Profile`` classes, two
    ``FitResult`` classes or two ``render`` functions are two things under one name."""
    from lsst.galmix import _galmix

    binding = {n for n in dir(_galmix) if not n.startswith("_")}
    clashes = sorted(
        f"{module}: {name}"
        for module, source in package_sources().items()
        for name in top_level_names(source)
        if name in binding
    )
    assert not clashes, "names of the C++ binding defined again in Python:\n  " + "\n  ".join(clashes)


def _bases(node: ast.ClassDef) -> set[str]:
    return {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}


def test_tasks_package_holds_pipeline_tasks_only():
    """Every module of ``tasks/`` defines a PipelineTask (with its Config and Connections)."""
    for path in sorted((PACKAGE / "tasks").glob("*.py")):
        if path.name == "__init__.py":
            continue
        classes = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)]
        kinds = [_bases(c) for c in classes]
        assert any("PipelineTask" in k for k in kinds), f"tasks/{path.name} defines no PipelineTask"
        assert any("PipelineTaskConfig" in k for k in kinds), f"tasks/{path.name} defines no task config"
        # Connections derive from PipelineTaskConnections or from a shared base of lsst.galmix.connections.
        assert any(any(b.endswith("Connections") for b in k) for k in kinds), f"tasks/{path.name} defines no connections"
