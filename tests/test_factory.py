"""IpcMode, IpcChannelFactory, auto_detect and create_for_context, on real channels."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from aurora_dcc.channel.thread import ThreadChannel
from aurora_dcc.errors import IpcChannelError, Unauthorized
from aurora_dcc.process.environment import ENV_CHANNEL, ENV_MODE, ENV_PACKED, ENV_TOKEN
from aurora_dcc.process.factory import IpcChannelFactory, IpcMode, auto_detect, create_for_context
from aurora_dcc.transport.local_socket import LocalSocketChannel, LocalSocketChannelServer


@pytest.fixture
def server(channel_name: str) -> Iterator[LocalSocketChannelServer]:
    with LocalSocketChannelServer(channel_name, token="s3cret") as srv:
        yield srv


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, IpcMode.THREAD),
        ({ENV_CHANNEL: "auroraview_1"}, IpcMode.LOCAL_SOCKET),
        ({ENV_PACKED: "1"}, IpcMode.LOCAL_SOCKET),
        ({ENV_MODE: "legacy", ENV_PACKED: "1"}, IpcMode.LEGACY),
        ({ENV_MODE: "Local-Socket"}, IpcMode.LOCAL_SOCKET),
        ({ENV_MODE: "thread", ENV_CHANNEL: "auroraview_1"}, IpcMode.THREAD),
    ],
)
def test_auto_detect_reads_the_environment(environ: dict[str, str], expected: IpcMode) -> None:
    assert auto_detect(environ) is expected


def test_an_unknown_mode_is_a_clear_error() -> None:
    with pytest.raises(IpcChannelError, match=r"unknown IPC mode 'carrier-pigeon'.*local_socket"):
        auto_detect({ENV_MODE: "carrier-pigeon"})


def test_create_thread_channel_is_a_working_loopback() -> None:
    channel = IpcChannelFactory.create(IpcMode.THREAD, "jobs")
    assert isinstance(channel, ThreadChannel)
    channel.emit("done", {"n": 1})
    assert channel.receive(timeout=1.0).data == {"n": 1}


def test_create_local_socket_connects_with_the_token(server: LocalSocketChannelServer) -> None:
    with IpcChannelFactory.create("local_socket", server.name, token="s3cret") as client:
        conn = server.accept(timeout=5.0)
        client.emit("scene.opened", {"path": "shot.ma"})
        assert conn.receive(timeout=5.0).data == {"path": "shot.ma"}
    with pytest.raises(Unauthorized):
        IpcChannelFactory.create(IpcMode.LOCAL_SOCKET, server.name, token="wrong")


def test_a_mode_that_does_not_exist_is_refused_with_the_known_ones() -> None:
    with pytest.raises(IpcChannelError, match=r"unknown IPC mode 'shared_memory'.*local_socket"):
        IpcChannelFactory.create("shared_memory", "big")
    with pytest.raises(IpcChannelError, match="unknown IPC mode 'shared_memory'"):
        IpcChannelFactory.create_server("shared_memory", "big")


def test_create_server_serves_local_socket_only(channel_name: str) -> None:
    name = channel_name
    with IpcChannelFactory.create_server("local_socket", name) as srv:
        assert isinstance(srv, LocalSocketChannelServer)
        LocalSocketChannel.connect(name).close()
    with pytest.raises(IpcChannelError, match="has no server"):
        IpcChannelFactory.create_server(IpcMode.THREAD, name)


def test_create_for_context_in_a_packed_backend_joins_the_hosts_channel(
    server: LocalSocketChannelServer,
) -> None:
    environ = {ENV_PACKED: "1", ENV_CHANNEL: server.name, ENV_TOKEN: "s3cret"}
    with create_for_context(environ=environ) as channel:
        assert isinstance(channel, LocalSocketChannel)
        conn = server.accept(timeout=5.0)
        channel.emit("hello.host")
        assert conn.receive(timeout=5.0).event == "hello.host"


def test_create_for_context_packed_without_a_channel_is_a_clear_error() -> None:
    with pytest.raises(IpcChannelError, match="AURORAVIEW_IPC_CHANNEL is not"):
        create_for_context(environ={ENV_PACKED: "1"})


def test_create_for_context_in_a_qt_app_delivers_on_the_main_thread(qapp: object) -> None:
    from aurora_dcc.main_thread.channel import DccIpcChannel

    channel = create_for_context("scene", environ={})
    try:
        assert isinstance(channel, DccIpcChannel)
    finally:
        channel.close()
    forced = create_for_context("jobs", environ={ENV_MODE: "thread"})
    assert isinstance(forced, ThreadChannel)


@pytest.mark.subprocess
def test_create_for_context_in_a_plain_script_is_a_thread_channel_and_imports_no_qt() -> None:
    code = (
        "import sys\n"
        "from aurora_dcc.process.factory import create_for_context\n"
        "channel = create_for_context(environ={})\n"
        "sys.stdout.write(type(channel).__name__ + ' ' + str('PySide6' in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out == "ThreadChannel False"


def test_in_a_process_that_hosts_the_context_channel_is_in_process_until_it_closes(
    qapp: object, server: LocalSocketChannelServer, channel_name: str
) -> None:
    from aurora_dcc.hosts.qt_host import QtHost
    from aurora_dcc.main_thread.channel import DccIpcChannel
    from aurora_dcc.main_thread.in_process import InProcessChannel
    from aurora_dcc.process.factory import process_host

    host = QtHost(f"{channel_name}_host", export_env=False)
    try:
        assert process_host() is host.in_process
        for environ in ({}, {ENV_CHANNEL: host.name}):  # nothing named, or this very host
            with create_for_context("panel", environ=environ) as channel:
                assert isinstance(channel, InProcessChannel)
        # Told to join another host (a tool started by a DCC, in a process that hosts too).
        other = {ENV_CHANNEL: server.name, ENV_TOKEN: "s3cret"}
        with create_for_context(environ=other) as channel:
            assert isinstance(channel, LocalSocketChannel)
    finally:
        host.close()
    assert process_host() is None
    with create_for_context("scene", environ={}) as channel:
        assert isinstance(channel, DccIpcChannel)  # a Qt application without a host again
