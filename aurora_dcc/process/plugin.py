"""``ProcessPlugin``: heavy work in a child Python process, progress back on the main thread.

The DCC side starts a script or module with :class:`ProcessPlugin`; the
child reports through :func:`plugin_context` (progress, any events, a
result) and may be cancelled. Events reach the DCC side's subscribers on the
Qt main thread when a ``QCoreApplication`` exists (through a
``DccIpcChannel``), otherwise on the thread that reads the child's socket.
When the child has exited and everything it sent has been delivered,
subscribers get a last ``plugin.finished`` event with its ``returncode``.

Usage (DCC side)::

    plugin = ProcessPlugin("bake.py", ["--frames", "1-100"],
                           on_progress=lambda data: bar.setValue(data["done"]))
    plugin.on("plugin.finished", lambda event, data: bar.hide())
    plugin.start()
    ...
    plugin.cancel()                       # asks the child, terminates it after a grace period
    value = plugin.result(timeout=600)    # or ProcessPluginError / PluginCancelled

Usage (bake.py, the child)::

    with plugin_context() as plugin:
        for frame in range(1, 101):
            if plugin.cancelled.is_set():
                break
            bake(frame)
            plugin.progress(frame, 100, f"frame {frame}")
        plugin.set_result({"frames": frame})

A child that does not use :func:`plugin_context` runs too: it just reports
nothing but its exit code and stderr.
"""

from __future__ import annotations

import fnmatch
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Callable, Optional

from ..channel.base import IpcChannel
from ..errors import ChannelTimeout, IpcChannelError
from ..protocol.message import IpcMessage
from ..rpc.peer import EventHandler
from .backend import BackendHandle, spawn_backend
from .backend_peer import BackendError, BackendPeer, connect_backend
from .environment import IpcMode
from .factory import qt_app_exists

__all__ = [
    "PluginCancelled",
    "PluginContext",
    "ProcessPlugin",
    "ProcessPluginError",
    "plugin_context",
]

log = logging.getLogger(__name__)

PROGRESS_EVENT = "progress"
RESULT_EVENT = "plugin.result"
CANCEL_EVENT = "plugin.cancel"
FINISHED_EVENT = "plugin.finished"
CANCEL_GRACE = 3.0


class ProcessPluginError(BackendError):
    """The plugin's process failed: ``returncode`` and ``stderr_tail`` say how."""


class PluginCancelled(ProcessPluginError):
    """The plugin was cancelled before it finished."""


