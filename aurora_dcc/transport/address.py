"""Channel names to socket addresses, claiming a name, and checking who serves it.

Both the Qt side and the pure-Python side call :func:`resolve_address` (the
only place a name is validated), so a Qt server and a plain client (or the
reverse) always meet at the same place and accept the same names.

A relative name lives in a private per-user directory (protocol 1.1):
``$XDG_RUNTIME_DIR/aurora_dcc`` or ``<tmp>/aurora_dcc-<uid>``, mode 0700,
created if missing and refused if another user owns it or others may enter it.
An absolute name is used as given. A server claims its name with
:func:`claim_address`: it holds an ``flock`` on ``<socket>.lock`` for its
lifetime, so "stale" is decided by taking that lock, never by a failed connect.

Usage::

    resolve_address("auroraview_4711")   # '/run/user/1000/aurora_dcc/auroraview_4711'
    resolve_address("/run/me/sock")      # absolute paths are used as given
    claim = claim_address("auroraview_4711")   # AddressInUse if a live server has it
    claim.release()                            # when the server closes
    # Windows: '\\\\.\\pipe\\auroraview_4711'
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import socket
import stat
import struct
import sys
from typing import Any, Optional

from ..errors import IpcChannelError

__all__ = [
    "MAX_UNIX_PATH",
    "AddressClaim",
    "AddressInUse",
    "InvalidChannelName",
    "UntrustedServer",
    "check_server_uid",
    "claim_address",
    "is_windows",
    "resolve_address",
    "runtime_dir",
    "temp_dir",
]

log = logging.getLogger(__name__)

MAX_UNIX_PATH = 104 if sys.platform == "darwin" else 108
"""Bytes in ``sockaddr_un.sun_path`` (including the terminating NUL)."""

_RELATIVE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_PIPE_PREFIX = "\\\\.\\pipe\\"


class AddressInUse(IpcChannelError, OSError):
    """Another live server already listens on this channel name."""


class InvalidChannelName(IpcChannelError, ValueError):
    """A channel name that cannot be used (characters, ``..``, NUL, too long).

    Usage::

        try:
            resolve_address("../x")
        except InvalidChannelName as exc:   # also a ValueError
            log.error("bad channel name: %s", exc)
    """


class UntrustedServer(IpcChannelError, PermissionError):
    """The socket or its directory belongs to another user: nothing was sent to it.

    Usage::

        try:
            channel = LocalSocketChannel.connect("auroraview_4711", token=token)
        except UntrustedServer:   # a squatter: another user's process has the name
            raise SystemExit("refusing to send the token")
    """


def is_windows() -> bool:
    return os.name == "nt"


def temp_dir() -> str:
    """``QDir::tempPath()`` on Unix: ``$TMPDIR`` if set, else ``/tmp``, cleaned."""
    return os.path.normpath(os.environ.get("TMPDIR") or "/tmp")


def runtime_dir(create: bool = True) -> str:
    """The private directory of relative channel names; created (0700) and checked.

    Raises ``UntrustedServer`` if it is not a real directory of this user with
    mode 0700 (or narrower): another user could then place or replace sockets in it.
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    uid = os.geteuid()
    if base and os.path.isabs(base):
        path = os.path.join(os.path.normpath(base), "aurora_dcc")
    else:
        path = os.path.join(temp_dir(), f"aurora_dcc-{uid}")
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path  # not created: nobody serves anything there yet
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        raise UntrustedServer(
            f"refusing the channel directory {path!r}: it must be a directory owned by "
            f"uid {uid} with mode 0700 (found uid {st.st_uid}, mode {stat.filemode(st.st_mode)})"
        )
    return path


def resolve_address(name: str) -> str:
    """The socket path (Unix) or pipe name (Windows) of channel ``name``.

    Raises ``InvalidChannelName`` for a name no server could listen on: empty,
    with a NUL, a ``..`` component, characters other than letters, digits, ``_``,
    ``.`` and ``-`` in a relative name, or a path longer than ``sun_path`` allows.
    """
    _validate(name)
    if is_windows():
        return name if name.startswith(_PIPE_PREFIX) else _PIPE_PREFIX + name
    path = name if os.path.isabs(name) else os.path.join(runtime_dir(), name)
    if len(os.fsencode(path)) >= MAX_UNIX_PATH:
        raise InvalidChannelName(
            f"socket path {path!r} is longer than the {MAX_UNIX_PATH - 1} bytes a Unix socket "
            "allows; use a shorter channel name"
        )
    return path


def _validate(name: str) -> None:
    if not name:
        raise InvalidChannelName("a channel name must not be empty")
    if "\0" in name:
        raise InvalidChannelName(f"channel name {name!r} contains a NUL character")
    if ".." in re.split(r"[\\/]", name):
        raise InvalidChannelName(f"channel name {name!r} contains a '..' component")
    absolute = name.startswith(_PIPE_PREFIX) if is_windows() else os.path.isabs(name)
    if not absolute and (_RELATIVE_NAME.fullmatch(name) is None or name == "."):
        raise InvalidChannelName(
            f"channel name {name!r} may only hold letters, digits, '_', '.' and '-' "
            "(or be an absolute path)"
        )


