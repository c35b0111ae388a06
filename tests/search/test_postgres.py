"""A team's shared tracking server: ``mlflow server`` over a real PostgreSQL database.

The test starts a throwaway PostgreSQL server (its own data folder, a free port on
127.0.0.1), an ``mlflow server`` on it, and a parallel campaign that writes there; it kills
the campaign's driver mid-trial and resumes it, as the SQLite tests do with a local store.

PostgreSQL refuses to run as root: as root its programs run as the ``postgres`` system user
(Debian's package ``postgresql`` creates it) through ``runuser``. Without PostgreSQL or a
Python driver for it (psycopg2, psycopg) the test is skipped, except under CI=true, where it
fails: CI must install them (apt-get install postgresql; pip install "psycopg[binary]", which the
dev extra brings, the driver SQLAlchemy 2.1 takes for a plain ``postgresql://`` URI).
"""

import contextlib
import glob
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from search.cli import main
from tests.search.test_end_to_end import campaign_of, trial_runs
from tests.search.test_parallel import ENDED, _answers, free_port, spawn, stop, wait_until

pytestmark = pytest.mark.slow

ADMIN = "archsearch"  # the server's superuser, as initdb makes it
USER, PASSWORD, DATABASE = "mlflow", "mlflow-secret", "mlflow"  # what MLflow logs in as: no superuser
EPOCHS = 60  # long enough that a trial still trains well after its first epochs are written


