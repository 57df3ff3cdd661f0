"""Pipeline faults on the CI repository: each ends with the healthy quanta and bands complete, one row
per detected object and a WARNING naming the bad input.

One repository (CI size, bands g, r, i) is built for the module and run through detection, PSF fits,
the Sersic fit and tract consolidation:

- ``faults/a``: the reference run (4 patches);
- ``faults/b``: a second clean run of patch 0 into another collection: identical tables;
- ``faults/k``: a run killed with SIGKILL inside a fit quantum, then resumed with
  ``--extend-run --skip-existing``: tables identical to ``faults/a``;
- ``faults/f``: one run with four faults, one per patch: patch 0's r coadd removed from the repository,
  patch 1's i image all NaN, patch 2's g coadd file truncated on disk, patch 3 with nothing to detect.

Then the command-line tools on a missing repository, collection and unwritable output.
"""

import importlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from lsst.daf.butler import Butler
from lsst.galmix.demo import pipetask_command, pipetask_executable
from lsst.galmix.sim.make_repo import make_repo

BANDS = "gri"
TRACT = {"skymap": "galmix_sim", "tract": 0}
PIPELINE = ("resource://lsst.galmix/pipelines/galmix_ci.yaml"
            "#detectCoaddSources,fitCoaddPsf,fitCoaddMultibandSersic,consolidateTract")
CONFIG = ["-c", "parameters:models=[sersic]", "-c", f"fitCoaddMultibandSersic:bands=[{','.join(BANDS)}]",
          "-c", f"detectCoaddSources:expectedBands=[{','.join(BANDS)}]"]
FAULT_INPUT = "faults/input"


def _run(repo: str, output: str, log: Path, where: str | None = None, inputs: str = "galmix/sim",
         extra: list[str] | None = None) -> str:
    """``pipetask run`` of `PIPELINE`; fails the test with the end of the log if pipetask fails."""
    argv = pipetask_command(repo, output, PIPELINE, 1, [*CONFIG, *(["-d", where] if where else []), *(extra or [])])
    argv[argv.index("-i") + 1] = inputs
    with open(log, "w") as fh:
        proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, check=False)
    text = log.read_text()
    assert proc.returncode == 0, "\n".join(text.splitlines()[-30:])
    return text


