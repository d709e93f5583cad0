"""The listening end of the pure-Python socket server: ``Listener`` and ``bind_user_only``.

A Unix socket that only its user may open (mode 0600, created atomically), or a
Windows named-pipe listener, behind one ``accept``/``wake``/``close``.

Usage::

    listener = Listener("auroraview_4711", backlog=64)
    stream = listener.accept()      # a connected socket; None once wake() was called
    listener.wake()
    listener.close()                # removes the socket file if it is still ours
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import socket
import tempfile
import time
from typing import Any, Optional

from .address import (
    MAX_UNIX_PATH,
    AddressInUse,
    claim_address,
    is_windows,
    resolve_address,
)
from .socket_io import Stream

__all__ = ["Listener", "bind_user_only"]

log = logging.getLogger(__name__)


class Listener:
    """The listening end: a Unix socket (user-only) or a named-pipe listener.

    Usage::

        listener = Listener("auroraview_4711", backlog=64)
        stream = listener.accept()      # blocks; None once wake() was called
        listener.wake()
        listener.close()
    """

    def __init__(self, name: str, backlog: int) -> None:
        self._pipe: Any = None
        if is_windows():
            from . import win_pipe

            self.address = resolve_address(name)
            self._pipe = win_pipe.PipeListener(self.address)
            return
        # The lock first: only its holder may touch the socket file (address.py).
        self._claim = claim_address(name)
        self.address = self._claim.address
        try:
            self._sock = bind_user_only(self.address, name)
        except BaseException:
            self._claim.release()
            raise
        try:
            self._claim.mark_socket()
            self._sock.listen(backlog)
        except BaseException:
            self._sock.close()
            self._claim.release()
            raise
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._sock, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)

    def accept(self) -> Optional[Stream]:
        """The next client's stream, or ``None`` once closed."""
        if self._pipe is not None:
            stream: Optional[Stream] = self._pipe.accept()
            return stream
        while True:
            for key, _ in self._selector.select():
                if key.fileobj is self._wake_r:
                    return None
                try:
                    sock, _addr = self._sock.accept()
                except OSError as exc:  # e.g. out of descriptors: keep serving the others
                    log.warning("accept on %r failed: %s", self.address, exc)
                    time.sleep(0.05)
                    continue
                sock.setblocking(True)
                return sock

    def wake(self) -> None:
        """Make a blocked ``accept`` return ``None``."""
        if self._pipe is not None:
            self._pipe.close()
        else:
            self._wake_w.send(b"x")

    def close(self) -> None:
        """Release the socket (after ``wake`` and the acceptor's exit)."""
        if self._pipe is not None:
            return
        self._selector.close()
        self._sock.close()
        self._wake_w.close()
        self._wake_r.close()
        self._claim.release()  # removes the socket file only if it is still ours


def bind_user_only(address: str, name: str) -> socket.socket:
    """A socket bound at ``address`` whose file only its user may open (mode 0600).

    ``os.umask`` is process-wide, so changing it around ``bind`` would race with
    other threads of the host application creating files. ``chmod`` after
    ``bind`` leaves a moment in which others could connect. Instead the socket
    is bound inside a fresh 0700 directory, made 0600 there, and hard-linked into
    place: the link appears atomically with the right mode, and fails if another
    server took the name meanwhile. Where hard links cannot be made, bind-then-chmod
    is the fallback.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        private = tempfile.mkdtemp(prefix=".aurora-", dir=os.path.dirname(address))
    except OSError:
        private = None
    try:
        staged = None if private is None else os.path.join(private, "s")
        if staged is not None and len(os.fsencode(staged)) < MAX_UNIX_PATH:
            sock.bind(staged)
            os.chmod(staged, 0o600)
            try:
                os.link(staged, address)
                return sock
            except FileExistsError:
                raise AddressInUse(
                    f"channel {name!r} was claimed by another server at {address!r} "
                    "while this one started"
                ) from None
            except OSError as exc:
                log.debug("cannot hard-link the socket (%s); binding in place", exc)
                sock.close()
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(address)
        os.chmod(address, 0o600)
        return sock
    except BaseException:
        sock.close()
        raise
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
