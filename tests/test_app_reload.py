"""SIGHUP reloads: model, threshold and allow-list swap together or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from modelutil import write_model_dir
from netwarden import app_build
from netwarden.app import Hooks
from netwarden.app_build import build_pipeline, load_scoring
from netwarden.app_sources import PcapSource
from netwarden.config import load_config
from netwarden.flows.params import FLOW_META_DTYPE
from netwarden.metrics import Metrics
from test_app import MemorySource, _cfg, _lines, _sample


def test_reload_swaps_the_model_or_keeps_the_old_one(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    m = Metrics()
    cfg = _cfg(model_dir, tmp_path)
    reloaded: list[str] = []
    hooks = Hooks(on_reload=[lambda model: reloaded.append(model.manifest.version)])
    pipe = build_pipeline(cfg, m, source=PcapSource([pcap[0]], metrics=m), hooks=hooks)
    old = pipe.s.model

    def broken() -> Any:
        raise app_build.ModelError("manifest.json: broken")  # type: ignore[attr-defined]

    pipe.s.reloader = broken
    (tmp_path / "alerts.jsonl").rename(tmp_path / "alerts.1")  # logrotate moved the file away
    assert not pipe.reload()
    assert pipe.s.model is old and reloaded == []
    assert _sample(m, "netwarden_reloads_total", result="error") == 1
    other = write_model_dir(tmp_path / "v2", manifest_overrides={"version": "0.0.2"})
    pipe.s.reloader = lambda: load_scoring(cfg.with_overrides(model_dir=other), m)
    pipe.request_reload()
    with pipe:
        pipe.run()  # the loop performs the requested reload before the first batch
    assert pipe.s.model.manifest.version == "0.0.2" and reloaded == ["0.0.2"]
    assert _sample(m, "netwarden_reloads_total", result="ok") == 1
    assert (tmp_path / "alerts.1").read_text() == ""
    assert len(_lines(tmp_path / "alerts.jsonl")) == pipe.summary.alerts > 0  # reopened


def test_reload_hooks_bracket_every_reload(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    events: list[str] = []
    hooks = Hooks(
        on_reload_start=[lambda: events.append("start")],
        on_reload_done=[lambda ok: events.append(f"done {ok}")],
    )
    cfg = _cfg(model_dir, tmp_path)
    m = Metrics()
    pipe = build_pipeline(cfg, m, source=MemorySource([]), hooks=hooks)

    def broken() -> Any:
        raise RuntimeError("manifest.json: broken")

    good = pipe.s.reloader
    pipe.s.reloader = broken
    assert not pipe.reload()
    pipe.s.reloader = good
    assert pipe.reload()
    assert events == ["start", "done False", "start", "done True"]
    pipe.close()


def test_reload_rereads_the_config_allowlist_and_threshold(
    pcap: tuple[Path, int], model_dir: Path, tmp_path: Path
) -> None:
    # SIGHUP reloads model, threshold and allow-list together from the config file as it is
    # now; a file that no longer validates refuses the reload and keeps everything in force.
    conf = tmp_path / "netwarden.toml"
    base = f'[model]\ndir = "{model_dir}"\n[alerts]\nsinks = ["{tmp_path / "a.jsonl"}"]\n'
    conf.write_text(base)
    m = Metrics()
    pipe = build_pipeline(
        load_config(conf),
        m,
        source=PcapSource([pcap[0]], metrics=m),
        reread=lambda: load_config(conf),
    )
    meta = np.zeros(1, dtype=FLOW_META_DTYPE)
    meta["src_lo"] = np.uint64(0xFFFF_0A00_0001)  # 10.0.0.1
    assert not pipe.s.policy.allowlisted(meta).any()
    conf.write_text(base + 'allowlist = ["10.0.0.0/8"]\n[model_]\n')  # invalid: unknown table
    assert not pipe.reload()
    assert not pipe.s.policy.allowlisted(meta).any()
    assert _sample(m, "netwarden_reloads_total", result="error") == 1
    conf.write_text(base + 'allowlist = ["10.0.0.0/8"]\n')
    conf.write_text(conf.read_text().replace("[model]\n", "[model]\nthreshold = 0.99\n"))
    assert pipe.reload()
    assert pipe.s.policy.allowlisted(meta).all()
    assert pipe.s.policy.threshold == 0.99
    pipe.close()