def _kill_and_resume(repo: str, output: str, log: Path) -> tuple[str, str]:
    """Run, SIGKILL pipetask while it executes a fit quantum, then resume; return both logs."""
    argv = pipetask_command(repo, output, PIPELINE, 1, CONFIG)
    with open(log, "w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "executing quantum for label=fitCoaddMultibandSersic" not in log.read_text():
            assert proc.poll() is None, "pipetask ended before reaching a fit quantum"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # inside the fit
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed = log.read_text()
    resumed = _run(repo, output, log.with_name(log.stem + "_resumed.log"),
                   extra=["--extend-run", "--skip-existing"])
    return killed, resumed


def _tables(butler: Butler, collection: str, patches) -> dict:
    out = {}
    for patch in patches:
        data_id = TRACT | {"patch": patch}
        out[("objects", patch)] = butler.get("galmix_objects", data_id, collections=collection)
        out[("sersic", patch)] = butler.get("galmix_sersic_patch", data_id, collections=collection)
        for band in BANDS:
            out[("psf", patch, band)] = butler.get("galmix_psf_fits", data_id | {"band": band},
                                                  collections=collection)
    return out


def _assert_same(a, b) -> None:
    """Identical tables, per-object timing columns aside."""
    assert a.colnames == b.colnames and len(a) == len(b)
    for name in a.colnames:
        if name.endswith("_time"):
            continue
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    repo = str(root / "repo")
    make_repo(repo, size="ci", bands=BANDS, seed=1)
    logs = {"a": _run(repo, "faults/a", root / "a.log")}
    logs["b"] = _run(repo, "faults/b", root / "b.log", where="skymap = 'galmix_sim' AND tract = 0 AND patch = 0")
    logs["k_killed"], logs["k_resumed"] = _kill_and_resume(repo, "faults/k", root / "k.log")

    writer = Butler.from_config(repo, writeable=True)
    writer.collections.register(FAULT_INPUT)
    nan_band = writer.get("deep_coadd_cell", TRACT | {"patch": 1, "band": "i"}, collections="galmix/sim")
    nan_band.image.array[...] = np.nan
    writer.put(nan_band, "deep_coadd_cell", TRACT | {"patch": 1, "band": "i"}, run=FAULT_INPUT)
    for band in BANDS:
        empty = writer.get("deep_coadd_cell", TRACT | {"patch": 3, "band": band}, collections="galmix/sim")
        empty.image.array[...] = 0.0
        writer.put(empty, "deep_coadd_cell", TRACT | {"patch": 3, "band": band}, run=FAULT_INPUT)
    removed = writer.find_dataset("deep_coadd_cell", TRACT | {"patch": 0, "band": "r"}, collections="galmix/sim")
    writer.pruneDatasets([removed], disassociate=True, unstore=True, purge=True)
    truncated = writer.getURI("deep_coadd_cell", TRACT | {"patch": 2, "band": "g"}, collections="galmix/sim")
    with open(truncated.ospath, "r+b") as fh:
        fh.truncate(os.path.getsize(truncated.ospath) // 2)
    logs["f"] = _run(repo, "faults/f", root / "f.log", inputs=f"{FAULT_INPUT},galmix/sim")
    return repo, logs, truncated.ospath


@pytest.fixture(scope="module")
def butler(runs):
    return Butler.from_config(runs[0])


@pytest.fixture(scope="module")
def reference(butler):
    return _tables(butler, "faults/a", range(4))


def test_reference_run_has_one_row_per_object(butler, reference):
    tract = butler.get("objectTable_tract_galmix", TRACT, collections="faults/a")
    n = 0
    for patch in range(4):
        objects, fits = reference[("objects", patch)], reference[("sersic", patch)]
        assert len(objects) > 20
        np.testing.assert_array_equal(fits["objectId"], objects["objectId"])
        n += len(objects)
    assert len(tract) == n


def test_two_runs_give_identical_tables(butler, reference):
    again = _tables(butler, "faults/b", [0])
    for key, table in again.items():
        _assert_same(table, reference[key])


def test_killed_run_resumes_to_identical_tables(runs, butler, reference):
    _, logs, _ = runs
    # The kill happened inside a fit quantum; the resumed run ran only what was left (measured: the four
    # fits and the consolidation of the 21 quanta), not the quanta that had finished.
    assert " 0 failed and 0 remain out of" not in logs["k_killed"]
    done = re.findall(r"Executed (\d+) quanta successfully, 0 failed and 0 remain out of total (\d+) quanta",
                      logs["k_resumed"])
    assert len(done) == 1 and done[0][0] == done[0][1] and 2 <= int(done[0][1]) < 21, done
    assert "Traceback" not in logs["k_resumed"]
    resumed = _tables(butler, "faults/k", range(4))
    for key, table in resumed.items():
        _assert_same(table, reference[key])
    _assert_same(butler.get("objectTable_tract_galmix", TRACT, collections="faults/k"),
                 butler.get("objectTable_tract_galmix", TRACT, collections="faults/a"))


def _warnings(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("WARNING") and "lsst.utils.packages" not in line]


def test_faulty_run_completes_every_quantum(runs):
    log = runs[1]["f"]
    assert "0 failed" in log and "Traceback" not in log and "ERROR" not in log


def _matched(reference_objects, objects, tol: float = 1.0) -> np.ndarray:
    """Index into ``objects`` of each reference object (-1: not detected within ``tol`` pixels)."""
    out = np.full(len(reference_objects), -1)
    if len(objects) == 0:
        return out
    for k, (x, y) in enumerate(zip(reference_objects["x"], reference_objects["y"])):
        d = np.hypot(np.asarray(objects["x"]) - x, np.asarray(objects["y"]) - y)
        if d.min() < tol:
            out[k] = int(np.argmin(d))
    return out


@pytest.mark.parametrize(("patch", "band", "message"), [
    (0, "r", "Patch 0 has no coadd in bands r"),
    (1, "i", "Band i of patch 1 has no usable pixel"),
    (2, "g", "Band g of patch 2: cannot read deep_coadd_cell (FileIntegrityError"),
])
def test_bad_band_is_a_missing_band(runs, butler, reference, patch, band, message):
    log = runs[1]["f"]
    assert any(message in line for line in _warnings(log)), message
    data_id = TRACT | {"patch": patch}
    objects = butler.get("galmix_objects", data_id, collections="faults/f")
    fits = butler.get("galmix_sersic_patch", data_id, collections="faults/f")
    np.testing.assert_array_equal(fits["objectId"], objects["objectId"])  # one row per detected object
    assert np.isnan(fits[f"{band}_sersicFlux"]).all() and fits["sersic_missing_band_flag"].all()
    # Healthy objects (unflagged, S/N >= 10 in the healthy bands in the reference run) are detected again
    # and fitted in the healthy bands. Fainter ones may need the lost band to be detected at all (measured: 69%, 85%
    # and 96% of all reference detections of patches 0, 1, 2 are found again within 1 pixel).
    ref_objects, ref_fits = reference[("objects", patch)], reference[("sersic", patch)]
    healthy = BANDS.replace(band, "")
    sn = np.sqrt(sum(np.nan_to_num(np.asarray(ref_fits[f"{b}_sersicFlux"] / ref_fits[f"{b}_sersicFluxErr"]))
                     ** 2 for b in healthy))
    # A reference row whose fit failed is no healthy object (e.g. a deblended child the fit flagged).
    healthy_rows = (sn >= 10) & ~np.asarray(ref_fits["sersic_flag"])
    match = np.where(healthy_rows, _matched(ref_objects, objects, tol=4.0), -2)
    assert (match != -1).all(), f"{(match == -1).sum()} of {healthy_rows.sum()} healthy objects lost"
    for other in healthy:
        was = np.isfinite(ref_fits[f"{other}_sersicFlux"]) & (match >= 0)
        now = np.isfinite(np.asarray(fits[f"{other}_sersicFlux"])[match[was]])
        assert now.all(), f"{(~now).sum()} of {was.sum()} healthy {other} fluxes lost"
        # The healthy bands' PSF quanta ran as before.
        _assert_same(butler.get("galmix_psf_fits", data_id | {"band": other}, collections="faults/f"),
                     reference[("psf", patch, other)])


def test_truncated_file_is_named_and_its_psf_quantum_skipped(runs, butler):
    log, path = runs[1]["f"], runs[2]
    lines = [line for line in _warnings(log) if "fitCoaddPsf" in line and "patch: 2" in line]
    assert any("cannot read deep_coadd_cell.psf" in line and path in line for line in lines), lines
    assert butler.query_datasets("galmix_psf_fits", collections="faults/f", explain=False,
                                 where="skymap = 'galmix_sim' AND tract = 0 AND patch = 2 AND band = 'g'") == []


def test_patch_without_detections_and_tract_table(runs, butler):
    objects = butler.get("galmix_objects", TRACT | {"patch": 3}, collections="faults/f")
    fits = butler.get("galmix_sersic_patch", TRACT | {"patch": 3}, collections="faults/f")
    assert len(objects) == 0 and len(fits) == 0
    tract = butler.get("objectTable_tract_galmix", TRACT, collections="faults/f")
    n = sum(len(butler.get("galmix_objects", TRACT | {"patch": p}, collections="faults/f")) for p in range(4))
    assert len(tract) == n > 0
    assert set(np.unique(tract["patch"])) == {0, 1, 2}


def _cli(name: str, *args: str) -> subprocess.CompletedProcess:
    exe = str(pipetask_executable()).replace("pipetask", name)
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False)


def _one_clear_line(proc: subprocess.CompletedProcess, status: int, *words: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_inspect_errors_are_one_line(runs, butler, tmp_path):
    repo = runs[0]
    table = butler.get("objectTable_tract_galmix", TRACT, collections="faults/a")
    obj = str(int(table["objectId"][0]))
    _one_clear_line(_cli("galmix-inspect", str(tmp_path / "nowhere"), "--collections", "faults/a", "--object",
                         obj), 1, "nowhere")
    _one_clear_line(_cli("galmix-inspect", repo, "--collections", "no/such", "--object", obj), 1, "no/such")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            out = "/proc/galmix_blend.png"  # running as root: a path no one can create
        else:
            out = str(locked / "blend.png")
        _one_clear_line(_cli("galmix-inspect", repo, "--collections", "faults/a", "--object", obj, "--output",
                             out), 1, out)
    finally:
        locked.chmod(0o700)


def test_make_repo_errors_are_one_line_and_leave_no_folder(tmp_path, monkeypatch, capsys):
    from lsst.galmix.sim import cli

    make_repo_module = importlib.import_module("lsst.galmix.sim.make_repo")  # the package exports the function

    a_file = tmp_path / "a_file"
    a_file.write_text("not a repository")
    _one_clear_line(_cli("galmix-make-repo", str(a_file)), 2, "a_file", "is a file")
    _one_clear_line(_cli("galmix-make-repo", str(a_file / "repo")), 2, "is a file, not a directory")
    assert a_file.read_text() == "not a repository"

    # A build that fails half way (here: the disk fills while rendering) removes what it wrote, so the
    # same command can be run again.
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(make_repo_module, "render_band", disk_full)
    for repo in (tmp_path / "new", tmp_path / "empty"):
        if repo.name == "empty":
            repo.mkdir()
        assert cli.main([str(repo), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "No space left on device" in err[0]
        assert not repo.exists() if repo.name == "new" else not any(repo.iterdir())
        assert cli._claim(str(repo)) is (repo.name == "new")
