"""Column and flag names are built in `lsst.galmix.schema` only.

The scan reads every module of the package (outside ``lsst/galmix/schema/``) and turns each string that is
put together at run time (f-string, ``+`` with a string literal, ``%`` or ``.format`` on a literal,
``sep.join([...])`` of a literal list) into a pattern: its literal parts kept, every run-time part a
wildcard. A pattern that matches a column of one of galmix's tables (the names come from the schema
module itself, for every model) is a column name spelled outside the schema: a violation.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import lsst.galmix
import pytest
from lsst.galmix.models.definitions import MODELS
from lsst.galmix.schema import (
    object_columns,
    psf_columns,
    reference_column,
    reference_flux_column,
    source_columns,
    tract_columns,
)

PACKAGE = Path(lsst.galmix.__file__).parent
SCHEMA_PACKAGE = PACKAGE / "schema"
BANDS = ["g", "r", "i"]


def known_columns() -> set[str]:
    """Every column name of galmix's tables, for every model and a few bands."""
    names = {c.name for model in MODELS.values() for c in source_columns(model, BANDS)}
    names |= {c.name for c in psf_columns(4)}
    names |= set(object_columns(BANDS))
    names |= {c.name for c in tract_columns(BANDS)}
    names |= {reference_flux_column(b) for b in BANDS}
    names |= {reference_column(n) for n in ("ra", "dec", "is_pointsource", "objectId")}
    return names


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    pattern: str
    example: str


_WILD = None  # marks a run-time part of a built string
_PERCENT = re.compile(r"%(\([^)]*\))?[-+ #0]*\d*(\.\d+)?[sdifgeErx]")
_BRACES = re.compile(r"\{[^{}]*\}")


