"""Sinks: URL dispatch, JSON lines written and read back, fsync'd flush, reopen, stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from netwarden.metrics import Metrics
from netwarden.sinks import (
    FileSink,
    SinkError,
    StdoutSink,
    open_sink,
    register_sink_scheme,
    reopen_sink,
    supported_schemes,
)
from netwarden.stages import Sink
from prometheus_client import CollectorRegistry

DOCS: list[dict[str, Any]] = [
    {"@timestamp": "2023-11-14T22:13:20.123456Z", "event": {"kind": "alert"}, "n": 1},
    {"message": "ünïcode ✓", "netwarden": {"score": 0.98, "reasons": []}},
]


def _read(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("form", ["plain", "url"])
def test_file_sink_round_trip(tmp_path: Path, form: str) -> None:
    p = tmp_path / "alerts.jsonl"
    sink = open_sink(str(p) if form == "plain" else f"file://{p}")
    assert sink.kind == "file" and isinstance(sink, FileSink)
    sink.write(DOCS)
    sink.flush()
    assert _read(p) == DOCS  # visible to another reader once flush returned
    raw = p.read_text(encoding="utf-8")
    assert raw.count("\n") == 2 and ", " not in raw and ": " not in raw  # compact
    sink.write(DOCS[:1])
    sink.close()
    assert _read(p) == DOCS + DOCS[:1]
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o640 & ~umask  # never world-readable


def test_file_sink_appends_across_opens(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    for _ in range(2):
        s = open_sink(str(p))
        s.write(DOCS)
        s.close()
    assert _read(p) == DOCS + DOCS


def test_relative_path_and_percent_encoded_url(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    s = open_sink("rel.jsonl")
    assert isinstance(s, FileSink) and s.path == tmp_path / "rel.jsonl"
    s.close()
    s2 = open_sink(f"file://{tmp_path}/with%20space.jsonl")
    s2.write(DOCS)
    s2.close()
    assert _read(tmp_path / "with space.jsonl") == DOCS


def test_reopen_after_logrotate(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    sink = open_sink(str(p))
    sink.write(DOCS[:1])
    sink.flush()
    rotated = tmp_path / "alerts.jsonl.1"
    os.rename(p, rotated)
    sink.write(DOCS[1:])  # still goes to the renamed file until reopened
    reopen_sink(sink)
    sink.write(DOCS[:1])
    sink.close()
    assert _read(rotated) == DOCS
    assert _read(p) == DOCS[:1]


def test_unencodable_documents_are_skipped_and_counted(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    p = tmp_path / "a.jsonl"
    sink = open_sink(str(p), metrics=Metrics(reg))
    sink.write([{"x": float("nan")}, {"y": object()}, {"n": np.int64(3), "f": np.float32(0.5)}])
    sink.close()
    assert _read(p) == [{"n": 3, "f": 0.5}]
    assert reg.get_sample_value("netwarden_errors_total", {"stage": "sink"}) == 2
    assert reg.get_sample_value("netwarden_sink_records_total", {"sink": "file"}) == 1


def test_unknown_scheme_names_url_and_supported() -> None:
    with pytest.raises(SinkError) as ei:
        open_sink("bogus://host/x")
    msg = str(ei.value)
    assert "'bogus://host/x'" in msg and "'bogus'" in msg
    for form in ("-", "file://"):
        assert form in msg
    with pytest.raises(SinkError, match="absolute path"):
        open_sink("file://relative/path")
    with pytest.raises(SinkError, match="empty"):
        open_sink("")


def test_unopenable_file(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match=r"cannot open .*no-such-dir"):
        open_sink(str(tmp_path / "no-such-dir" / "a.jsonl"))


def test_closed_sink_refuses_writes(tmp_path: Path) -> None:
    sink = open_sink(str(tmp_path / "a.jsonl"))
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(SinkError, match="closed"):
        sink.write(DOCS)


class _ListSink:
    kind = "list"

    def __init__(self, url: str) -> None:
        self.url = url
        self.docs: list[Any] = []

    def write(self, docs: Any) -> None:
        self.docs.extend(docs)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_registry_is_extensible() -> None:
    register_sink_scheme("testlist", lambda url, metrics: _ListSink(url))
    try:
        s = open_sink("testlist://somewhere")
        assert isinstance(s, _ListSink) and s.url == "testlist://somewhere"
        assert "testlist://" in supported_schemes()
        reopen_sink(s)  # no reopen(): a no-op
        with pytest.raises(ValueError, match="already registered"):
            register_sink_scheme("testlist", lambda url, metrics: _ListSink(url))
    finally:
        from netwarden.sinks import _SCHEMES

        _SCHEMES.pop("testlist", None)


def test_stdout_sink_in_a_subprocess() -> None:
    code = (
        "import json, sys\n"
        "from netwarden.sinks import open_sink\n"
        "s = open_sink('-')\n"
        "docs = json.loads(sys.argv[1])\n"
        "s.write(docs); s.flush(); s.write(docs[:1]); s.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(DOCS)], capture_output=True, timeout=60, check=True
    )
    lines = out.stdout.decode("utf-8").splitlines()
    assert [json.loads(x) for x in lines] == DOCS + DOCS[:1]
    assert out.stdout.endswith(b"\n")


def test_stdout_sink_on_a_given_stream(tmp_path: Path) -> None:
    p = tmp_path / "out"
    with p.open("wb") as f:
        s = StdoutSink(stream=f)
        s.write(DOCS)
        s.close()
        assert not f.closed  # never closes the process's stream
    assert _read(p) == DOCS


@pytest.mark.parametrize("kind", ["file", "stdout"])
def test_sink_contract(tmp_path: Path, kind: str) -> None:
    """What every sink promises: a kind, write/flush/close, empty writes are fine."""
    sink: Sink
    f = (tmp_path / "s").open("wb")
    sink = open_sink(str(tmp_path / "f.jsonl")) if kind == "file" else StdoutSink(stream=f)
    assert sink.kind == kind
    sink.write([])
    sink.write(DOCS)
    sink.flush()
    sink.close()
    f.close()
    assert _read(tmp_path / ("f.jsonl" if kind == "file" else "s")) == DOCS
