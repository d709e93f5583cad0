"""``connect()``: a ready client of a running host, found by DCC name, pid or channel.

Which host (``target``), in this order:

1. ``target`` given: a record whose channel, pid, DCC (``maya``) or peer name
   (``maya-2025``) it names; if none does, ``target`` is taken as a channel
   name (a server that publishes no record) -- unless it is a DCC's name,
   which is then an error (no such host runs).
2. No target, ``AURORAVIEW_IPC_CHANNEL`` set (a process a host started): that
   channel -- unless this very process hosts it.
3. No target: the one running host in the records (:mod:`.discovery`).
   None, or several, is an error that lists them; this process's own hosts
   are left out (a client on a host's main thread would wait for itself).

The token: ``token`` if given, else the host's token file (beside its
record), else ``AURORAVIEW_IPC_TOKEN``.

Usage::

    with connect("maya") as maya:               # a Peer, closed with its channel
        maya.request("scene.info")
    found = resolve_host()                     # the one running host, or an error
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

from ..channel.base import IpcChannel
from ..errors import IpcChannelError
from ..rpc.peer import Peer
from ..transport.local_socket import LocalSocketChannel
from .discovery import HostRecord, list_hosts
from .environment import ENV_CHANNEL, ENV_TOKEN
from .factory import process_host

__all__ = [
    "KNOWN_DCCS",
    "AmbiguousHost",
    "HostClient",
    "HostNotFound",
    "ResolvedHost",
    "connect",
    "resolve_host",
]

KNOWN_DCCS = frozenset({"maya", "houdini", "nuke", "3dsmax", "max", "blender", "standalone", "qt"})
"""Names that mean an application, never a channel: no such host running is an error."""


class HostNotFound(IpcChannelError, LookupError):
    """No running host matches (or none runs at all); the message lists those that run.

    Usage::

        try:
            client = connect("houdini")
        except HostNotFound as exc:
            log.error("%s", exc)          # no running host is a houdini host; running hosts: ...
    """


class AmbiguousHost(IpcChannelError, LookupError):
    """Several running hosts match; ``matches`` lists them.

    Usage::

        try:
            client = connect("maya")
        except AmbiguousHost as exc:
            choices = [record.pid for record in exc.matches]
    """

    def __init__(self, message: str, matches: list[HostRecord]) -> None:
        super().__init__(message)
        self.matches = matches


class ResolvedHost(NamedTuple):
    """Where to connect: the channel, the token to present, the host's record if any, and
    ``via``: what named it (``"the target"``, ``"AURORAVIEW_IPC_CHANNEL"``, ``"discovery"``).

    Usage::

        found = resolve_host("maya")
        channel = LocalSocketChannel.connect(found.channel, token=found.token)
    """

    channel: str
    token: Optional[str]
    record: Optional[HostRecord]
    via: str


def _listing(records: list[HostRecord]) -> str:
    return "".join(f"\n  {record.describe()}" for record in records)


def resolve_host(
    target: Optional[str] = None,
    *,
    token: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> ResolvedHost:
    """The channel and token of the host ``target`` names (see the module docstring).

    Raises :class:`HostNotFound` or :class:`AmbiguousHost` with a message
    that lists the running hosts.
    """
    env = os.environ if environ is None else environ
    records = list_hosts()
    if target is not None and target.strip():
        return _by_target(target.strip(), records, token, env)
    env_channel = env.get(ENV_CHANNEL, "")
    own = {r.channel for r in records if r.pid == os.getpid()}
    if env_channel and env_channel not in own:
        record = next((r for r in records if r.channel == env_channel), None)
        return _resolved(env_channel, record, token, env, ENV_CHANNEL)
    others = [r for r in records if r.pid != os.getpid()]
    if not others:
        raise HostNotFound(
            "no aurora_dcc host is running (start one in a DCC, or `aurora-dcc serve`); "
            f"or name a channel with --channel / {ENV_CHANNEL}"
        )
    if len(others) > 1:
        raise AmbiguousHost(
            f"{len(others)} hosts are running; name one (a DCC, a pid or a channel):"
            + _listing(others),
            others,
        )
    return _resolved(others[0].channel, others[0], token, env, "discovery")


def _by_target(
    target: str, records: list[HostRecord], token: Optional[str], env: Mapping[str, str]
) -> ResolvedHost:
    exact = [r for r in records if r.channel == target]
    matches = exact or [r for r in records if r.matches(target)]
    if len(matches) == 1:
        return _resolved(matches[0].channel, matches[0], token, env, "the target")
    if len(matches) > 1:
        raise AmbiguousHost(
            f"{len(matches)} hosts match {target!r}; name one by pid or channel:"
            + _listing(matches),
            matches,
        )
    if target.lower() in KNOWN_DCCS or target.isdigit():
        running = _listing(records) if records else " none"
        what = f"pid {target}" if target.isdigit() else f"a {target} host"
        raise HostNotFound(f"no running host is {what}; running hosts:{running}")
    return _resolved(target, None, token, env, "the target")  # a channel with no record


def _resolved(
    channel: str,
    record: Optional[HostRecord],
    token: Optional[str],
    env: Mapping[str, str],
    via: str,
) -> ResolvedHost:
    if token is None and record is not None:
        token = record.read_token()
    if token is None:
        token = env.get(ENV_TOKEN) or None
    return ResolvedHost(channel, token, record, via)


class HostClient(Peer):
    """A :class:`Peer` connected to a host; closing it closes its channel too.

    ``record`` is the host's discovery record (None for a channel without one).

    Usage::

        with connect("blender", timeout=5.0) as blender:
            blender.request("scene.ls", {"pattern": "Cube*"})
            blender.on("selection.changed", lambda event, data: print(data))
    """

    def __init__(self, channel: IpcChannel, record: Optional[HostRecord], **options: Any) -> None:
        super().__init__(channel, session_started=True, **options)
        self.record = record

    def close(self) -> None:
        """Detach (pending requests fail with -32002) and close the connection. Idempotent."""
        super().close()
        self.channel.close()

    def __enter__(self) -> HostClient:
        return self


def connect(
    target: Optional[str] = None,
    *,
    token: Optional[str] = None,
    timeout: float = 10.0,
    name: Optional[str] = None,
) -> HostClient:
    """Connect to the running host ``target`` names (a DCC, a pid, a channel, or None).

    ``timeout`` bounds the connect and is the client's default request
    timeout; ``name`` is this client's name in the handshake. A host of this
    very process (named explicitly) is reached in-process, without a socket.
    Raises :class:`HostNotFound`, :class:`AmbiguousHost`, or the channel's errors
    (``Disconnected`` if the host is gone, ``Unauthorized``, ``ChannelTimeout``).
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
    found = resolve_host(target, token=token)
    own = process_host()
    channel: IpcChannel
    if own is not None and own.name == found.channel:
        # This process's own host: no socket to itself (on its main thread that would wait
        # for itself), its in-process channel, as create_for_context() gives.
        channel = own.connect(name or "connect")
    else:
        channel = LocalSocketChannel.connect(
            found.channel, token=found.token, timeout=timeout, peer_name=name
        )
    try:
        return HostClient(channel, found.record, timeout=timeout, name=name)
    except BaseException:
        channel.close()
        raise
