"""Commit and stop: sinks flushed before offsets move, SIGTERM flushes, quiet links expire."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netwarden.app import Hooks
from netwarden.app_build import build_pipeline
from netwarden.app_sources import PcapSource
from netwarden.capture import open_capture
from netwarden.metrics import Metrics
from test_app import FakeTime, MemorySource, _cfg, _sample


def test_live_source_expires_idle_flows_on_the_wall_clock_and_commits(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    with open_capture(pcap[0], max_frames=64) as r:
        batches = list(r)
    last_ts = int(batches[-1].ts_ns.max())
    src = MemorySource(batches)
    t = FakeTime(wall=last_ts / 1e9 + 10_000)  # the quiet link: far past every idle timeout
    m = Metrics()
    seen: list[tuple[dict[int, int], int | None]] = []
    hooks = Hooks()
    pipe = build_pipeline(_cfg(model_dir, tmp_path), m, source=src, hooks=hooks, clock=t.clock())
    hooks.on_commit.append(lambda marks: seen.append((marks, pipe.s.table.min_open_seq(0))))
    with pipe:
        s = pipe.run()
    assert src.closed
    assert s.flows_by_reason["idle"] > 0  # expired by the empty batches, not by end of input
    assert s.flows_by_reason.get("end_of_input", 0) == 0
    assert len(src.commits) >= len(batches)
    marks = [c[0] for c in src.commits]
    assert marks == sorted(marks)  # never goes back
    for wm, low in seen:
        if low is not None:
            assert wm[0] <= low  # frames of open flows are never committed
    assert src.commits[-1] == {0: pcap[1]}  # at the end: everything read is done


class RecordingSink:
    """Counts flushes; ``fail`` makes every flush raise."""

    def __init__(self, events: list[str], name: str, *, fail: bool = False) -> None:
        self.events, self.name, self.fail = events, name, fail

    def write(self, docs: Any) -> None:
        pass

    def flush(self) -> None:
        self.events.append(f"flush {self.name}")
        if self.fail:
            raise OSError("disk full")

    def close(self) -> None:
        pass


def test_commit_flushes_every_sink_and_commits_only_when_all_flushed(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    with open_capture(pcap[0], max_frames=64) as r:
        batches = list(r)[:3]
    src = MemorySource(batches, quiet=0)
    m = Metrics()
    events: list[str] = []
    pipe = build_pipeline(_cfg(model_dir, tmp_path), m, source=src)
    pipe.s.sinks = [RecordingSink(events, "a", fail=True), RecordingSink(events, "b")]
    with pipe:
        pipe.run()
    flushes_a, flushes_b = events.count("flush a"), events.count("flush b")
    assert flushes_a == flushes_b >= len(batches)  # b flushed although a failed before it
    assert src.commits == []  # never committed past alerts a sink did not take
    assert _sample(m, "netwarden_errors_total", stage="sink") == flushes_a
    events.clear()
    src2 = MemorySource(batches, quiet=0)
    pipe = build_pipeline(_cfg(model_dir, tmp_path), Metrics(), source=src2)
    pipe.s.sinks = [RecordingSink(events, "a"), RecordingSink(events, "b")]
    with pipe:
        pipe.run()
    assert src2.commits and src2.commits[-1] == {0: sum(len(b) for b in batches)}


def test_stop_hook_runs_at_sigterm_before_the_final_flush(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    import os
    import signal

    events: list[str] = []
    hooks = Hooks(on_stop=[lambda: events.append("stop")])
    m = Metrics()
    pipe = build_pipeline(
        _cfg(model_dir, tmp_path),
        m,
        hooks=hooks,
        source=PcapSource([pcap[0]], metrics=m, max_frames=100),
    )
    pipe.s.sinks = [RecordingSink(events, "a")]
    hooks.on_tick.append(lambda now: os.kill(os.getpid(), signal.SIGTERM))
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        pipe.install_signal_handlers()
        with pipe:
            s = pipe.run()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert s.packets == 100  # stopped after the first batch
    assert events[0] == "stop" and events.count("stop") == 1
    assert "flush a" in events[1:]  # the final flush came after "stopping" was announced
    pipe.stop()
    assert events.count("stop") == 1  # once only
