"""Live host discovery: each running host leaves a small record that tools can list.

A host publishes a JSON record (``<pid>-<hash>.host.json``) in the private
per-user runtime directory where relative channel names live
(:func:`~aurora_dcc.transport.address.runtime_dir`: mode 0700, checked), and
its token, when it needs one, in a 0600 file beside it (``.host.token``), so
a client never needs the token on a command line. Both are written
atomically (a temporary file renamed into place) and removed when the host
closes. A reader drops -- and deletes -- the records of processes that are
gone (a host killed with SIGKILL cannot remove its own); a record also
carries its process's start time where the system tells it (Linux), so a
reused pid does not pass for the host.

Usage::

    published = publish_host("auroraview_4711", address, peer_name="maya-2025", token=token)
    [(r.dcc, r.channel) for r in list_hosts()]   # [('maya', 'auroraview_4711')]
    list_hosts()[0].read_token()                 # the token, from the 0600 file
    published.remove()                           # when the host closes
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

from ..errors import IpcChannelError
from ..protocol.handshake import PROTOCOL_VERSION
from ..transport.address import AddressInUse, claim_address, is_windows, runtime_dir

__all__ = [
    "RECORD_FORMAT",
    "HostRecord",
    "PublishedHost",
    "list_hosts",
    "process_alive",
    "process_start_time",
    "publish_host",
    "publish_running_host",
    "split_peer_name",
]

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
"""Version of the record's fields; a reader skips records of a format it does not know."""

_RECORD_SUFFIX = ".host.json"
_TOKEN_SUFFIX = ".host.token"
# A record is a few hundred bytes: anything much larger is not one of ours.
_MAX_RECORD_BYTES = 64 * 1024
_PEER_NAME = re.compile(r"^(?P<dcc>.+?)-(?P<version>\d[\w.+-]*)$")
_DCC_ALIASES = {"max": "3dsmax", "3ds max": "3dsmax"}  # `aurora-dcc install max` says max


