"""Packaging conventions: licence files, the SCons entry point, the eups table."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_licence_files_name_the_project_licence():
    assert "GNU GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_text().splitlines()[0]
    assert "Version 3" in (ROOT / "LICENSE").read_text()
    assert "GPL-3.0-or-later" in (ROOT / "COPYRIGHT").read_text()
    assert 'license = "GPL-3.0-or-later"' in (ROOT / "pyproject.toml").read_text()


def test_sconstruct_plans_the_extension_build_and_the_tests():
    scons = shutil.which("scons", path=str(Path(sys.executable).parent))
    assert scons is not None, "scons is a test dependency (pyproject.toml, extra 'test')"
    # A dry run (-n) parses SConstruct and lists the commands without running them.
    out = subprocess.run(
        [scons, "-n", "-Q", "--implicit-deps-changed", "tests"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "setup.py -q build_ext --inplace" in out
    assert "-m pytest" in out


def test_eups_table_lists_the_middleware():
    table = (ROOT / "ups" / "galmix.table").read_text()
    for product in ("pipe_base", "daf_butler", "images", "pybind11"):
        assert f"setupRequired({product})" in table
