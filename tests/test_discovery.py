"""Live host discovery (records in the runtime folder) and ``aurora_dcc.connect``.

Records are written by real hosts (a ``QtHost`` here, ``aurora-dcc serve`` as a
child) in a private runtime folder per test (``cli_helpers.Runtime``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import stat
import sys
from collections.abc import Iterator

import pytest
from cli_helpers import Runtime
from support import CHILDREN

import aurora_dcc
from aurora_dcc.process.discovery import (
    HostRecord,
    list_hosts,
    process_alive,
    publish_host,
    split_peer_name,
)
from aurora_dcc.process.host_client import AmbiguousHost, HostNotFound, resolve_host


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    with Runtime.open(monkeypatch) as private:
        yield private


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_record_and_its_token_are_private_and_removed(runtime: Runtime) -> None:
    published = publish_host(
        "aurora_rec", "/somewhere/aurora_rec", peer_name="maya-2025", token="s3cret", scene="a.ma"
    )
    record = published.record
    assert os.path.dirname(record.path) == runtime.channel_dir
    assert _mode(runtime.channel_dir) == 0o700
    assert _mode(record.path) == 0o600 and _mode(record.token_path) == 0o600
    [listed] = list_hosts()
    assert listed == record
    assert (listed.dcc, listed.dcc_version, listed.pid) == ("maya", "2025", os.getpid())
    assert listed.token_required and listed.read_token() == "s3cret"
    with open(record.path, encoding="utf-8") as file:
        assert "s3cret" not in file.read()  # the token is only in its own file
    assert not [n for n in os.listdir(runtime.channel_dir) if n.endswith(".tmp")]
    published.update(scene="b.ma")
    assert list_hosts()[0].scene == "b.ma"
    published.remove()
    assert list_hosts() == [] and os.listdir(runtime.channel_dir) == []


def test_a_token_file_others_may_read_is_refused(runtime: Runtime) -> None:
    published = publish_host("aurora_tok", "/x/aurora_tok", peer_name="nuke-15.1v1", token="t")
    try:
        os.chmod(published.record.token_path, 0o644)
        with pytest.raises(aurora_dcc.IpcChannelError, match="0600"):
            list_hosts()[0].read_token()
    finally:
        published.remove()


def test_a_reused_pid_is_not_the_host(runtime: Runtime) -> None:
    published = publish_host("aurora_old", "/x/aurora_old", peer_name="houdini-20.5.278")
    start = published.record.process_start
    if start is None:
        pytest.skip("no process start time on this system: a reused pid cannot be told apart")
    assert process_alive(os.getpid(), start)
    published.update(process_start=start - 1)  # as if an earlier process had our pid
    assert list_hosts() == []
    assert not os.path.exists(published.record.path)  # dropped by the reader


def test_files_that_are_not_records_are_skipped(runtime: Runtime) -> None:
    directory = runtime.channel_dir
    os.makedirs(directory, mode=0o700, exist_ok=True)
    junk = os.path.join(directory, "1-junk.host.json")
    with open(junk, "w", encoding="utf-8") as file:
        file.write("{not json")
    try:
        assert list_hosts() == []
        assert os.path.exists(junk)  # not ours to delete: it may be another version's
    finally:
        os.unlink(junk)


def test_peer_names_split_into_dcc_and_version() -> None:
    assert split_peer_name("maya-2025") == ("maya", "2025")
    assert split_peer_name("3dsmax-2026") == ("3dsmax", "2026")
    assert split_peer_name("nuke-15.1v1") == ("nuke", "15.1v1")
    assert split_peer_name("standalone") == ("standalone", "")


@pytest.mark.subprocess
def test_a_sigkilled_hosts_record_socket_and_lock_are_dropped(runtime: Runtime) -> None:
    serving = runtime.serve()
    [record] = list_hosts()
    channel_files = sorted(os.listdir(runtime.channel_dir))
    assert len(channel_files) == 4, channel_files  # record, token, socket, lock
    serving.send_signal(signal.SIGKILL)
    serving.wait(10)
    assert sorted(os.listdir(runtime.channel_dir)) == channel_files  # it could not clean up
    assert list_hosts() == []
    assert os.listdir(runtime.channel_dir) == []  # the reader dropped all of it
    assert not process_alive(record.pid, record.process_start)


@pytest.mark.subprocess
def test_connect_finds_the_host_and_its_token(runtime: Runtime) -> None:
    serving = runtime.serve()
    with aurora_dcc.connect("standalone", timeout=10.0) as client:
        assert client.record is not None and client.record.pid == serving.pid
        assert client.request("scene.info")["host"] == "standalone"
    assert client.channel.is_shutdown()  # leaving the block closed the connection
    with aurora_dcc.connect() as only:  # the one running host
        assert only.request("scene.create", {"type": "cube"}) == "cube1"


@pytest.mark.subprocess
def test_resolving_none_one_or_several_hosts(runtime: Runtime) -> None:
    with pytest.raises(HostNotFound, match="no aurora_dcc host is running"):
        resolve_host()
    first = runtime.serve("--no-token")
    found = resolve_host()
    assert found.channel == f"auroraview_{first.pid}" and found.token is None
    assert resolve_host(str(first.pid)).record == found.record
    assert resolve_host("Standalone").channel == found.channel  # a DCC, any case
    second = runtime.serve()
    with pytest.raises(AmbiguousHost) as several:
        resolve_host()
    assert {r.pid for r in several.value.matches} == {first.pid, second.pid}
    assert str(first.pid) in str(several.value) and str(second.pid) in str(several.value)
    with pytest.raises(HostNotFound, match="no running host is a maya host"):
        resolve_host("maya")
    with pytest.raises(HostNotFound, match="no running host is pid 1;"):
        resolve_host("1")
    plain = resolve_host("aurora_plain", environ={"AURORAVIEW_IPC_TOKEN": "env-token"})
    assert plain == ("aurora_plain", "env-token", None, "the target")  # a channel, no record
    env = {"AURORAVIEW_IPC_CHANNEL": f"auroraview_{second.pid}"}
    from_env = resolve_host(environ=env)
    assert from_env.record is not None and from_env.record.pid == second.pid
    assert from_env.via == "AURORAVIEW_IPC_CHANNEL"
    assert from_env.token is not None  # read from the host's token file


def test_a_qt_host_is_listed_while_it_runs(runtime: Runtime, qapp: object) -> None:
    from aurora_dcc.hosts.qt_host import QtHost
    from aurora_dcc.qt.compat import on_qt_main_thread

    with QtHost(runtime_channel(), token="t0k", peer_name="maya-2025", export_env=False) as host:
        [record] = list_hosts()
        assert (record.channel, record.dcc, record.dcc_version) == (host.name, "maya", "2025")
        assert record.address == host.server.address and record.read_token() == "t0k"
        with open(record.path, encoding="utf-8") as file:
            assert json.load(file)["protocol"] == aurora_dcc.PROTOCOL_VERSION
        # This process's own host is never chosen implicitly: it would wait for itself.
        with pytest.raises(HostNotFound):
            resolve_host(environ={"AURORAVIEW_IPC_CHANNEL": host.name})
        # Named, it is reached in-process: on its own main thread, no wait for itself.
        host.register("where", lambda: "main" if on_qt_main_thread() else "elsewhere")
        with aurora_dcc.connect("maya", timeout=2.0) as client:
            assert client.request("where") == "main"
            assert not isinstance(client.channel, aurora_dcc.LocalSocketChannel)
    assert list_hosts() == []
    with QtHost(runtime_channel(), export_env=False) as unnamed:
        assert [r.dcc for r in list_hosts()] == ["qt"] and unnamed.published is not None
    assert list_hosts() == []


def runtime_channel() -> str:
    return f"aurora_d_{os.urandom(4).hex()}"


def test_record_fields_round_trip() -> None:
    record = HostRecord(
        channel="c",
        address="/a/c",
        dcc="blender",
        dcc_version="4.2.0",
        peer="blender-4.2.0",
        pid=12,
        process_start=None,
        scene="",
        protocol=1,
        token_required=False,
        started_at=1.5,
        path="/a/12-x.host.json",
    )
    assert HostRecord.from_json(json.loads(json.dumps(record.to_json())), record.path) == record
    assert HostRecord.from_json({**record.to_json(), "format": 99}, "p") is None
    assert HostRecord.from_json({**record.to_json(), "pid": "x"}, "p") is None
    assert record.token_path == "/a/12-x.host.token" and record.read_token() is None


@pytest.mark.subprocess
@pytest.mark.skipif(
    importlib.util.find_spec("bpy") is None,
    reason="the bpy module is not installed in this Python (CPython 3.11 only: the test extra)",
)
def test_a_blender_host_is_listed_and_found_by_its_dcc(runtime: Runtime) -> None:
    channel = runtime_channel()
    blender = runtime.spawn([sys.executable, str(CHILDREN / "blender_module_host.py"), channel])
    record = runtime.wait_for_host(blender.pid, timeout=60.0)
    assert (record.channel, record.dcc) == (channel, "blender") and record.dcc_version
    result = runtime.cli("--channel", "blender", "--timeout", "20", "call", "scene.ls")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["Camera", "Cube", "Light"]
    assert blender.stdin is not None
    blender.stdin.close()  # the host closes: its record goes with it
    assert blender.wait(60) == 0
    assert list_hosts() == []


def test_a_target_names_a_host_by_dcc_peer_name_pid_or_channel(runtime: Runtime) -> None:
    published = publish_host("aurora_max", "/x/aurora_max", peer_name="3dsmax-2026")
    try:
        for target in ("max", "3dsMax", "3dsmax-2026", str(os.getpid()), "aurora_max"):
            assert resolve_host(target).channel == "aurora_max", target
        with pytest.raises(HostNotFound):  # this process's own hosts are never implicit
            resolve_host()
        with pytest.raises(ValueError, match="positive"):
            aurora_dcc.connect("aurora_max", timeout=0)
    finally:
        published.remove()