@dataclass(frozen=True)
class HostRecord:
    """What a running host says about itself (the fields of its JSON record).

    ``dcc`` is the application (``maya``, ``houdini``, ``nuke``, ``3dsmax``,
    ``blender``, ``standalone``, ``qt``), ``dcc_version`` its version;
    ``scene`` the scene open when the host started (``""``: untitled or
    unknown; ``call scene.info`` gives the live one); ``process_start`` the
    process's start time in the system's own units (None where unknown);
    ``started_at`` seconds since the epoch. ``path`` is the record's file.

    Usage::

        record = list_hosts()[0]
        record.channel, record.pid, record.token_required
        token = record.read_token()            # None when the host needs none
    """

    channel: str
    address: str
    dcc: str
    dcc_version: str
    peer: str
    pid: int
    process_start: Optional[int]
    scene: str
    protocol: int
    token_required: bool
    started_at: float
    python: str = ""
    format: int = RECORD_FORMAT
    path: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["path"]
        return data

    @classmethod
    def from_json(cls, data: Any, path: str) -> Optional[HostRecord]:
        """The record in ``data`` (parsed JSON), or None if it is not a valid one."""
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            return None
        try:
            start = data.get("process_start")
            return cls(
                channel=_text(data["channel"]),
                address=_text(data["address"]),
                dcc=_text(data["dcc"]),
                dcc_version=_text(data.get("dcc_version", "")),
                peer=_text(data.get("peer", "")),
                pid=int(data["pid"]),
                process_start=None if start is None else int(start),
                scene=_text(data.get("scene", "")),
                protocol=int(data.get("protocol", 1)),
                token_required=bool(data.get("token_required", False)),
                started_at=float(data.get("started_at", 0.0)),
                python=_text(data.get("python", "")),
                path=path,
            )
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def token_path(self) -> str:
        """The 0600 file beside the record holding the host's token."""
        return self.path[: -len(_RECORD_SUFFIX)] + _TOKEN_SUFFIX

    def read_token(self) -> Optional[str]:
        """The host's token (None if it needs none). Refuses a file others may read."""
        if not self.token_required:
            return None
        try:
            fd = os.open(self.token_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise IpcChannelError(
                f"host {self.channel!r} needs a token but its token file "
                f"{self.token_path!r} is missing; pass --token or set AURORAVIEW_IPC_TOKEN"
            ) from None
        with os.fdopen(fd, "r", encoding="utf-8") as file:
            st = os.fstat(file.fileno())
            if not is_windows() and (st.st_uid != os.geteuid() or st.st_mode & 0o077):
                raise IpcChannelError(
                    f"refusing the token file {self.token_path!r}: it must belong to this user"
                    f" with mode 0600 (found uid {st.st_uid}, {stat.filemode(st.st_mode)})"
                )
            return file.read().strip()

    def matches(self, target: str) -> bool:
        """True if ``target`` names this host: its channel, pid, DCC or peer name."""
        wanted = target.strip().lower()
        wanted = _DCC_ALIASES.get(wanted, wanted)
        return (
            target == self.channel
            or (wanted.isdigit() and int(wanted) == self.pid)
            or wanted in (self.dcc.lower(), self.peer.lower())
        )

    def describe(self) -> str:
        """One line for messages: ``maya 2025 (pid 4711, channel 'auroraview_4711')``."""
        app = f"{self.dcc} {self.dcc_version}".strip()
        return f"{app} (pid {self.pid}, channel {self.channel!r})"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def split_peer_name(peer_name: str) -> tuple[str, str]:
    """A host's peer name as (DCC, version): ``"maya-2025"`` -> ``("maya", "2025")``."""
    match = _PEER_NAME.match(peer_name)
    if match is None:
        return peer_name, ""
    return match.group("dcc"), match.group("version")


class PublishedHost:
    """A host's own record while it runs: :meth:`update` it, :meth:`remove` it at close.

    Usage::

        published = publish_host(name, address, peer_name="blender-4.2.0", scene=path)
        published.update(scene="/shots/a.blend")
        published.remove()                     # idempotent
    """

    def __init__(self, record: HostRecord) -> None:
        self.record = record
        self._removed = False

    def update(self, **changes: Any) -> None:
        """Rewrite the record with ``changes`` (e.g. ``scene=``), atomically."""
        if self._removed:
            return
        self.record = replace(self.record, **changes)
        _write_atomically(self.record.path, json.dumps(self.record.to_json()))

    def remove(self) -> None:
        """Delete the record and its token file. Never raises."""
        if self._removed:
            return
        self._removed = True
        for path in (self.record.token_path, self.record.path):
            with contextlib.suppress(OSError):
                os.unlink(path)


def publish_host(
    channel: str,
    address: str,
    *,
    peer_name: str,
    token: Optional[str] = None,
    dcc: Optional[str] = None,
    dcc_version: Optional[str] = None,
    scene: str = "",
) -> PublishedHost:
    """Write this process's record for the host serving ``channel`` at ``address``.

    ``dcc`` and ``dcc_version`` default to the parts of ``peer_name``
    (``maya-2025``). The token (if any) is written first, so a reader that
    sees the record finds it. Raises ``OSError`` or ``UntrustedServer`` when
    the runtime directory cannot be used.
    """
    directory = runtime_dir()
    pid = os.getpid()
    digest = hashlib.sha256(channel.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    path = os.path.join(directory, f"{pid}-{digest}{_RECORD_SUFFIX}")
    name_dcc, name_version = split_peer_name(peer_name)
    record = HostRecord(
        channel=channel,
        address=address,
        dcc=dcc or name_dcc,
        dcc_version=dcc_version if dcc_version is not None else "" if dcc else name_version,
        peer=peer_name,
        pid=pid,
        process_start=process_start_time(pid),
        scene=scene,
        protocol=PROTOCOL_VERSION,
        token_required=token is not None,
        started_at=time.time(),
        python=".".join(str(part) for part in sys.version_info[:3]),
        path=path,
    )
    published = PublishedHost(record)
    try:
        if token is not None:
            _write_atomically(record.token_path, token)
        _write_atomically(path, json.dumps(record.to_json()))
    except BaseException:
        published.remove()
        raise
    return published


def _write_atomically(path: str, text: str) -> None:
    """``text`` into ``path`` (mode 0600) by renaming a temporary file: never half-written."""
    temporary = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def list_hosts(*, drop_dead: bool = True) -> list[HostRecord]:
    """The records of the running hosts, oldest first.

    Records whose process is gone are deleted (with their token file, and the
    dead host's socket and lock file when nobody holds the name) unless
    ``drop_dead`` is false; they are never returned. Files that are not
    valid records are skipped.
    """
    directory = runtime_dir(create=False)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    records = []
    for name in names:
        if not name.endswith(_RECORD_SUFFIX):
            continue
        record = _read_record(os.path.join(directory, name))
        if record is None:
            continue
        if process_alive(record.pid, record.process_start):
            records.append(record)
        elif drop_dead:
            _drop(record)
    return sorted(records, key=lambda r: (r.started_at, r.pid, r.channel))


def _read_record(path: str) -> Optional[HostRecord]:
    try:
        with open(path, "rb") as file:
            raw = file.read(_MAX_RECORD_BYTES + 1)
    except OSError:
        return None  # removed as we listed it
    if len(raw) > _MAX_RECORD_BYTES:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        log.debug("skipping %s: not a host record", path)
        return None
    return HostRecord.from_json(data, path)


def _drop(record: HostRecord) -> None:
    """Delete a dead host's record and token, and its socket if nobody holds the name."""
    log.info("dropping the record of %s: its process is gone", record.describe())
    PublishedHost(record).remove()
    if is_windows():
        return  # a named pipe leaves nothing behind
    try:
        claim = claim_address(record.channel)  # the lock proves nobody serves it now
    except (AddressInUse, IpcChannelError, OSError):
        return  # a live server has the name again (or it cannot be checked): leave it
    claim.release()


# -- processes ------------------------------------------------------------------


def process_start_time(pid: int) -> Optional[int]:
    """When process ``pid`` started, in clock ticks since boot (Linux), else None.

    Two processes with the same pid never share a start time, so a record
    that stores it cannot be mistaken for a later process given its pid.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat_line = file.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat_line[stat_line.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22, starttime
    except (IndexError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat_line = file.read()
    except OSError:
        return False
    return stat_line[stat_line.rfind(b")") + 2 :][:1] in (b"Z", b"X")


def process_alive(pid: int, start_time: Optional[int] = None) -> bool:
    """True if process ``pid`` runs (and, given ``start_time``, is the same process)."""
    if pid <= 0:
        return False
    if is_windows():
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, run by another user (not one of our hosts, then: see start time)
    if _is_zombie(pid):  # killed, not yet reaped by its parent
        return False
    if start_time is not None:
        now = process_start_time(pid)
        if now is not None and now != start_time:
            return False  # the pid was reused by a later process
    return True


def _windows_process_alive(pid: int) -> bool:
    import ctypes

    kernel32: Any = getattr(ctypes, "windll").kernel32  # noqa: B009 (Windows only)
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return False
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def publish_running_host(channel: str, address: str, **fields: Any) -> Optional[PublishedHost]:
    """:func:`publish_host`, or None with a logged warning: a host serves without a record.

    Hosts call this at start (``fields`` as for :func:`publish_host`); a
    runtime directory that cannot be used must not stop a DCC's host.
    """
    try:
        return publish_host(channel, address, **fields)
    except (OSError, IpcChannelError) as exc:
        log.warning("host %r serves but is not listed (aurora-dcc hosts): %s", channel, exc)
        return None
