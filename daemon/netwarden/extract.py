"""Flows from capture files without a model: capture -> decode -> flow table.

The training package turns labelled captures into feature rows with this; the daemon's own
code cuts the flows, so training rows and served flows come from the same feature code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from .capture import DEFAULT_MAX_FRAMES, open_capture
from .decode import decode
from .flows.params import EndedFlows, EndReason, FlowParams
from .flows.table import FlowTable


def extract_flows(paths: Iterable[str | Path], *, params: FlowParams,
                  max_frames: int = DEFAULT_MAX_FRAMES) -> Iterator[tuple[Path, EndedFlows]]:
    """Yield ``(path, ended flows)`` for each capture, in file order, as flows end.

    Each file gets a fresh flow table (flows never span files) that is flushed at the file's
    end, so every flow of a file is yielded before the next file starts.  ``src_part`` of
    the flows is the file's index in ``paths``.

    Raises:
        CaptureError: a file cannot be read (one-line message naming it).
    """
    for part, p in enumerate(paths):
        path = Path(p)
        table = FlowTable(params)
        with open_capture(path, part=part, max_frames=max_frames) as reader:
            for batch in reader:
                packets, _skips = decode(batch)
                ended = table.update(packets)
                if len(ended):
                    yield path, ended
        ended = table.flush(EndReason.END_OF_INPUT)
        if len(ended):
            yield path, ended
