"""Production integration: a throw-away PostgreSQL server, the CI repository on it, the CI pipeline
through ``bps submit`` with the parsl plugin (local site), and the tables compared with an SQLite
``pipetask run`` of the same inputs.

The server is started here (``initdb`` + ``pg_ctl`` into a temporary folder on a free local port, as the
``postgres`` system user when running as root, which ``initdb`` refuses) and stopped at the end. The
password lives only in a ``db-auth.yaml`` of mode 600 named by ``LSST_DB_AUTH``, as in production.
Missing PostgreSQL binaries fail the test with the command that installs them (``.ci/run`` runs it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from butler_helpers import run_task_on_patch
from lsst.daf.butler import Butler
from test_pipeline_ci import OUT as SQLITE_OUT
from test_pipeline_ci import ci_run  # noqa: F401 - the shared SQLite CI run, built once per session

BPS_OUT = "galmix/bps/ci"
TRACT = {"skymap": "galmix_sim", "tract": 0}
PATCHES = (0, 1, 2, 3)
MODELS = ("sersic", "exp")
BIN = Path(sys.executable).parent
CONFIG = Path(__file__).parent.parent / "config" / "bps"
PASSWORD = "galmix-test-secret"
USER = "galmix"


def _pg_bindir() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's versioned folder."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install them with "
        "'apt-get update && apt-get install -y postgresql postgresql-contrib' (.ci/run does this)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowAwayPostgres:
    """A PostgreSQL server in a temporary folder, owned by this test session.

    Parameters
    ----------
    root
        Empty folder for the data directory, socket and log.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bindir = _pg_bindir()
        self.port = _free_port()
        self.data = root / "data"
        # initdb refuses to run as root: run the server commands as the postgres system user then.
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("Running as root and no 'postgres' user exists to own the test server")
            os.chown(root, owner.pw_uid, owner.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
            self._owner = owner
        else:
            self._owner = None

    def _run(self, *argv: str) -> None:
        proc = subprocess.run([*self.prefix, *argv], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}\n{tail}")

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._owner is not None:
            os.chown(pwfile, self._owner.pw_uid, self._owner.pw_gid)
        pwfile.chmod(0o600)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "--no-locale", "-E", "UTF8", "--no-sync",
        )
        pwfile.unlink()
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "-o", options, "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str, btree_gist: bool = True) -> None:
        """Create a database, with the ``btree_gist`` extension the Butler registry needs."""
        self._sql("postgres", f"CREATE DATABASE {name}")
        if btree_gist:
            self._sql(name, "CREATE EXTENSION btree_gist")

    def _sql(self, database: str, statement: str) -> None:
        import psycopg2

        # CREATE DATABASE refuses to run in a transaction: autocommit, no `with conn` block.
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname=database)
        try:
            conn.autocommit = True
            conn.cursor().execute(statement)
        finally:
            conn.close()

    def url(self, database: str, driver: str = "psycopg2") -> str:
        """Registry URL without the password (it comes from db-auth.yaml)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{USER}@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def _postgres(auth_dir: Path):
    """A running server with database ``galmix`` (btree_gist) and ``LSST_DB_AUTH`` set for it; the
    server is stopped and its folder removed on exit."""
    # Not under pytest's temporary folder: that one is private to the current user (mode 700) and the
    # server runs as another one.
    root = Path(tempfile.mkdtemp(prefix="galmix-pg-"))
    server = ThrowAwayPostgres(root)
    server.start()
    auth = auth_dir / "db-auth.yaml"
    # db-auth.yaml matches URLs without the driver, and the middleware rejects a file others can read.
    auth.write_text(
        f"- url: postgresql://{USER}@127.0.0.1:{server.port}/\n  username: {USER}\n  password: {PASSWORD}\n"
    )
    auth.chmod(0o600)
    previous = os.environ.get("LSST_DB_AUTH")
    os.environ["LSST_DB_AUTH"] = str(auth)
    try:
        server.create_database("galmix")
        yield server
    finally:
        if previous is None:
            os.environ.pop("LSST_DB_AUTH", None)
        else:
            os.environ["LSST_DB_AUTH"] = previous
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _run(argv: list[str], log: Path, cwd: Path | None = None) -> float:
    """Run a command with its output in ``log``; fail the test with the log's end if it fails."""
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if cwd is not None:
        env["PWD"] = str(cwd)  # bps puts its submit/ folder under ${PWD}
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode}; end of {log}:\n" + log.read_text()[-4000:])
    return time.perf_counter() - t0


