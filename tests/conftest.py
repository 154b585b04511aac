"""Shared fixtures: where the third-party data lives, and helpers every test module may use."""

from __future__ import annotations

from pathlib import Path

import pytest
from netns import pair  # noqa: F401  (veth pair fixture for the live tests)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test with a clear message when it is absent."""
    if not (SHARED_DATA / "pcaps").is_dir():
        pytest.skip(f"third-party data not found at {SHARED_DATA} (see README, 'Test data')")
    return SHARED_DATA


def all_shared_pcaps() -> list[Path]:
    """Every capture under ../shared/data/pcaps (empty when the folder is absent)."""
    root = SHARED_DATA / "pcaps"
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))


@pytest.fixture(scope="module")
def pcap(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A small generated capture (the demo's traffic, reduced) and its frame count."""
    from netwarden.demo_traffic import SMALL, write_demo_pcap

    path = tmp_path_factory.mktemp("cap") / "small.pcap"
    return path, write_demo_pcap(path, seed=3, scale=SMALL)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ONNX model folder (tests/modelutil.py) that loads like a real one."""
    from modelutil import write_model_dir

    return write_model_dir(tmp_path_factory.mktemp("model") / "tiny")
