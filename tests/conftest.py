"""Shared fixtures and session checks for the whole suite.

Fixtures (each docstring shows its use):

- ``channel_name``: a channel name no other test uses.
- ``socket_server`` / ``socket_pair`` / ``socket_pair_factory``: a pure-Python
  ``LocalSocketChannelServer`` and connected client(s), closed after the test.
- ``run_in_thread``: run a blocking call on a thread with a bounded wait.
- ``children``: child processes from ``tests/children``, stopped after the test.
- ``wait_until``: the plain function from ``support.py`` (``from support import
  wait_until`` works too), for conditions met on other threads.

Markers (registered in pyproject.toml): ``slow`` (seconds, not milliseconds),
``subprocess`` (starts child processes), ``perf`` (benchmark smoke and soak
runs). ``make test`` runs everything; deselect with e.g.::

    pytest -m "not slow"                 # the quick loop while editing
    pytest -m "not slow and not perf"
    pytest -m "not subprocess"
    make test PYTEST_ARGS='-m "not slow"'

``slow`` includes tests/test_read_turn_stress.py (``AURORA_STRESS_OPS`` scales it,
``AURORA_STRESS_SEED`` replays a run).

A test that starts a child process without the ``subprocess`` marker fails
(an audit hook sees every ``subprocess.Popen``), so the marker stays true.

Socket files: the run points ``$TMPDIR`` (where channel names become socket
paths, see ``aurora_dcc/transport/address.py``) at a private directory, so tests
and the children they start (which inherit it) never touch the user's temp
directory. When the run ends, anything left in it is an error that names the
test after which it appeared; the directory is then removed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from support import (
    FAKES,
    ChildProcesses,
    SocketPair,
    ThreadRunner,
    open_socket_pair,
    unique_channel_name,
    wait_until,
)

from aurora_dcc.transport.local_socket import LocalSocketChannelServer

# Headless Qt for every test, set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# -- a private $TMPDIR for the run, checked for leftovers at the end ----------


def _remove_dirs_of_dead_runs(parent: str) -> None:
    """A run killed outright (SIGKILL, a timeout) could not remove its directory."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return
    for entry in os.listdir(parent):
        match = re.fullmatch(r"aurora-(\d+)-\w+", entry)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        except OSError:  # alive, owned by someone else
            pass


# pytest's own tmp_path stays in the original temp dir: tempfile caches it now.
_remove_dirs_of_dead_runs(tempfile.gettempdir())
_ORIGINAL_TMPDIR = os.environ.get("TMPDIR")
# Short: socket paths have a length limit. The pid names the run for the sweep above.
_RUN_TMPDIR = tempfile.mkdtemp(prefix=f"aurora-{os.getpid()}-")
os.environ["TMPDIR"] = _RUN_TMPDIR
# Relative channel names then live in $TMPDIR/aurora_dcc-<uid>, checked below too.
os.environ.pop("XDG_RUNTIME_DIR", None)

_appeared_after: dict[str, str] = {}  # leftover entry -> the test after which it appeared
_last_started = ["(no test)"]


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _last_started[0] = nodeid


def _leftovers() -> list[str]:
    """Entries of the private $TMPDIR and of the channel directory inside it."""
    channels = f"aurora_dcc-{os.geteuid()}" if os.name != "nt" else ""
    entries = [entry for entry in os.listdir(_RUN_TMPDIR) if entry != channels]
    if channels and os.path.isdir(os.path.join(_RUN_TMPDIR, channels)):
        entries += [f"{channels}/{e}" for e in os.listdir(os.path.join(_RUN_TMPDIR, channels))]
    return entries


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    """Note which test each new entry of the private $TMPDIR appeared after."""
    for entry in _leftovers():
        _appeared_after.setdefault(entry, nodeid)


