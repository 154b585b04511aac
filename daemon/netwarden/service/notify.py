"""systemd notification protocol (``sd_notify``) over ``$NOTIFY_SOCKET``, without libsystemd.

A service of ``Type=notify`` tells the service manager its state by sending newline-separated
``KEY=VALUE`` assignments in one datagram to the unix socket named in ``$NOTIFY_SOCKET``:

* ``READY=1``: start-up finished (source open, model loaded); also ends a reload.
* ``RELOADING=1`` with ``MONOTONIC_USEC=<CLOCK_MONOTONIC in us>``: a SIGHUP reload began
  (systemd >= 253 requires the timestamp for ``Type=notify-reload``; older ones ignore it).
* ``STOPPING=1``: a SIGTERM shutdown began.
* ``WATCHDOG=1``: the pipeline is alive; must come more often than ``WatchdogSec``.
* ``STATUS=<text>``: one line shown by ``systemctl status``.

The address is a filesystem path or, when it starts with ``@``, a name in the abstract
namespace (a leading NUL byte).  When ``$NOTIFY_SOCKET`` is unset (not run by systemd) every
call is a cheap no-op, so the application calls the notifier unconditionally.  Send errors
are logged once and never raised: a lost notification must not stop the capture.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _socket_address(value: str) -> str | bytes:
    """Turn a ``$NOTIFY_SOCKET`` value into an address for ``socket.sendto``.

    >>> _socket_address("@sd/notify")
    b'\\x00sd/notify'
    >>> _socket_address("/run/systemd/notify")
    '/run/systemd/notify'
    """
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval_s(env: Mapping[str, str], *, pid: int) -> float | None:
    """How often systemd expects ``WATCHDOG=1``: ``$WATCHDOG_USEC`` as seconds, or None.

    ``$WATCHDOG_PID``, when set, must name this process (else the watchdog is someone else's).

    >>> watchdog_interval_s({"WATCHDOG_USEC": "20000000"}, pid=7)
    20.0
    >>> watchdog_interval_s({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "8"}, pid=7) is None
    True
    """
    usec = env.get("WATCHDOG_USEC", "")
    wpid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if wpid and (not wpid.isdigit() or int(wpid) != pid):
        return None
    return int(usec) / 1e6


class Notifier:
    """Sends service-state notifications to systemd; a no-op when no socket is configured.

    Args:
        address: the ``$NOTIFY_SOCKET`` value (path or ``@abstract``); None disables it.
        watchdog_s: the watchdog interval (``$WATCHDOG_USEC``), None when no watchdog.
    """

    def __init__(self, address: str | None, *, watchdog_s: float | None = None) -> None:
        self.address = address or None
        self.watchdog_s = watchdog_s if self.address else None
        self._sock: socket.socket | None = None
        self._warned = False
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Notifier:
        """Build from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` in ``env``."""
        return cls(env.get("NOTIFY_SOCKET"), watchdog_s=watchdog_interval_s(env, pid=os.getpid()))

    @property
    def enabled(self) -> bool:
        """True when notifications go somewhere."""
        return self._sock is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; True when sent."""
        if self._sock is None or self.address is None:
            return False
        msg = "\n".join(assignments).encode()
        try:
            self._sock.sendto(msg, _socket_address(self.address))
        except OSError as e:
            if not self._warned:
                log.warning("cannot notify the service manager at %s: %s", self.address, e)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) finished."""
        extra = (f"STATUS={_one_line(status)}",) if status else ()
        return self.notify("READY=1", *extra)

    def reloading(self, *, monotonic_ns: int | None = None) -> bool:
        """A reload began; send :meth:`ready` when it is over (success or refusal)."""
        ns = time.monotonic_ns() if monotonic_ns is None else monotonic_ns
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={ns // 1000}")

    def stopping(self, status: str | None = None) -> bool:
        """A clean shutdown began."""
        extra = (f"STATUS={_one_line(status)}",) if status else ()
        return self.notify("STOPPING=1", *extra)

    def watchdog(self) -> bool:
        """Keep-alive for ``WatchdogSec``: send only when the pipeline made progress."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """Free-form one-line status for ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def close(self) -> None:
        """Close the socket (idempotent); later calls are no-ops."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    """Collapse newlines, which would start a new assignment.

    >>> _one_line("a\\nb")
    'a b'
    """
    return " ".join(text.splitlines())