class ProcessPlugin:
    """A Python script (or ``module=True``: a module) run in a child process.

    ``on_progress(data)`` is a shortcut for ``on("progress", ...)``.
    ``main_thread``: deliver events on the Qt main thread (default: when a
    ``QCoreApplication`` exists). ``cancel_grace``: seconds a cancelled child
    gets to stop by itself before it is terminated. See the module docstring.

    Usage::

        plugin = ProcessPlugin("tools.bake", ["--fast"], module=True).start()
        plugin.on("progress", lambda event, data: log.info("%s", data))
        plugin.result(timeout=60.0)
    """

    def __init__(
        self,
        target: str,
        args: Sequence[str] = (),
        *,
        module: bool = False,
        on_progress: Optional[Callable[[Any], None]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        python: str = sys.executable,
        main_thread: Optional[bool] = None,
        cancel_grace: float = CANCEL_GRACE,
    ) -> None:
        self.target = target
        self.argv = [python, *(("-m", target) if module else (target,)), *args]
        self.env = env
        self.cwd = cwd
        self.main_thread = main_thread
        self.cancel_grace = cancel_grace
        self._subscriptions: list[tuple[str, EventHandler]] = []
        self._handle: Optional[BackendHandle] = None
        self._relay: Optional[IpcChannel] = None
        self._result: Any = None
        self._cancel_requested = False
        self._finished = threading.Event()
        if on_progress is not None:
            self.on(PROGRESS_EVENT, lambda _event, data: on_progress(data))

    # -- events ----------------------------------------------------------------

    def on(self, pattern: str, handler: EventHandler) -> Callable[[], None]:
        """Call ``handler(event, data)`` for the child's events matching ``pattern``.

        ``pattern`` is a name or an fnmatch pattern (``"*"``). Returns unsubscribe.
        """
        entry = (pattern, handler)
        self._subscriptions.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscriptions:
                self._subscriptions.remove(entry)

        return unsubscribe

    def _from_child(self, event: str, data: Any) -> None:
        """The socket reader thread: keep the result, pass the rest on."""
        if event == RESULT_EVENT:
            self._result = data.get("value") if isinstance(data, dict) else data
        else:
            self._deliver(event, data)

    def _deliver(self, event: str, data: Any) -> None:
        relay = self._relay
        if relay is None:
            self._dispatch(event, data)
        else:
            relay.emit(event, data)  # queued for the main thread

    def _dispatch(self, event: str, data: Any) -> None:
        for pattern, handler in tuple(self._subscriptions):
            if pattern == event or fnmatch.fnmatchcase(event, pattern):
                try:
                    handler(event, data)
                except Exception:
                    log.exception("plugin %s: handler for %r raised", self.target, event)

    def _dispatch_message(self, msg: IpcMessage) -> None:
        self._dispatch(msg.event or "", msg.data)

    # -- running -----------------------------------------------------------------

    def start(self) -> ProcessPlugin:
        """Start the child; returns at once. Raises :class:`ProcessPluginError` if it cannot."""
        if self._handle is not None:
            raise RuntimeError(f"plugin {self.target} was already started")
        if self.main_thread if self.main_thread is not None else qt_app_exists():
            from ..main_thread.channel import DccIpcChannel

            relay = DccIpcChannel(f"plugin-{self.target}")
            relay.on_message(self._dispatch_message)
            self._relay = relay
        try:
            handle = spawn_backend(
                self.argv, mode=IpcMode.LOCAL_SOCKET, env=self.env, cwd=self.cwd, wait_ready=False
            )
        except BackendError as exc:
            self._close_relay()
            raise ProcessPluginError(str(exc), returncode=exc.returncode) from exc
        handle.on("*", self._from_child)
        self._handle = handle
        threading.Thread(
            target=self._await_exit, name=f"aurora-plugin-{handle.pid}", daemon=True
        ).start()
        return self

    def _await_exit(self) -> None:
        handle = self._require_handle()
        returncode = handle.wait()
        self._finished.set()
        self._deliver(FINISHED_EVENT, {"returncode": returncode})
        self._close_relay()

    def _close_relay(self) -> None:
        if self._relay is not None:
            self._relay.shutdown()  # the main thread still delivers what is queued

    def _require_handle(self) -> BackendHandle:
        if self._handle is None:
            raise RuntimeError(f"plugin {self.target} has not been started")
        return self._handle

    def cancel(self, grace: Optional[float] = None) -> None:
        """Ask the child to stop; terminate it if it still runs ``grace`` seconds later.

        Returns at once; ``result()`` then raises :class:`PluginCancelled`
        (unless the child had already finished).
        """
        handle = self._require_handle()
        if self._finished.is_set():
            return  # too late: result() reports how it ended
        self._cancel_requested = True
        try:
            handle.emit(CANCEL_EVENT)
        except IpcChannelError as exc:  # not connected (yet): nobody to ask
            log.debug("plugin %s: cancel not sent: %s", self.target, exc)
        wait = self.cancel_grace if grace is None else grace

        def end_if_still_running() -> None:
            try:
                handle.wait(wait)
            except ChannelTimeout:
                log.info("plugin %s ignored cancel for %ss: stopping it", self.target, wait)
                handle.stop(timeout=0.5)

        threading.Thread(
            target=end_if_still_running, name="aurora-plugin-cancel", daemon=True
        ).start()

    def result(self, timeout: Optional[float] = None) -> Any:
        """Wait for the child to finish; the value it passed to ``set_result`` (or ``None``).

        Raises :class:`PluginCancelled` after ``cancel()``,
        :class:`ProcessPluginError` (exit code, stderr tail) when it failed,
        ``ChannelTimeout`` when it still runs after ``timeout`` seconds.
        """
        handle = self._require_handle()
        if not self._finished.wait(timeout):
            raise ChannelTimeout(f"plugin {self.target} still runs after {timeout}s")
        returncode = handle.returncode
        if self._cancel_requested:
            raise PluginCancelled(
                f"plugin {self.target} was cancelled",
                returncode=returncode,
                stderr_tail=handle.stderr_tail,
            )
        if returncode != 0:
            raise ProcessPluginError(
                f"plugin {self.target} failed",
                returncode=returncode,
                stderr_tail=handle.stderr_tail,
            )
        return self._result

    def done(self) -> bool:
        """True once the child has exited and its events have been passed on."""
        return self._finished.is_set()

    @property
    def pid(self) -> int:
        return self._require_handle().pid

    @property
    def returncode(self) -> Optional[int]:
        return self._require_handle().returncode

    @property
    def stderr_tail(self) -> str:
        return self._require_handle().stderr_tail

    def __enter__(self) -> ProcessPlugin:
        return self if self._handle is not None else self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if not self._finished.is_set():
            self.cancel()

    def __repr__(self) -> str:
        if self._handle is None:
            state = "not started"
        elif self._finished.is_set():
            state = f"exited ({self._handle.returncode})"
        else:
            state = f"running (pid {self._handle.pid})"
        return f"<ProcessPlugin {self.target!r} {state}>"


# -- the child's side ------------------------------------------------------------


class PluginContext:
    """The child's end of a :class:`ProcessPlugin` (from :func:`plugin_context`).

    ``cancelled`` is set when the DCC side calls ``cancel()``; check it
    between steps of the work. ``peer`` is the underlying
    :class:`~aurora_dcc.process.backend_peer.BackendPeer` (handlers, requests to the host).

    Usage::

        with plugin_context() as plugin:
            plugin.progress(1, 10, "loading")
            plugin.set_result({"ok": True})
    """

    def __init__(self, peer: BackendPeer) -> None:
        self.peer = peer
        self.cancelled = threading.Event()
        peer.on(CANCEL_EVENT, lambda _event, _data: self.cancelled.set())
        peer.announce()

    def progress(
        self, done: float, total: Optional[float] = None, message: Optional[str] = None
    ) -> None:
        """Send a ``progress`` event: ``{"done", "total", "message"}`` (absent ones left out)."""
        data: dict[str, Any] = {"done": done}
        if total is not None:
            data["total"] = total
        if message is not None:
            data["message"] = message
        self.peer.emit(PROGRESS_EVENT, data)

    def emit(self, event: str, data: Any = None) -> None:
        """Send any event to the DCC side's subscribers."""
        self.peer.emit(event, data)

    def set_result(self, value: Any) -> None:
        """The value ``ProcessPlugin.result()`` returns (JSON)."""
        self.peer.emit(RESULT_EVENT, {"value": value})

    def close(self) -> None:
        self.peer.channel.close()

    def __enter__(self) -> PluginContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def plugin_context(timeout: float = 10.0) -> PluginContext:
    """Connect this child process to the :class:`ProcessPlugin` that started it."""
    return PluginContext(connect_backend(timeout=timeout))