def _parts(node: ast.AST) -> list[str | None]:
    """Literal parts (str) and run-time parts (None) of a string expression."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [p for v in node.values for p in _parts(v)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _parts(node.left) + _parts(node.right)
    return [_WILD]


def _split(text: str, pattern: re.Pattern) -> list[str | None]:
    out: list[str | None] = []
    pos = 0
    for m in pattern.finditer(text):
        out += [text[pos : m.start()], _WILD]
        pos = m.end()
    return out + [text[pos:]]


def _built_string(node: ast.AST) -> list[str | None] | None:
    """Parts of a string built at run time by ``node``, or `None` if ``node`` builds no string."""
    if isinstance(node, ast.JoinedStr):
        return _parts(node)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Add):
            parts = _parts(node)
            return parts if any(isinstance(p, str) for p in parts) else None
        if isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
            return _split(node.left.value, _PERCENT)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = node.func.value
        if isinstance(owner, ast.Constant) and isinstance(owner.value, str):
            if node.func.attr == "format":
                return _split(owner.value, _BRACES)
            if node.func.attr == "join" and node.args and isinstance(node.args[0], (ast.List, ast.Tuple)):
                parts: list[str | None] = []
                for k, elt in enumerate(node.args[0].elts):
                    parts += ([owner.value] if k else []) + _parts(elt)
                return parts
    return None


def _regex(parts: list[str | None]) -> re.Pattern | None:
    """Pattern of a built string, or `None` when its literal text cannot be part of a column name pattern:
    no letter (``f"{a}_{b}"``), or no separator and no camel-case suffix (``f"pt{name}"``, ``"g" + sha``)."""
    literals = [p for p in parts if p]
    if not re.search(r"[A-Za-z]", "".join(literals)):
        return None
    if not any("_" in p or p[0].isupper() for p in literals):
        return None
    return re.compile("".join(".+" if p is None else re.escape(p) for p in parts))


def scan_source(source: str, path: str, columns: set[str]) -> list[Violation]:
    """Strings built in ``source`` that can produce one of ``columns``."""
    found: dict[tuple[int, str], Violation] = {}
    for node in ast.walk(ast.parse(source)):
        parts = _built_string(node)
        rx = _regex(parts) if parts is not None else None
        if rx is None:
            continue
        example = next((c for c in sorted(columns) if rx.fullmatch(c)), None)
        if example is not None:
            found.setdefault((node.lineno, rx.pattern), Violation(path, node.lineno, rx.pattern, example))
    return sorted(found.values(), key=lambda v: (v.path, v.line))


def scan_package(columns: set[str]) -> list[Violation]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if SCHEMA_PACKAGE in path.parents:
            continue
        out += scan_source(path.read_text(), str(path.relative_to(PACKAGE)), columns)
    return out


@pytest.fixture(scope="module")
def columns() -> set[str]:
    return known_columns()


def test_no_column_name_is_built_outside_the_schema(columns):
    violations = scan_package(columns)
    assert not violations, "column names built outside lsst.galmix.schema (use its functions):\n" + "\n".join(
        f"  {v.path}:{v.line}: /{v.pattern}/ builds e.g. {v.example!r}" for v in violations
    )


PLANTED = [
    ("def f(m, b):\n    return f'{b}_{m}Flux'\n", "g_sersicFlux"),
    ("def f(m):\n    return m + '_reffErr'\n", "sersic_reffErr"),
    ("def f(table, m):\n    return table[m.name + '_index']\n", "sersic_index"),
    ("def f(m):\n    return '%s_flag' % m\n", "sersic_flag"),
    ("def f(m, r):\n    return '{}_{}_flag'.format(m, r)\n", "sersic_no_data_flag"),
    ("def f(b, m):\n    return '_'.join([b, m, 'sky'])\n", "g_sersic_sky"),
    ("def f(i):\n    return f'psf_g{i}_frac'\n", "psf_g0_frac"),
    ("def f(b):\n    return f'{b}_initFlux'\n", "g_initFlux"),
    ("def f(r):\n    return f'detect_{r}_flag'\n", "detect_edge_flag"),
    ("def f(n):\n    return 'refcat_' + n\n", "refcat_ra"),
    ("def f(col):\n    return f'{col}Err'\n", "g_sersicFluxErr"),
]


@pytest.mark.parametrize(("source", "column"), PLANTED)
def test_scan_finds_planted_violations(columns, source, column):
    """Each way of building a name is caught, and the name it would build is a real column."""
    violations = scan_source(source, "planted.py", columns)
    assert len(violations) == 1 and violations[0].line == 2
    assert re.fullmatch(violations[0].pattern, column) and column in columns


def test_scan_finds_a_violation_planted_in_a_package_module(columns):
    """A real module of the package with one f-string added is reported at that line."""
    path = PACKAGE / "tasks" / "match_truth.py"
    source = path.read_text()
    assert not scan_source(source, path.name, columns)
    planted = source + "\n\ndef _planted(m):\n    return f'{m}_xErr'\n"
    (v,) = scan_source(planted, path.name, columns)
    assert v.line == len(planted.splitlines()) and v.example.endswith("_xErr")


def test_scan_passes_calls_into_the_schema_and_other_strings(columns):
    clean = """
from lsst.galmix.schema import error_column, flux_column, param_column
def f(table, m, b, spec, sb, n):
    x = table[param_column(m, "x")]
    e = table[error_column(flux_column(m, b))]
    label = f"reference {b} mag"
    title = f"{b}: {spec.model} - reference (mmag)"
    key = f"{m}_{b}"
    plot = f"matchedRefMagDiff_{b}"
    msg = "fitted %d objects" % n
    return x, e, label, title, key, plot, msg
"""
    assert scan_source(clean, "clean.py", columns) == []


def test_the_schema_module_itself_builds_names(columns):
    """The scan sees real builders: run on the schema module it finds the patterns of the names built there."""
    patterns = [v.pattern for path in SCHEMA_PACKAGE.glob("*.py")
                for v in scan_source(path.read_text(), path.name, columns)]
    for column in ("g_sersicFlux", "sersic_no_data_flag", "sersic_flag", "g_sersic_sky",
                   "psf_g0_frac", "psf_no_data_flag", "g_initFlux", "detect_edge_flag"):
        assert any(re.fullmatch(p, column) for p in patterns), column
