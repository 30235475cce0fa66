"""pytest fixtures for the compatibility suite: a dataset, a running simulated site, clients.

Session-scoped, so the server starts once:

- ``dataset``: the generated production (see dataset.py), written to a temporary file;
- ``server``: a ``shotgun-cache sim`` process loaded with it, listening on a free port
  (``--listen 127.0.0.1:0``; the port is read from its ``listening on http://...`` line);
  it is terminated (then killed) at the end of the session, whatever happened;
- ``sg``: an unmodified ``shotgun_api3.Shotgun`` connected to it with a script key;
- ``site``: the reference model (oracle.py) over the same dataset, for expected results.

The binary is ``$SHOTGUN_CACHE_BIN`` or ``target/debug/shotgun-cache`` in the repository;
run.sh builds it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import shotgun_api3

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dataset as dataset_mod  # noqa: E402
import oracle  # noqa: E402

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_BIN = REPO / "target" / "debug" / "shotgun-cache"

SCRIPT_NAME = "compat_suite"
SCRIPT_KEY = "s3cr3t-k3y-0123456789"
OTHER_SCRIPT = ("other_script", "another-key")

STARTUP_TIMEOUT = 60.0


class SimServer:
    """A running `shotgun-cache sim` process."""

    def __init__(self, argv: list[str], log_path: Path):
        self.argv = argv
        self.log_path = log_path
        self.url = None
        self.stdout_lines: list[str] = []
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self):
        # Keep draining stdout for the life of the process so it can never block on a
        # full pipe; the first `listening on` line gives the URL.
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout_lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match and self.url is None:
                self.url = match.group(1).rstrip("/")
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float) -> None:
        self._ready.wait(timeout)
        if self.url is None:
            state = "exited with %s" % self.proc.poll() if self.proc.poll() is not None else "still running"
            self.stop()
            raise RuntimeError("shotgun-cache sim did not print 'listening on' within %.0fs (%s).\n"
                               "argv: %s\nstdout: %s\nstderr:\n%s"
                               % (timeout, state, " ".join(self.argv), self.stdout_lines, self.stderr_tail()))

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def binary_path() -> Path:
    path = Path(os.environ.get("SHOTGUN_CACHE_BIN") or DEFAULT_BIN)
    if not path.exists():
        pytest.fail("shotgun-cache binary not found at %s; build it with "
                    "`cargo build -p shotgun-cache` or set SHOTGUN_CACHE_BIN" % path)
    return path


def start_sim(tmp_dir: Path, data: dict | None, scripts=((SCRIPT_NAME, SCRIPT_KEY), OTHER_SCRIPT)) -> SimServer:
    """Start a simulated site over the fixture schema, loaded with `data`."""
    argv = [str(binary_path()), "sim", "--listen", "127.0.0.1:0",
            "--schema", str(dataset_mod.FIELDS_JSON),
            "--entity-schema", str(dataset_mod.ENTITIES_JSON)]
    if data is not None:
        data_path = tmp_dir / "dataset.json"
        data_path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        argv += ["--load", str(data_path)]
    for name, key in scripts:
        argv += ["--script", "%s:%s" % (name, key)]
    server = SimServer(argv, tmp_dir / "sim.stderr.log")
    server.wait_ready(STARTUP_TIMEOUT)
    return server


def connect(url: str, script: str = SCRIPT_NAME, key: str = SCRIPT_KEY) -> shotgun_api3.Shotgun:
    """An unmodified official client pointed at the simulated site."""
    sg = shotgun_api3.Shotgun(url + "/", script_name=script, api_key=key, connect=False)
    # A hung server should fail the test, not hang the suite: set the socket timeout
    # before the first call creates the connection, then connect (the `info` call).
    sg.config.timeout_secs = 60
    sg.server_caps
    return sg


@pytest.fixture(scope="session")
def today() -> _dt.date:
    """Today in UTC: the site judges relative dates (in_last, in_calendar_day...) in UTC."""
    return _dt.datetime.now(_dt.timezone.utc).date()


@pytest.fixture(scope="session")
def dataset(today):
    return dataset_mod.generate(dataset_mod.DEFAULT_SEED, today)


@pytest.fixture(scope="session")
def schema():
    return dataset_mod.load_schema()


@pytest.fixture(scope="session")
def site(dataset, schema, today):
    return oracle.Site(dataset, schema[0], today)


@pytest.fixture(scope="session")
def server(dataset, tmp_path_factory):
    sim = start_sim(tmp_path_factory.mktemp("sim"), dataset)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def sg(server):
    return connect(server.url)


@pytest.fixture(autouse=True)
def _server_still_running(request):
    """After each test, fail loudly if the session's server has died."""
    yield
    if "server" in request.fixturenames:
        sim = request.getfixturevalue("server")
        assert sim.alive(), "shotgun-cache sim exited (%s); stderr:\n%s" % (sim.proc.poll(), sim.stderr_tail())