@pytest.fixture(scope="session", autouse=True)
def no_files_left_in_tmpdir() -> Iterator[None]:
    """Fail the run if tests leave files (socket files above all) in $TMPDIR."""
    yield
    # Children stopped by the last tests may still be removing their sockets.
    wait_until(lambda: not _leftovers(), timeout=2.0)
    left = sorted(_leftovers())
    if left:
        last = _last_started[0]  # its teardown runs this check: it is not logged finished yet
        lines = [
            f"  {entry}  (first seen after {_appeared_after.get(entry, last)})" for entry in left
        ]
        pytest.fail(
            f"tests left {len(left)} file(s) in $TMPDIR ({_RUN_TMPDIR}):\n" + "\n".join(lines),
            pytrace=False,
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ORIGINAL_TMPDIR is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = _ORIGINAL_TMPDIR
    shutil.rmtree(_RUN_TMPDIR, ignore_errors=True)


# -- the subprocess marker is checked, not trusted -----------------------------

_SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.spawn", "os.fork"})
_running: list[str] = []  # the test whose body and function fixtures run now
_spawned: set[str] = set()  # tests that started a child process


def _note_child_processes(event: str, args: tuple[Any, ...]) -> None:
    if event in _SPAWN_EVENTS and _running:
        _spawned.add(_running[-1])


sys.addaudithook(_note_child_processes)


@pytest.fixture(autouse=True)
def subprocess_marker_is_true(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that starts a child process but is not marked ``subprocess``."""
    nodeid = request.node.nodeid
    _running.append(nodeid)
    yield
    _running.remove(nodeid)
    if nodeid in _spawned and request.node.get_closest_marker("subprocess") is None:
        pytest.fail(f"{nodeid} starts a child process: mark it @pytest.mark.subprocess")


# -- fixtures -----------------------------------------------------------------


@pytest.fixture
def channel_name() -> str:
    """A channel name unique to this test.

    Usage::

        def test_serves(channel_name):
            with LocalSocketChannelServer(channel_name) as server:
                client = LocalSocketChannel.connect(channel_name)
    """
    return unique_channel_name()


@pytest.fixture
def socket_server(channel_name: str) -> Iterator[LocalSocketChannelServer]:
    """A ``LocalSocketChannelServer`` on ``channel_name`` (no token), closed after the test.

    Usage::

        def test_accepts(socket_server):
            client = LocalSocketChannel.connect(socket_server.name)
            conn = socket_server.accept(timeout=5.0)
    """
    server = LocalSocketChannelServer(channel_name)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def socket_pair_factory(channel_name: str) -> Iterator[Callable[..., SocketPair]]:
    """Make connected ``SocketPair`` s (server, client, server-side ``conn``) with
    options (``support.open_socket_pair``); all of them are closed after the test.
    Each call serves its own channel (``channel_name`` for the first, fresh names after).

    Usage::

        def test_small_frames(socket_pair_factory):
            server, client, conn = socket_pair_factory(
                token="s3cret", server={"max_frame": 1024}, client={"max_frame": 1024}
            )
    """
    pairs: list[SocketPair] = []
    names = iter([channel_name])

    def make(**options: Any) -> SocketPair:
        pair = open_socket_pair(next(names, None) or unique_channel_name(), **options)
        pairs.append(pair)
        return pair

    try:
        yield make
    finally:
        for pair in reversed(pairs):
            pair.client.close()
            pair.conn.close()
            pair.server.close()


@pytest.fixture
def socket_pair(socket_pair_factory: Callable[..., SocketPair]) -> SocketPair:
    """A connected pure-Python server, client and server-side connection (no token),
    all closed after the test.

    Usage::

        def test_round_trip(socket_pair):
            server, client, conn = socket_pair
            client.send(IpcMessage.request("echo"))
            assert conn.receive(timeout=5.0).method == "echo"
    """
    return socket_pair_factory()


@pytest.fixture
def run_in_thread() -> Iterator[ThreadRunner]:
    """Run a blocking call on another thread, never waiting without a bound.

    ``run_in_thread(fn, *args, timeout=10.0)`` returns ``fn``'s result or raises
    its exception (the test fails if it does not finish in time);
    ``run_in_thread.start(fn, *args)`` returns a ``concurrent.futures.Future`` at
    once. A thread still running 5 s after the test ended fails the test.

    Usage::

        def test_close_wakes_a_receive(socket_pair, run_in_thread):
            pending = run_in_thread.start(socket_pair.client.receive, 30.0)
            socket_pair.client.close()
            with pytest.raises(ShuttingDown):
                pending.result(timeout=5.0)
    """
    runner = ThreadRunner()
    yield runner
    stuck = runner.unfinished(timeout=5.0)
    assert not stuck, f"threads still running after the test: {stuck}"


@pytest.fixture
def children() -> Iterator[ChildProcesses]:
    """Start scripts from ``tests/children``; each is stopped after the test
    (stdin closed so it can clean up, then SIGTERM, then SIGKILL).

    Usage::

        def test_remote(children, channel_name):
            proc = children.spawn("ls_server.py", channel_name)
            client = LocalSocketChannel.connect(channel_name, retry=50)
    """
    procs = ChildProcesses()
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., bool]:
    """``support.wait_until`` as a fixture: poll a condition with a bounded wait.

    Usage::

        def test_arrives(wait_until):
            assert wait_until(lambda: received, timeout=5.0)
    """
    return wait_until


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, qapp: Any) -> Iterator[Any]:
    """The fake DCC APIs (tests/fake_dcc) importable, fresh for this test; no host before
    or after it; ``AURORAVIEW_IPC_CHANNEL``/``_TOKEN`` restored. Yields ``fake_main_thread``.

    Usage::

        def test_maya_host(fakes):
            from aurora_dcc.hosts import maya as aurora_maya
            host = aurora_maya.start()   # against the fake maya.cmds, on the Qt main thread
    """
    from aurora_dcc.hosts.qt_host import current_host, stop_host  # Qt: only where used
    from aurora_dcc.process.environment import ENV_CHANNEL, ENV_TOKEN

    monkeypatch.syspath_prepend(FAKES)
    for var in (ENV_CHANNEL, ENV_TOKEN):  # set then deleted: undone even when a host sets it
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    _forget_fakes()
    assert current_host() is None
    import fake_main_thread

    yield fake_main_thread
    stop_host()
    _forget_fakes()


def _forget_fakes() -> None:
    """Drop the fake modules (and their scenes) so nothing else in the process sees them."""
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(FAKES):
            del sys.modules[name]
