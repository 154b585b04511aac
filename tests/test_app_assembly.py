"""Flow assembly on a worker thread and capture read-ahead: same results as one thread, in
order, errors counted where they happened, the GIL released by the kernels that run there."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from netwarden.app_assembly import Assembler
from netwarden.app_build import build_pipeline
from netwarden.app_sources import PcapSource
from netwarden.capture import open_capture, pcapfile, pcapng
from netwarden.decode import _decode_frames, decode
from netwarden.flows import kernel
from netwarden.flows.params import FlowParams
from netwarden.flows.table import FlowTable, _flush_kernel
from netwarden.metrics import Metrics
from netwarden.readahead import ReadAhead
from test_app import _cfg, _sample


def _decoded(pcap: Path, frames: int) -> list[Any]:
    with open_capture(pcap, max_frames=frames) as r:
        return [decode(b)[0] for b in r]


def test_assembler_gives_the_tables_results_in_order(pcap: tuple[Path, int]) -> None:
    batches = _decoded(pcap[0], 32)
    assert len(batches) > 10
    alone = FlowTable(FlowParams())
    expected = [alone.update(p) for p in batches]
    asm = Assembler(FlowTable(FlowParams()), depth=3)
    got = []
    for p in batches:
        asm.submit(p)
        got += [job.result()[0] for job in asm.ready()]
        assert asm.pending <= 3
    got += [job.result()[0] for job in asm.drain()]
    asm.close()
    assert asm.pending == 0 and len(got) == len(expected)
    assert sum(len(e) for e in expected) > 20
    for g, e in zip(got, expected, strict=True):
        assert g.meta.tobytes() == e.meta.tobytes()
        assert g.features.tobytes() == e.features.tobytes()


class SlowTable:
    """A table whose updates take ``delay`` seconds each and record their thread."""

    def __init__(self, delay: float) -> None:
        self.delay, self.active, self.threads = delay, 0, set[str]()

    def update(self, packets: Any) -> Any:
        time.sleep(self.delay)
        self.threads.add(threading.current_thread().name)
        return packets


def test_assembler_runs_ahead_on_a_worker_up_to_its_depth() -> None:
    table = SlowTable(0.05)
    asm = Assembler(table, depth=2)
    t0 = time.perf_counter()
    for i in range(4):
        asm.submit(i)
    submitted_s = time.perf_counter() - t0
    first = [job.result()[0] for job in asm.ready()]  # waits until at most 2 are pending
    assert asm.pending <= 2 and first == list(range(len(first))) and len(first) >= 2
    rest = [job.result()[0] for job in asm.drain()]
    asm.close()
    assert first + rest == [0, 1, 2, 3]
    assert submitted_s < 0.05  # submit does not wait for the table
    assert table.threads and all(n.startswith("netwarden-flows") for n in table.threads)


def test_depth_zero_runs_on_the_callers_thread() -> None:
    table = SlowTable(0.0)
    asm = Assembler(table, depth=0)
    asm.submit("x")
    assert [job.result()[0] for job in asm.ready()] == ["x"]
    assert table.threads == {threading.current_thread().name}
    with pytest.raises(ValueError, match="depth"):
        Assembler(table, depth=-1)


@pytest.mark.parametrize("ahead", [1, 8])
def test_pipeline_writes_the_same_bytes_with_and_without_the_worker(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path, ahead: int
) -> None:
    outs = []
    for depth in (0, ahead):
        out = tmp_path / str(depth)
        out.mkdir()
        m = Metrics()
        src = PcapSource([pcap[0], pcap[0]], metrics=m, max_frames=97)
        with build_pipeline(_cfg(model_dir, out), m, source=src, assemble_ahead=depth) as pipe:
            s = pipe.run()
        assert s.flows > 20 and s.packets == 2 * pcap[1]
        outs.append(out)
    for name in ("alerts.jsonl", "flows.jsonl"):
        a, b = ((o / name).read_bytes() for o in outs)
        assert a == b and a.count(b"\n") > 0


def test_shared_captures_give_the_same_flow_log_with_the_worker(
    shared_data: Path, model_dir: Path, tmp_path: Path
) -> None:
    pcaps = sorted((shared_data / "pcaps").rglob("*.pcap*"))[:6]
    outs = []
    for depth in (0, 8):
        out = tmp_path / str(depth)
        out.mkdir()
        m = Metrics()
        src = PcapSource(pcaps, metrics=m, max_frames=512)
        with build_pipeline(_cfg(model_dir, out), m, source=src, assemble_ahead=depth) as pipe:
            pipe.run()
        outs.append((out / "flows.jsonl").read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b"\n") > 50


def test_a_flow_table_error_on_the_worker_is_counted_and_the_loop_goes_on(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    m = Metrics()
    pipe = build_pipeline(
        _cfg(model_dir, tmp_path), m, source=PcapSource([pcap[0]], metrics=m, max_frames=100)
    )
    real, calls = pipe.s.table.update, [0]

    def failing_once(packets: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("corrupt table state")
        return real(packets)

    pipe.s.table.update = failing_once
    with pipe:
        s = pipe.run()
    assert calls[0] > 2 and s.packets == pcap[1]
    assert _sample(m, "netwarden_errors_total", stage="flows") == 1 == s.errors["flows"]
    assert s.flows > 10


def test_the_kernels_run_off_the_gil() -> None:
    # what runs on the worker threads must release the GIL, or the threads only take turns
    for fn in (
        kernel.update,
        kernel.sweep,
        _flush_kernel,
        _decode_frames,
        pcapfile.scan_pcap,
        pcapng.scan_pcapng,
    ):
        assert fn.targetoptions.get("nogil") is True, fn.py_func.__name__


def _numbers(n: int, fail_at: int | None = None) -> Iterator[int]:
    for i in range(n):
        if i == fail_at:
            raise OSError("read error")
        yield i


def test_read_ahead_keeps_order_and_raises_where_the_item_was() -> None:
    assert list(ReadAhead(_numbers(50))) == list(range(50))
    got = []
    with pytest.raises(OSError, match="read error"):
        for i in ReadAhead(_numbers(10, fail_at=4)):
            got.append(i)
    assert got == [0, 1, 2, 3]


def test_read_ahead_close_waits_for_the_read_in_progress() -> None:
    reading = threading.Event()
    finished = []

    def slow() -> Iterator[int]:
        yield 0
        reading.set()
        time.sleep(0.1)
        finished.append(1)
        yield 1

    ahead = ReadAhead(slow())
    assert next(ahead) == 0
    assert reading.wait(5)
    ahead.close()
    assert finished == [1]  # close returned after the read, not during it
    ahead.close()
    with pytest.raises(StopIteration):
        next(ahead)


def test_pcap_source_closed_mid_file_counts_only_what_it_handed_out(pcap: tuple[Path, int]) -> None:
    src = PcapSource([pcap[0]], max_frames=50)
    it = iter(src)
    taken = [next(it), next(it)]
    src.close()  # the worker was reading the third batch from the file mapping
    assert src.frames_per_file == {str(pcap[0]): sum(len(b) for b in taken)}
    full = PcapSource([pcap[0]], max_frames=50)
    assert sum(len(b) for b in full) == pcap[1] == full.frames_per_file[str(pcap[0])]
    first = next(iter(PcapSource([pcap[0]], max_frames=50)))
    assert np.array_equal(first.data, taken[0].data)