class AddressClaim:
    """A server's hold on its channel name: an ``flock`` on ``<address>.lock``.

    The lock lives as long as the descriptor (O_CLOEXEC: a child started with
    ``exec`` does not inherit it), so a crashed server's claim ends with its
    process. :meth:`release` removes the socket file only if it is still the
    one ``mark_socket`` recorded (its inode), then the lock file.

    Usage::

        claim = claim_address("auroraview_4711")
        sock.bind(claim.address); claim.mark_socket()
        claim.release()
    """

    def __init__(self, address: str, lock_fd: Optional[int]) -> None:
        self.address = address
        self._lock_fd = lock_fd
        self._inode: Optional[tuple[int, int]] = None
        self._inode_fd: Optional[int] = None

    def mark_socket(self) -> None:
        """Record the socket file now at ``address`` as this server's."""
        # Linux reuses a freed inode number at once, so an O_PATH descriptor keeps ours
        # allocated (and unique) while we run.
        o_path = getattr(os, "O_PATH", 0)
        if o_path:
            with contextlib.suppress(OSError):
                self._inode_fd = os.open(self.address, o_path | os.O_NOFOLLOW | os.O_CLOEXEC)
        st = os.lstat(self.address) if self._inode_fd is None else os.fstat(self._inode_fd)
        self._inode = (st.st_dev, st.st_ino)

    def release(self) -> None:
        """Remove our socket file (if still ours) and the lock file; drop the lock."""
        if self._inode is not None:
            with contextlib.suppress(OSError):
                st = os.lstat(self.address)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.address)
            self._inode = None
        if self._inode_fd is not None:
            os.close(self._inode_fd)
            self._inode_fd = None
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                if _same_file(fd, self.address + ".lock"):
                    os.unlink(self.address + ".lock")  # still locked: nobody can claim it now
            os.close(fd)


def claim_address(name: str) -> AddressClaim:
    """Claim channel ``name`` for a new server; ``AddressInUse`` if a live one has it.

    The claim is the lock on ``<address>.lock``: whoever holds it owns the name,
    so of two servers racing, exactly one wins. Holding it, a socket file left at
    the address by a dead server is removed -- unless something still accepts on
    it (a server that does not take the lock), which also raises ``AddressInUse``.
    Named pipes on Windows vanish with their server, so there is nothing to do.
    """
    address = resolve_address(name)
    if is_windows():
        return AddressClaim(address, None)
    import fcntl  # Unix only

    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    while True:
        fd = os.open(address + ".lock", flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AddressInUse(
                f"channel {name!r} is already served by a live server at {address!r}; "
                "pick another name or stop that server first"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, address + ".lock"):
            break
        os.close(fd)  # the previous owner removed this lock file as we locked it: again
    claim = AddressClaim(address, fd)
    try:
        _remove_stale_socket(name, address)
    except BaseException:
        claim.release()
        raise
    return claim


def _same_file(fd: int, path: str) -> bool:
    try:
        st, here = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


def _remove_stale_socket(name: str, address: str) -> None:
    """With the lock held: remove a dead server's socket file at ``address``."""
    try:
        st = os.lstat(address)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise AddressInUse(f"{address!r} exists and is not a socket; refusing to remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(address)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)  # nobody accepts there and nobody holds the lock: stale
        return
    except OSError as exc:
        # EAGAIN: a full backlog is a live (busy) server that does not take the lock.
        if exc.errno not in (errno.EAGAIN, errno.EINPROGRESS):
            raise
    finally:
        probe.close()
    raise AddressInUse(
        f"channel {name!r} is already served by a live server at {address!r} "
        "(one that holds no lock file); pick another name or stop that server first"
    )


def check_server_uid(sock: Any, name: str) -> None:
    """Raise ``UntrustedServer`` if the peer of connected Unix socket ``sock`` runs
    as another user. Linux: ``SO_PEERCRED``; macOS: ``LOCAL_PEERCRED``; elsewhere
    (no such option) the check is skipped -- the private directory is the guard there.
    """
    uid = _peer_uid(sock)
    if uid is not None and uid != os.geteuid():
        raise UntrustedServer(
            f"the server of channel {name!r} runs as uid {uid}, not as this user "
            f"({os.geteuid()}); refusing to talk to it (nothing was sent)"
        )


def _peer_uid(sock: Any) -> Optional[int]:
    peer_credentials = getattr(socket, "SO_PEERCRED", None)
    try:
        if peer_credentials is not None:
            credentials = sock.getsockopt(socket.SOL_SOCKET, peer_credentials, 12)
            return int(struct.unpack("3i", credentials)[1])  # pid, uid, gid
        if sys.platform == "darwin":
            # SOL_LOCAL=0, LOCAL_PEERCRED=1: struct xucred {u_int version; uid_t uid; ...}
            credentials = sock.getsockopt(0, 1, 76)
            return int(struct.unpack("2I", credentials[:8])[1])
    except (OSError, struct.error) as exc:
        log.debug("cannot read the server's credentials: %s", exc)
    return None
