"""``IpcCallError``: the exception a request raises, and a handler raises to pick its code."""

from __future__ import annotations

from typing import Any, Optional

from ..errors import IpcChannelError, IpcError

__all__ = ["IpcCallError"]


class IpcCallError(IpcChannelError):
    """A request failed: ``error`` is the :class:`IpcError` (``code``, ``message``, ``data``).

    Raised by ``Peer.request`` (and set on ``request_async`` futures) for a
    remote error, a timeout (-32001) or a shutdown (-32002). A handler may
    raise it to answer with a code of its choice.

    Usage::

        try:
            peer.request("scene.open", {"path": p})
        except IpcCallError as exc:
            if exc.code == ErrorCode.SHUTTING_DOWN: ...
            log.error("%s: %s (%s)", exc.code, exc.message, exc.data)

        def open_scene(path):                      # a handler
            if not os.path.exists(path):
                raise IpcCallError(ErrorCode.INVALID_PARAMS, f"no such file: {path}")
    """

    def __init__(
        self, code: int, message: str, data: Any = None, *, method: Optional[str] = None
    ) -> None:
        self.error = IpcError(code, message, data)
        self.code = int(code)
        self.method = method
        super().__init__(f"{method}: {message}" if method else message)

    @classmethod
    def from_error(cls, error: IpcError, method: Optional[str] = None) -> IpcCallError:
        return cls(error.code, error.message, error.data, method=method)

    @property
    def message(self) -> str:
        return self.error.message

    @property
    def data(self) -> Any:
        return self.error.data

    def to_ipc_error(self) -> IpcError:
        return self.error

    def __reduce__(self) -> tuple[Any, ...]:  # picklable despite the keyword-only argument
        return (_call_error, (self.code, self.message, self.data, self.method))

    def __repr__(self) -> str:
        return f"IpcCallError({self.code}, {self.message!r}, data={self.data!r})"


def _call_error(code: int, message: str, data: Any, method: Optional[str]) -> IpcCallError:
    return IpcCallError(code, message, data, method=method)