def _build_and_submit(postgres: ThrowAwayPostgres, work: Path) -> tuple[Path, Path]:
    """The CI repository built on PostgreSQL and the CI pipeline run on it through ``bps submit``."""
    repo = work / "repo"
    seconds = {}
    seconds["make_repo"] = _run(
        [str(BIN / "galmix-make-repo"), str(repo), "--size", "ci", "--quiet",
         "--registry", postgres.url("galmix")],
        work / "make_repo.log",
    )
    # bps writes submit/ and parsl's runinfo/ under the working directory.
    seconds["bps"] = _run(
        [str(BIN / "bps"), "submit", "-b", str(repo), str(CONFIG / "galmix_ci.yaml")], work / "bps.log", cwd=work
    )
    print(f"PostgreSQL CI repository: galmix-make-repo {seconds['make_repo']:.0f} s, bps submit "
          f"{seconds['bps']:.0f} s")
    return repo, work


def _assert_tables_equal(a, b, what: str) -> None:
    # Per-object timing columns differ between any two runs; everything else must be identical.
    names = [c for c in a.colnames if not c.endswith("_time")]
    assert names == [c for c in b.colnames if not c.endswith("_time")], what
    assert len(a) == len(b), what
    for name in names:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        same = np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
        assert same, f"{what}: column {name} differs"


def test_postgresql_registry_through_bps(tmp_path, request):
    """One test, so that pytest-xdist cannot split the server and its users across workers."""
    with _postgres(tmp_path) as postgres:
        bps_run = _build_and_submit(postgres, tmp_path)
        _check_registry_is_postgresql(bps_run)
        _check_bps_outputs_equal_sqlite_pipetask(bps_run, request)
        _check_provenance(bps_run)
        _check_rerun_skips_done_quanta(bps_run)
        _check_registry_failures_leave_nothing_behind(postgres, tmp_path / "failures")


def _check_registry_is_postgresql(bps_run):
    butler = Butler.from_config(str(bps_run[0]))
    assert butler._config["registry", "db"].startswith("postgresql+psycopg2://")
    # The password is in db-auth.yaml only, never in the repository's configuration.
    assert PASSWORD not in (bps_run[0] / "butler.yaml").read_text()


def _check_bps_outputs_equal_sqlite_pipetask(bps_run, request):
    repo, work = bps_run
    sqlite_repo = request.getfixturevalue("ci_run")[0]
    bps = Butler.from_config(str(repo), collections=[BPS_OUT])
    ref = Butler.from_config(sqlite_repo, collections=[SQLITE_OUT])
    # 4 patch clusters (detection, PSF, both fits), 1 tract cluster, pipetaskInit, finalJob.
    (submit,) = work.glob("submit/galmix/bps/ci/*")
    jobs = {p.relative_to(submit / "logs").parts[0] for p in (submit / "logs").rglob("*.stdout")}
    assert jobs == {"pipetaskInit", "patch", "tract", "finalJob"}
    assert len(list((submit / "logs" / "patch").rglob("*.stdout"))) == len(PATCHES)
    for patch in PATCHES:
        data_id = TRACT | {"patch": patch}
        _assert_tables_equal(bps.get("galmix_objects", data_id), ref.get("galmix_objects", data_id),
                             f"galmix_objects {patch}")
        for model in MODELS:
            name = f"galmix_{model}_patch"
            _assert_tables_equal(bps.get(name, data_id), ref.get(name, data_id), f"{name} {patch}")
    for name in ("objectTable_tract_galmix", "matched_truth_summary_objectTable_tract_galmix"):
        _assert_tables_equal(bps.get(name, TRACT), ref.get(name, TRACT), name)


def _check_provenance(bps_run):
    from importlib.metadata import version

    butler = Butler.from_config(str(bps_run[0]), collections=[BPS_OUT])
    packages = butler.get("packages")
    # The middleware records the installed distribution's version, which carries the git revision it
    # was built from (lsst.galmix.version).
    assert packages["galmix"] == version("lsst-galmix")
    assert "+g" in packages["galmix"]
    config = butler.get("fitCoaddMultibandSersic_config")
    assert config.model == "sersic"
    metadata = butler.get("fitCoaddMultibandSersic_metadata", TRACT | {"patch": 0})
    assert metadata["fitCoaddMultibandSersic"]["nObjects"] > 20