def _unavailable(reason: str):
    """Skip, or fail under CI=true: CI must never skip this test silently."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


def _pg_program(name: str) -> str | None:
    """A PostgreSQL program: Debian keeps them under /usr/lib/postgresql/VERSION/bin, off PATH."""

    def version(folder: str) -> tuple[int, ...]:
        number = Path(folder).parent.name
        return tuple(int(p) for p in number.split(".") if p.isdigit())

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        path = Path(folder) / name
        if os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


def _driver() -> tuple[str, str] | None:
    """(URI scheme, module) for a PostgreSQL driver that is installed: the plain ``postgresql://``
    when it is the one SQLAlchemy defaults to (psycopg from SQLAlchemy 2.1, psycopg2 before)."""
    from sqlalchemy.dialects import postgresql

    default = postgresql.dialect.driver
    for module in dict.fromkeys((default, "psycopg", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return ("postgresql" if module == default else f"postgresql+{module}"), module
    return None


def _connect(module: str, port: int, user: str, password: str, dbname: str):
    driver = importlib.import_module(module)
    return driver.connect(
        host="127.0.0.1", port=port, user=user, password=password, dbname=dbname, connect_timeout=5
    )


class Postgres:
    """A PostgreSQL server of the test's own, and how to reach its ``mlflow`` database."""

    def __init__(self, scheme: str, module: str, port: int):
        self.module, self.port = module, port
        self.uri = f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"

    def connect(self, dbname: str = DATABASE):
        return _connect(self.module, self.port, USER, PASSWORD, dbname)

    def query(self, sql: str) -> list[tuple]:
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on 127.0.0.1 with a database ``mlflow`` owned by a user with a password
    (not a superuser, as on a team's server)."""
    programs = {name: _pg_program(name) for name in ("initdb", "pg_ctl", "postgres")}
    missing = [name for name, path in programs.items() if path is None]
    if missing:
        _unavailable(
            f"PostgreSQL is not installed (Debian: apt-get install postgresql): no {', '.join(missing)} "
            "under /usr/lib/postgresql/*/bin or on PATH"
        )
    driver = _driver()
    if driver is None:
        _unavailable(
            'no Python driver for PostgreSQL (pip install "psycopg[binary]"): '
            "neither psycopg2 nor psycopg can be imported"
        )
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as its own system user
        runuser = shutil.which("runuser")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            _unavailable(
                "running as root, and there is no `postgres` system user (or no runuser) to run PostgreSQL "
                "as (Debian: apt-get install postgresql creates the user)"
            )
        as_user = [runuser, "-u", "postgres", "--"]

    # in /tmp, not under pytest's temporary folder: that one is root's alone, closed to the postgres user
    base = Path(tempfile.mkdtemp(prefix="archsearch-postgres-"))
    data, sockets, log = base / "data", base / "sockets", base / "server.log"
    sockets.mkdir()
    (base / "password").write_text(PASSWORD + "\n")
    if as_user:
        for path in (base, sockets, base / "password"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    common = {"cwd": base, "env": env, "capture_output": True, "text": True}

    def pg(*command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*as_user, *command], timeout=timeout, **common)
        if check and done.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{server_log}")
        return done

    started = False
    try:
        pg(
            programs["initdb"], "-D", str(data), "-U", ADMIN, f"--pwfile={base / 'password'}",
            "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        started = True
        pg(programs["pg_ctl"], "start", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "180")

        def accepts():
            try:
                with contextlib.closing(_connect(driver[1], port, ADMIN, PASSWORD, "postgres")):
                    return True
            except Exception:
                return False

        wait_until(accepts, 180, "PostgreSQL to accept connections")
        conn = _connect(driver[1], port, ADMIN, PASSWORD, "postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE runs outside a transaction
            with conn.cursor() as cur:
                cur.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
                cur.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        finally:
            conn.close()
        yield Postgres(*driver, port)
    finally:
        if started:
            stopped = pg(
                programs["pg_ctl"], "stop", "-D", str(data), "-m", "fast", "-w", "-t", "60", check=False
            )
            if stopped.returncode != 0:
                pg(programs["pg_ctl"], "stop", "-D", str(data), "-m", "immediate", "-w", check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_server(postgres, tmp_path):
    """``mlflow server`` on loopback over the PostgreSQL database: its URL."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", postgres.uri,
            "--artifacts-destination", str(tmp_path / "server-artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),  # noqa: SIM115 - closed with the process
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        # the first start creates MLflow's tables in PostgreSQL (its migrations), before it answers
        try:
            wait_until(lambda: _answers(f"{url}/health"), 300, "mlflow server on PostgreSQL", server)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{(tmp_path / 'server.log').read_text()[-5000:]}") from None
        yield url
    finally:
        stop(server)


def _training(client: MlflowClient):
    """The trial number of a trial RUNNING with at least one epoch written, or None."""
    try:
        exp = client.get_experiment_by_name("tiny")
        if exp is None:
            return None
        for r in client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'"):
            if r.data.tags.get("archsearch.kind") == "trial" and client.get_metric_history(
                r.info.run_id, "val_acc"
            ):
                return r.data.tags["archsearch.trial"]
    except Exception:  # the campaign is not there yet
        return None
    return None


def test_a_campaign_on_a_postgres_backed_server_survives_its_driver_killed_and_resumes(
    tiny, runs, tmp_path, postgres, postgres_server
):
    client = MlflowClient(tracking_uri=postgres_server)
    args = [
        "run", str(tiny), "--runs", str(runs), "--tracking-uri", postgres_server,
        "--trials", "4", "--workers", "2", "--set", f"training.epochs={EPOCHS}",
    ]  # fmt: skip
    proc = spawn(args, tmp_path)
    try:
        seen = wait_until(lambda: _training(client), 300, "a trial training with epochs written", proc)
        os.kill(proc.pid, signal.SIGKILL)  # the driver; its worker processes die with it
        out, _ = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == -signal.SIGKILL, out
    time.sleep(2)  # a write the driver sent just before it died has reached the database

    exp, parent = campaign_of(client, "tiny")
    assert parent.info.status == "RUNNING"  # its driver died: nobody ended it
    left = {r.info.run_id: r for r in trial_runs(client, exp.experiment_id) if r.info.status == "RUNNING"}
    assert seen in {r.data.tags["archsearch.trial"] for r in left.values()}

    resume = ["run", "--resume", "tiny", "--runs", str(runs), "--tracking-uri", postgres_server]
    assert main([*resume, "--workers", "2", "-q"]) == 0

    exp, parent = campaign_of(client, "tiny")
    assert parent.info.status == "FINISHED"
    children = trial_runs(client, exp.experiment_id)
    ended = [c for c in children if c.info.status in ENDED]
    killed = [c for c in children if c.info.status == "KILLED"]
    assert not [c for c in children if c.info.status == "RUNNING"]
    assert sorted(int(c.data.tags["archsearch.trial"]) for c in ended) == [0, 1, 2, 3]
    assert len({c.data.tags["archsearch.config_hash"] for c in ended}) == 4  # nothing evaluated twice ...
    # ... but exactly the attempts in flight when the driver died: KILLED, each run again
    assert killed and {c.info.run_id for c in killed} == set(left)
    assert len(children) == 4 + len(killed)
    for k in killed:
        tags = k.data.tags
        assert "driver stopped" in tags["archsearch.reason"]
        (retry,) = [c for c in ended if c.data.tags["archsearch.trial"] == tags["archsearch.trial"]]
        assert int(retry.data.tags["archsearch.attempt"]) >= 2
        assert retry.data.tags["archsearch.config_hash"] == tags["archsearch.config_hash"]
    for c in ended:
        if c.info.status == "FINISHED":  # every epoch's metrics written to the server
            assert len(client.get_metric_history(c.info.run_id, "val_acc")) == EPOCHS

    # and all of it lies in PostgreSQL: the server's store is the database, not a file
    stored = dict(postgres.query("SELECT run_uuid, status FROM runs"))
    assert stored[parent.info.run_id] == "FINISHED"
    assert {c.info.run_id: c.info.status for c in children}.items() <= stored.items()
