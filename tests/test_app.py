"""The pipeline in-process: end-to-end counts, determinism, stop, errors, pacing, live expiry,
commit watermarks, reload, the source registry, the default model, and extract_flows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from modelutil import write_model_dir
from netwarden import app_build
from netwarden.app import Clock, Hooks, Pipeline
from netwarden.app_build import build_pipeline, find_default_model_dir, load_scoring
from netwarden.app_pace import PACE_STEP_NS, Pacer, frame_seq_marks
from netwarden.app_sources import (
    PcapSource,
    SourceContext,
    capture_paths,
    open_source,
    register_source_scheme,
)
from netwarden.capture import open_capture
from netwarden.config import Config, ConfigError, config_from_dict
from netwarden.exitcodes import BAD_INPUT, MODEL_ERROR, UserError
from netwarden.extract import extract_flows
from netwarden.flows.params import FlowParams
from netwarden.metrics import Metrics
from netwarden.packets import FrameBatch


def _cfg(model_dir: Path, out: Path, **kw: Any) -> Config:
    return Config().with_overrides(
        model_dir=model_dir,
        alert_sinks=[str(out / "alerts.jsonl")],
        flow_log=str(out / "flows.jsonl"),
        **kw,
    )


def _sample(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def _lines(p: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in p.read_text().splitlines()]


def _replay(
    pcap: Path, cfg: Config, *, max_frames: int = 65536, **kw: Any
) -> tuple[Pipeline, Metrics]:
    m = Metrics()
    pipe = build_pipeline(cfg, m, source=PcapSource([pcap], metrics=m, max_frames=max_frames), **kw)
    with pipe:
        pipe.run()
    return pipe, m


def test_replay_end_to_end(pcap: tuple[Path, int], model_dir: Path, tmp_path: Path) -> None:
    path, n_packets = pcap
    pipe, m = _replay(path, _cfg(model_dir, tmp_path))
    s = pipe.summary
    assert s.packets == n_packets == _sample(m, "netwarden_packets_total")
    assert s.files == {str(path): n_packets}
    assert s.bytes == _sample(m, "netwarden_bytes_total") > 0
    assert sum(s.flows_by_reason.values()) == s.flows > 20
    for reason, count in s.flows_by_reason.items():
        assert _sample(m, "netwarden_flows_ended_total", reason=reason) == count
    assert {"fin", "rst", "end_of_input"} <= set(s.flows_by_reason)
    assert _sample(m, "netwarden_active_flows") == 0
    assert _sample(m, "netwarden_flows_scored_total") == s.flows
    assert _sample(m, "netwarden_inference_batch_size_count") >= 1
    alerts = _lines(tmp_path / "alerts.jsonl")
    flows = _lines(tmp_path / "flows.jsonl")
    assert len(flows) == s.flows and sum(s.flows_by_label.values()) == s.flows
    assert 0 < len(alerts) == s.alerts < s.flows
    for label, count in s.alerts_by_label.items():
        assert _sample(m, "netwarden_alerts_total", label=label) == count
        assert sum(a["netwarden"]["label"] == label for a in alerts) == count
    assert all(a["event"]["kind"] == "alert" for a in alerts)
    assert not s.errors


def test_two_replays_are_identical(pcap: tuple[Path, int], model_dir: Path, tmp_path: Path) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        out.mkdir()
        _replay(pcap[0], _cfg(model_dir, out), max_frames=97)
    ids = [[f["netwarden"]["flow_id"] for f in _lines(o / "flows.jsonl")] for o in outs]
    assert ids[0] == ids[1] and len(set(ids[0])) == len(ids[0]) > 20
    assert (outs[0] / "alerts.jsonl").read_bytes() == (outs[1] / "alerts.jsonl").read_bytes()


def test_batch_size_does_not_change_the_flows(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    ids = []
    for n, frames in enumerate((50, 65536)):
        out = tmp_path / str(n)
        out.mkdir()
        _replay(pcap[0], _cfg(model_dir, out), max_frames=frames)
        ids.append(sorted(f["netwarden"]["flow_id"] for f in _lines(out / "flows.jsonl")))
    assert ids[0] == ids[1]


def test_stage_error_is_counted_and_the_loop_goes_on(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    m = Metrics()
    pipe = build_pipeline(
        _cfg(model_dir, tmp_path), m, source=PcapSource([pcap[0]], metrics=m, max_frames=100)
    )
    real = pipe.s.decode
    calls = [0]

    def failing_once(batch: FrameBatch) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("corrupt batch")
        return real(batch)

    pipe.s.decode = failing_once
    with pipe:
        s = pipe.run()
    assert calls[0] > 2 and s.packets == pcap[1]
    assert _sample(m, "netwarden_errors_total", stage="decode") == 1 == s.errors["decode"]
    assert s.flows > 10


def test_stop_ends_reading_and_flushes_everything(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    m = Metrics()
    hooks = Hooks()
    pipe = build_pipeline(
        _cfg(model_dir, tmp_path),
        m,
        hooks=hooks,
        source=PcapSource([pcap[0]], metrics=m, max_frames=100),
    )
    hooks.on_tick.append(lambda now: pipe.stop())
    with pipe:
        s = pipe.run()
    assert s.packets == 100
    assert s.flows > 0 and s.flows_by_reason["end_of_input"] > 0
    assert pipe.s.table.active == 0 and pipe.s.batcher.pending == 0
    assert len(_lines(tmp_path / "flows.jsonl")) == s.flows  # the sinks were flushed


class FakeTime:
    def __init__(self, wall: float = 0.0) -> None:
        self.mono = 0.0
        self.wall_s = wall
        self.slept = 0.0

    def sleep(self, s: float) -> None:
        self.slept += s
        self.mono += s

    def clock(self) -> Clock:
        return Clock(wall=lambda: self.wall_s, monotonic=lambda: self.mono, sleep=self.sleep)


def test_realtime_sleeps_for_the_capture_span(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    with open_capture(pcap[0]) as r:
        ts = np.concatenate([b.ts_ns for b in r])
    span_s = (int(ts.max()) - int(ts.min())) / 1e9
    t = FakeTime()
    m = Metrics()
    pipe = build_pipeline(
        _cfg(model_dir, tmp_path),
        m,
        realtime=True,
        clock=t.clock(),
        source=PcapSource([pcap[0]], metrics=m),
    )
    with pipe:
        s = pipe.run()
    assert s.packets == pcap[1]
    assert span_s > 30
    assert span_s - PACE_STEP_NS / 1e9 <= t.slept <= span_s + 1e-6


def test_pacer_slices_and_marks() -> None:
    ts = np.array([0, 1, 5_000_000, 12_000_000, 12_000_001, 40_000_000], np.int64)
    n = len(ts)
    z = np.zeros(n, np.int64)
    b = FrameBatch(
        np.zeros(0, np.uint8),
        z,
        z.astype(np.uint32),
        z.astype(np.uint32),
        ts,
        z.astype(np.uint16),
        np.zeros(n, np.int32),
        np.arange(10, 10 + n),
    )
    t = FakeTime()

    def sleep_slice(s: float) -> bool:
        t.sleep(s)
        return True

    chunks = list(Pacer(lambda: t.mono, sleep_slice).chunks(b))
    assert [c.ts_ns.tolist() for c in chunks] == [
        [0, 1, 5_000_000],
        [12_000_000, 12_000_001],
        [40_000_000],
    ]
    assert t.slept == pytest.approx(0.040)
    assert frame_seq_marks(chunks[1]) == {0: 15}
    # stopping while waiting: the frames not due yet are not handed over
    stopped = list(Pacer(lambda: t.mono, lambda s: False).chunks(b))
    assert [c.ts_ns.tolist() for c in stopped] == [[0, 1, 5_000_000]]


class MemorySource:
    """An in-memory live source: the batches given, then quiet-link empty batches; records
    commits like a Kafka source."""

    name = "memory"
    live = True
    commit_interval_s = 0.0  # commit after every batch

    def __init__(self, batches: list[FrameBatch], quiet: int = 2) -> None:
        self.batches = batches
        self.quiet = quiet
        self.commits: list[dict[int, int]] = []
        self.closed = False

    def __iter__(self) -> Iterator[FrameBatch]:
        yield from self.batches
        empty = self.batches[0]
        for _ in range(self.quiet):
            yield FrameBatch(
                empty.data[:0],
                *(
                    a[:0]
                    for a in (
                        empty.offsets,
                        empty.caplen,
                        empty.wirelen,
                        empty.ts_ns,
                        empty.linktype,
                        empty.part,
                        empty.seq,
                    )
                ),
            )

    def commit(self, watermarks: dict[int, int]) -> None:
        self.commits.append(dict(watermarks))

    def close(self) -> None:
        self.closed = True


def test_source_registry(tmp_path: Path) -> None:
    made: list[str] = []

    def factory(url: Any, ctx: SourceContext) -> Any:
        made.append(url.host)
        return MemorySource([])

    with pytest.raises(ConfigError, match="unknown URL scheme 'memtest'"):
        config_from_dict({"source": {"url": "memtest://x"}})
    register_source_scheme("memtest", factory)
    cfg = config_from_dict({"source": {"url": "memtest://x"}})  # accepted once registered
    assert isinstance(open_source(str(cfg.source.url), SourceContext(Metrics(), cfg)), MemorySource)
    assert made == ["x"]
    with pytest.raises(ConfigError, match="unknown URL scheme"):
        open_source("nosuch://x", SourceContext(Metrics(), Config()))


def test_capture_paths(tmp_path: Path, pcap: tuple[Path, int]) -> None:
    for name in ("b.pcap", "a.pcap"):
        (tmp_path / name).write_bytes(pcap[0].read_bytes())
    assert capture_paths(str(tmp_path / "*.pcap")) == [tmp_path / "a.pcap", tmp_path / "b.pcap"]
    for bad in (str(tmp_path / "none.pcap"), str(tmp_path / "*.pcapng"), str(tmp_path)):
        with pytest.raises(UserError) as ei:
            capture_paths(bad)
        assert ei.value.exit_code == BAD_INPUT
    cfg = Config().with_overrides(source_url=f"pcap://{tmp_path}/*.pcap")
    src = open_source(str(cfg.source.url), SourceContext(Metrics(), cfg))
    assert isinstance(src, PcapSource) and len(src.paths) == 2
    assert {b.part[0] for b in src} == {0, 1}


def test_default_model_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo_models, packaged = tmp_path / "repo", tmp_path / "pkg"
    monkeypatch.setattr(app_build, "model_search_dirs", lambda: [repo_models, packaged])
    assert find_default_model_dir() is None
    with pytest.raises(UserError, match="no model found") as ei:
        app_build.resolve_model_dir(None)
    assert ei.value.exit_code == MODEL_ERROR and "--model DIR" in str(ei.value)
    write_model_dir(packaged / "zzz")
    assert find_default_model_dir() == packaged / "zzz"
    write_model_dir(repo_models / "aaa")
    write_model_dir(repo_models / "netwarden-cic")
    assert find_default_model_dir() == repo_models / "netwarden-cic"  # preferred by name
    assert app_build.resolve_model_dir(tmp_path / "x") == tmp_path / "x"


def test_extract_flows_matches_the_pipeline(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    pipe, _ = _replay(pcap[0], _cfg(model_dir, tmp_path))
    second = tmp_path / "copy.pcap"
    second.write_bytes(pcap[0].read_bytes())
    got = list(extract_flows([pcap[0], second], params=FlowParams()))
    per_file = {p: sum(len(f) for q, f in got if q == p) for p in (pcap[0], second)}
    assert per_file == {pcap[0]: pipe.summary.flows, second: pipe.summary.flows}
    parts = {int(x) for q, f in got for x in np.unique(f.meta["src_part"])}
    assert parts == {0, 1}
    assert all(f.features.shape[1] == 81 for _, f in got)


# --- metrics series, commit flushing, service hooks, sinks, threshold file, Kafka ------------


def test_alert_rule_series_exist_at_zero_from_start_up(model_dir: Path, tmp_path: Path) -> None:
    from netwarden.app import STAGES
    from netwarden.capture import READER_SKIP_NAMES
    from netwarden.decode import SKIP_REASON_NAMES
    from netwarden.flows.params import EndReason

    m = Metrics()
    for metric in ("netwarden_reloads_total", "netwarden_model_loads_total"):
        for result in ("ok", "error"):
            assert m.registry.get_sample_value(metric, {"result": result}) == 0.0
    build_pipeline(_cfg(model_dir, tmp_path), m, source=MemorySource([])).close()
    expected = [("netwarden_flows_ended_total", "reason", r.label) for r in EndReason]
    expected += [
        ("netwarden_frames_skipped_total", "reason", r)
        for r in (*READER_SKIP_NAMES, *SKIP_REASON_NAMES)
    ]
    expected += [("netwarden_errors_total", "stage", s) for s in STAGES]
    expected += [("netwarden_alerts_total", "label", c) for c in ("DoS Hulk", "SSH-Patator")]
    for name, label, value in expected:
        assert m.registry.get_sample_value(name, {label: value}) == 0.0, (name, value)
    assert m.registry.get_sample_value("netwarden_alerts_total", {"label": "BENIGN"}) is None
    assert m.registry.get_sample_value("netwarden_reloads_total", {"result": "error"}) == 0.0
    assert m.registry.get_sample_value("netwarden_model_loads_total", {"result": "ok"}) == 1.0


def test_device_paths_get_a_sink_without_fsync(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    import os

    from netwarden.app_build import DeviceSink, open_alert_sink

    m = Metrics()
    for url in ("/dev/null", "file:///dev/null"):
        sink = open_alert_sink(url, Config(), m)
        assert isinstance(sink, DeviceSink)
        sink.write([{"a": 1}])
        sink.flush()  # the file sink's fsync fails here with EINVAL
        sink.close()
    assert _sample(m, "netwarden_sink_records_total", sink="device") == 2
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        sink = open_alert_sink(str(fifo), Config(), m)
        sink.write([{"b": 2}])
        sink.close()
        assert os.read(reader, 100) == b'{"b":2}\n'
    finally:
        os.close(reader)
    cfg = Config().with_overrides(
        model_dir=model_dir, alert_sinks=["/dev/null"], flow_log="/dev/null"
    )
    pipe, m = _replay(pcap[0], cfg)
    assert pipe.summary.alerts > 0 and not pipe.summary.errors
    assert _sample(m, "netwarden_sink_records_total", sink="device") > pipe.summary.alerts


def test_threshold_file_is_passed_to_the_model(model_dir: Path, tmp_path: Path) -> None:
    tfile = tmp_path / "t.json"
    tfile.write_text(json.dumps({"threshold": 0.77, "source": "calibrate"}))
    cfg = config_from_dict(
        {"model": {"dir": str(model_dir), "threshold_file": "t.json"}}, base_dir=tmp_path
    )
    assert cfg.model.threshold_file == tfile
    model, policy = load_scoring(cfg, Metrics())
    assert model.threshold == pytest.approx(0.77) == policy.threshold
    assert str(tfile) in model.threshold_source
    # no file configured: <model dir>/threshold.json is still found by the loader
    local = write_model_dir(tmp_path / "with_t")
    (local / "threshold.json").write_text(json.dumps({"threshold": 0.66}))
    model, policy = load_scoring(Config().with_overrides(model_dir=local), Metrics())
    assert policy.threshold == pytest.approx(0.66)
    # the configured file wins over the directory's
    model, _ = load_scoring(
        Config().with_overrides(model_dir=local, threshold_file=tfile), Metrics()
    )
    assert model.threshold == pytest.approx(0.77)


def test_kafka_sink_through_the_builder_reports_the_broker(tmp_path: Path) -> None:
    from netwarden.app_build import open_alert_sink
    from netwarden.sinks import SinkError, open_sink

    cfg = config_from_dict(
        {"kafka": {"flush_timeout_s": 0.5, "bootstrap_timeout_ms": 300, "max_block_ms": 100}}
    )
    sink = open_alert_sink("kafka://127.0.0.1:1/alerts", cfg, Metrics())
    sink.write([{"netwarden": {"flow_id": "1:x"}}])
    with pytest.raises(SinkError, match=r"not acknowledged \(broker unreachable"):
        sink.flush()
    sink.close()
    other = open_sink("kafka://127.0.0.1:1/x")  # registered with the [kafka] table now
    assert type(other).__name__ == "KafkaAlertSink"
    other.close()
    with pytest.raises(ConfigError, match=r"kafka\.bogus: unknown key"):
        open_alert_sink(
            "kafka://127.0.0.1:1/x", config_from_dict({"kafka": {"bogus": 1}}), Metrics()
        )


def test_replay_without_kafka_urls_does_not_import_kafka_python(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from netwarden import cli; "
        f"rc = cli.main(['replay', {str(pcap[0])!r}, '--model', {str(model_dir)!r}, "
        "'--alerts-out', '/dev/null', '--log-level', 'error']); "
        "print(rc, 'kafka' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["0", "False"], r.stderr