def _check_rerun_skips_done_quanta(bps_run):
    """A second run into the same RUN with --extend-run --skip-existing redoes only what is missing."""
    repo, work = bps_run
    butler = Butler.from_config(str(repo), writeable=True)
    run = butler.collections.get_info(BPS_OUT).children[0]
    before = {
        (ref.datasetType.name, ref.dataId["patch"]): ref
        for name in ("galmix_sersic_patch", "galmix_exp_patch")
        for ref in butler.query_datasets(name, collections=run, explain=False)
    }
    lost = before[("galmix_sersic_patch", 2)]
    table = butler.get(lost)
    # As if the job had died before finishing: its outputs, metadata (the mark of a finished quantum) and
    # log are gone.
    quantum = [
        butler.find_dataset(name, lost.dataId, collections=run)
        for name in ("fitCoaddMultibandSersic_metadata", "fitCoaddMultibandSersic_log")
    ]
    butler.pruneDatasets([lost, *quantum], disassociate=True, unstore=True, purge=True)
    log = work / "rerun.log"
    _run(
        [str(BIN / "pipetask"), "run", "-b", str(repo), "-o", BPS_OUT, "--extend-run", "--skip-existing",
         "-p", "resource://lsst.galmix/pipelines/galmix_ci.yaml", "-d", "skymap = 'galmix_sim'"],
        log,
    )
    text = log.read_text()
    assert "Executed 1 quanta successfully" in text, text[-3000:]
    butler = Butler.from_config(str(repo))
    after = {
        (ref.datasetType.name, ref.dataId["patch"]): ref
        for name in ("galmix_sersic_patch", "galmix_exp_patch")
        for ref in butler.query_datasets(name, collections=run, explain=False)
    }
    assert after.keys() == before.keys()
    # Done quanta were skipped (their datasets are the same ones); the missing one was redone, identically.
    assert all(after[k].id == before[k].id for k in before if k != ("galmix_sersic_patch", 2))
    assert after[("galmix_sersic_patch", 2)].id != lost.id
    _assert_tables_equal(butler.get(after[("galmix_sersic_patch", 2)]), table, "re-fitted patch 2")


def _check_registry_failures_leave_nothing_behind(postgres, tmp_path):
    tmp_path.mkdir()
    exe = str(BIN / "galmix-make-repo")
    # A URL without the driver asks SQLAlchemy for psycopg (3), which is not installed.
    postgres.create_database("nogist", btree_gist=False)
    for url, words in (
        (postgres.url("galmix", driver=""), "postgresql+psycopg2://"),
        (postgres.url("nogist"), "btree_gist"),
    ):
        repo = tmp_path / "repo"
        proc = subprocess.run([exe, str(repo), "--registry", url, "--quiet"], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not repo.exists()
    # A folder that existed (empty) before is kept, and emptied of what was written into it.
    repo = tmp_path / "kept"
    repo.mkdir()
    proc = subprocess.run([exe, str(repo), "--registry", postgres.url("nogist"), "--quiet"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and repo.is_dir() and not any(repo.iterdir())
    assert stat.S_IMODE(Path(os.environ["LSST_DB_AUTH"]).stat().st_mode) == 0o600


def _simulated_upstream(objects, rng):
    """A Rubin-style object table from galmix_objects: renamed sky columns, no footprints or shapes,
    extra columns, shuffled column order, and some centroids lost (NaN) so the sky position is used."""
    from astropy.table import Table

    upstream = Table()
    upstream["coord_dec"] = objects["dec"]
    upstream["objectId"] = objects["objectId"] + 10**12
    upstream["x"] = np.asarray(objects["x"], dtype=float)
    parent = np.asarray(objects["parentObjectId"])
    upstream["parentObjectId"] = np.where(parent != 0, parent + 10**12, 0)
    upstream["coord_ra"] = objects["ra"]
    upstream["y"] = np.asarray(objects["y"], dtype=float)
    upstream["detect_isPrimary"] = objects["detect_isPrimary"]
    upstream["r_psfFlux"] = rng.normal(size=len(objects))  # ignored
    lost = rng.choice(len(objects), size=5, replace=False)
    upstream["x"][lost] = np.nan
    upstream["y"][lost] = np.nan
    return upstream, lost


def test_upstream_catalog_drives_the_fit(ci_run):  # noqa: F811 - the fixture imported above
    from lsst.galmix.tasks import upstream_objects

    repo = ci_run[0]
    writer = Butler.from_config(repo, writeable=True)
    data_id = TRACT | {"patch": 0}
    objects = writer.get("galmix_objects", data_id, collections=SQLITE_OUT)
    upstream, lost = _simulated_upstream(objects, np.random.default_rng(5))
    from lsst.daf.butler import DatasetType

    writer.registry.registerDatasetType(
        DatasetType("object_patch", ("skymap", "tract", "patch"), "ArrowAstropy", universe=writer.dimensions)
    )
    writer.collections.register("galmix/upstream")
    writer.put(upstream, "object_patch", data_id, run="galmix/upstream")

    butler = run_task_on_patch(repo, "resource://lsst.galmix/pipelines/galmix_production.yaml#fitCoaddMultibandSersic",
                               ["galmix/upstream", SQLITE_OUT, "galmix/sim"], "galmix/upstream_fit")
    fits = butler.get("galmix_sersic_patch", data_id, collections="galmix/upstream_fit")
    # One row per upstream row, in order, with its ids and the patch of the quantum.
    np.testing.assert_array_equal(fits["objectId"], upstream["objectId"])
    np.testing.assert_array_equal(fits["parentObjectId"], upstream["parentObjectId"])
    assert np.all(fits["patch"] == 0)
    # Lost centroids came back from coord_ra/coord_dec (to well under a pixel of the detection's).
    positions = upstream_objects(upstream[lost])  # without sky_to_pixel they stay NaN
    assert np.isnan(positions["x"]).all()
    np.testing.assert_allclose(fits["sersic_x"][lost], objects["x"][lost], atol=1.0)
    # Same objects as galmix's own detection, fitted without its footprints and moments: same fluxes
    # for isolated objects to within a few percent at the median.
    own = writer.get("galmix_sersic_patch", data_id, collections=SQLITE_OUT)
    fitted = np.isfinite(fits["r_sersicFlux"])
    assert fitted.mean() > 0.9
    isolated = fitted & np.isfinite(own["r_sersicFlux"]) & (upstream["parentObjectId"] == 0) & (own["r_sersicFlux"] > 0)
    ratio = fits["r_sersicFlux"][isolated] / own["r_sersicFlux"][isolated]
    assert isolated.sum() > 20
    assert abs(np.median(ratio) - 1) < 0.02, np.median(ratio)


def test_upstream_objects_rejects_unusable_catalogues():
    from astropy.table import Table
    from lsst.galmix.tasks import upstream_objects

    with pytest.raises(ValueError, match="objectId"):
        upstream_objects(Table({"x": [1.0], "y": [2.0]}))
    with pytest.raises(ValueError, match="coord_ra"):
        upstream_objects(Table({"objectId": [1], "x": [1.0]}))
    out = upstream_objects(Table({"objectId": [7, 8], "coord_ra": [1.0, 2.0], "coord_dec": [0.0, 0.0]}),
                           sky_to_pixel=lambda ra, dec: (ra * 10, dec + 5))
    np.testing.assert_array_equal(out["x"], [10.0, 20.0])
    assert list(out["parentObjectId"]) == [0, 0] and out["detect_isPrimary"].all()


def test_version_carries_the_git_revision(tmp_path):
    import lsst.galmix
    from lsst.galmix.version import RELEASE, git_revision

    # This test runs from the source tree (an editable install): the revision is known.
    assert lsst.galmix.__version__.startswith(RELEASE + "+g"), lsst.galmix.__version__
    # A copy of the module outside any checkout has no revision and falls back quietly.
    copy = tmp_path / "version.py"
    copy.write_text("")
    assert git_revision(str(copy)) is None


@pytest.mark.parametrize("name", ["galmix_ci.yaml", "galmix_production.yaml"])
def test_bps_submit_files_match_their_pipelines(name):
    from lsst.ctrl.bps import BpsConfig
    from lsst.daf.butler import DimensionUniverse
    from lsst.pipe.base import Pipeline

    config = BpsConfig(str(CONFIG / name))
    assert config["wmsServiceClass"] == "lsst.ctrl.bps.parsl.ParslService"
    assert config[".site.local.class"] == "lsst.ctrl.bps.parsl.sites.Local"
    assert config[".site.slurm.class"] == "lsst.ctrl.bps.parsl.sites.Slurm"
    assert config[".finalJob.requestCpus"] == 2
    graph = Pipeline.from_uri(config["pipelineYaml"]).to_graph()
    graph.resolve(dimensions=DimensionUniverse())
    labels = set(graph.tasks.keys())
    assert set(config["pipetask"]) <= labels
    clustered = {
        label.strip() for cluster in config["cluster"] for label in config["cluster"][cluster]["pipetasks"].split(",")
    }
    assert clustered <= labels
    # Every per-patch task shares its patch's job; every task has a memory request.
    per_patch = {label for label, node in graph.tasks.items() if "patch" in node.dimensions.names}
    assert per_patch <= clustered
    for label in labels:
        assert 256 <= config.search("requestMemory", opt={"curvals": {"curr_pipetask": label}})[1] <= 8192


def test_bps_files_are_package_data():
    import importlib.resources

    shipped = importlib.resources.files("lsst.galmix") / "config" / "bps"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for p in CONFIG.glob("*.yaml"))
    assert {"galmix_ci.yaml", "galmix_production.yaml", "galmix_site.yaml"} <= {p.name for p in shipped.iterdir()}
