"""Config loading: every validation rule, URL parsing, paths, overrides, pass-through tables."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from netwarden.config import (
    Config,
    ConfigError,
    FlowsConfig,
    config_from_dict,
    load_config,
    parse_sink_url,
    parse_source_url,
)
from netwarden.exitcodes import BAD_CONFIG
from netwarden.flows.params import FlowParams

REPO = Path(__file__).resolve().parent.parent


def _err(data: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as ei:
        config_from_dict(data)
    assert ei.value.exit_code == BAD_CONFIG
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_defaults_without_a_file() -> None:
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.alerts.sinks == ("-",)
    assert cfg.metrics.port == 9108 and cfg.metrics.listen_address == "127.0.0.1"
    assert cfg.model.providers == "auto" and cfg.model.threshold is None
    assert cfg.flows == FlowsConfig()
    assert cfg.batching.max_batch == 256
    gate = cfg.alerts.gate()
    assert gate is not None and gate.aggregate_after == 100 and gate.window_s == 300.0


def test_the_alert_gate_turns_off_when_both_rules_are_off() -> None:
    cfg = config_from_dict({"alerts": {"corroborate_max_packets": 0, "aggregate_after": 0}})
    assert cfg.alerts.gate() is None


FULL = """
[source]
url = "captures/day1.pcap"
[model]
dir = "models/x"
providers = "cpu"
threshold = 0.75
[flows]
idle_timeout_s = 60
active_timeout_s = 600
max_flows = 1000
[batching]
max_batch = 128
max_batch_delay_ms = 20
[alerts]
sinks = ["-", "out/alerts.jsonl", "file:///var/log/a.jsonl", "kafka://b1:9092,b2:9093/alerts"]
flow_log = "flows.jsonl"
allowlist = ["10.0.0.0/8", "2001:db8::/32"]
community_id_seed = 7
[metrics]
listen_address = "0.0.0.0"
port = 0
[logging]
level = "DEBUG"
format = "json"
[kafka]
session_timeout_ms = 6000
security_protocol = "SSL"
[service]
stall_after_s = 10
"""


def test_full_file_loads_with_types_and_paths_resolved(tmp_path: Path) -> None:
    f = tmp_path / "nw.toml"
    f.write_text(FULL)
    cfg = load_config(f)
    assert cfg.path == f
    assert cfg.source.url == str(tmp_path / "captures/day1.pcap")  # relative to the file
    assert cfg.model.dir == tmp_path / "models/x"
    assert cfg.model.threshold == 0.75 and cfg.model.providers == "cpu"
    assert cfg.flows.idle_timeout_s == 60.0 and isinstance(cfg.flows.idle_timeout_s, float)
    assert cfg.flows.max_flows == 1000 and cfg.flows.activity_timeout_s is None
    assert cfg.batching == type(cfg.batching)(128, 20.0)
    assert cfg.alerts.sinks == ("-", str(tmp_path / "out/alerts.jsonl"), "file:///var/log/a.jsonl",
                                "kafka://b1:9092,b2:9093/alerts")
    assert cfg.alerts.flow_log == str(tmp_path / "flows.jsonl")
    assert cfg.alerts.allowlist == ("10.0.0.0/8", "2001:db8::/32")
    assert cfg.alerts.community_id_seed == 7
    assert cfg.metrics.port == 0
    assert cfg.logging.level == "debug" and cfg.logging.format == "json"
    assert cfg.kafka["session_timeout_ms"] == 6000 and cfg.kafka["security_protocol"] == "SSL"
    assert cfg.service["stall_after_s"] == 10
    with pytest.raises(TypeError):
        cfg.kafka["x"] = 1  # type: ignore[index]
    d = cfg.to_dict()
    assert d["alerts"]["sinks"][0] == "-" and d["model"]["dir"] == str(tmp_path / "models/x")


def test_example_config_in_repo_is_valid() -> None:
    examples = [p for p in (REPO / "netwarden.example.toml", REPO / "deploy/netwarden.example.toml")
                if p.exists()]
    assert examples, "netwarden.example.toml is missing"
    for p in examples:
        load_config(p)


def test_range_error_names_key_rule_and_value() -> None:
    assert _err({"flows": {"idle_timeout_s": -3}}) == "flows.idle_timeout_s: must be > 0, got -3"


@pytest.mark.parametrize(("section", "key", "value", "rule"), [
    ("flows", "idle_timeout_s", 0, "must be > 0"),
    ("flows", "active_timeout_s", -1.5, "must be > 0"),
    ("flows", "activity_timeout_s", 0.0, "must be > 0"),
    ("flows", "max_flows", 0, "must be in 1.."),
    ("flows", "tcp_close_grace_s", -1, "must be in 0..3600"),
    ("batching", "max_batch", 0, "must be in 1..65536"),
    ("batching", "max_batch", 70000, "must be in 1..65536"),
    ("batching", "max_batch_delay_ms", -1, "must be in 0..60000"),
    ("model", "threshold", 1.5, "must be in 0..1"),
    ("model", "threshold", -0.1, "must be in 0..1"),
    ("alerts", "community_id_seed", 65536, "must be in 0..65535"),
    ("alerts", "aggregate_after", -1, "must be in 0..1000000000"),
    ("alerts", "corroborate_min_flows", 0, "must be in 1..1000000"),
    ("alerts", "window_s", 0.5, "must be in 1..86400"),
    ("metrics", "port", 70000, "must be in 0..65535"),
    ("metrics", "listen_address", "a b", "must be an IP address or host name"),
    ("model", "providers", "gpu", "must be one of 'auto', 'cpu', 'cuda'"),
    ("logging", "level", "loud", "must be one of 'debug'"),
    ("logging", "format", "xml", "must be one of 'text', 'json'"),
])
def test_every_rule(section: str, key: str, value: object, rule: str) -> None:
    msg = _err({section: {key: value}})
    assert msg.startswith(f"{section}.{key}: {rule}")
    assert msg.endswith(f"got {value!r}")


@pytest.mark.parametrize(("section", "key", "value", "kind"), [
    ("flows", "idle_timeout_s", "60", "must be a number"),
    ("flows", "idle_timeout_s", True, "must be a number"),
    ("flows", "max_flows", 10.5, "must be an integer"),
    ("metrics", "port", True, "must be an integer"),
    ("batching", "max_batch", "a", "must be an integer"),
    ("model", "dir", 3, "must be a string"),
    ("source", "url", ["a"], "must be a string"),
    ("alerts", "sinks", "-", "must be a list of strings"),
    ("alerts", "allowlist", ["10.0.0.0/8", 3], "must be a list of strings"),
    ("logging", "level", 1, "must be a string"),
])
def test_wrong_types(section: str, key: str, value: object, kind: str) -> None:
    msg = _err({section: {key: value}})
    assert msg.startswith(f"{section}.{key}: {kind}, got ")
    if value is True:
        assert msg.endswith("got true")  # shown as TOML writes it


def test_unknown_key_suggests_the_close_one() -> None:
    assert _err({"flows": {"idle_timeout": 3}}) == (
        "flows.idle_timeout: unknown key (did you mean 'idle_timeout_s'?)")
    assert _err({"metrics": {"prot": 1}}).endswith("(did you mean 'port'?)")
    assert _err({"alerts": {"zzz": 1}}) == "alerts.zzz: unknown key"


def test_unknown_section_suggests_the_close_one() -> None:
    assert _err({"sourc": {}}) == "sourc: unknown section (did you mean 'source'?)"
    assert _err({"zzz": {}}) == "zzz: unknown section"


def test_section_must_be_a_table() -> None:
    assert _err({"kafka": 3}) == "kafka: must be a table ([kafka]), got 3"
    assert _err({"flows": "x"}).startswith("flows: must be a table")


@pytest.mark.parametrize(("data", "start"), [
    ({"source": {"url": "pcapng:///x.pcap"}}, "source.url: unknown URL scheme 'pcapng'"),
    ({"source": {"url": "http://x"}}, "source.url: unknown URL scheme 'http'"),
    ({"source": {"url": ""}}, "source.url: must be a non-empty URL or path"),
    ({"source": {"url": "kafka://broker/topic"}}, "source.url: each broker must be host:port"),
    ({"source": {"url": "kafka://b:9092"}}, "source.url: needs one topic"),
    ({"source": {"url": "kafka://b:99999/t"}}, "source.url: each broker must be host:port"),
    ({"source": {"url": "iface://"}}, "source.url: needs an interface"),
    ({"source": {"url": "pcap://"}}, "source.url: a pcap URL needs a path"),
    ({"alerts": {"sinks": ["-", "kafak://b:1/t"]}}, "alerts.sinks[1]: unknown URL scheme 'kafak'"),
    ({"alerts": {"sinks": ["iface://eth0"]}}, "alerts.sinks[0]: unknown URL scheme 'iface'"),
    ({"alerts": {"flow_log": "udp://x"}}, "alerts.flow_log: unknown URL scheme 'udp'"),
])
def test_bad_urls(data: dict[str, object], start: str) -> None:
    assert _err(data).startswith(start)


def test_bad_scheme_suggests_the_close_one() -> None:
    assert "(did you mean 'pcap'?)" in _err({"source": {"url": "pcapng:///x"}})


def test_allowlist_entries_must_be_cidrs() -> None:
    assert _err({"alerts": {"allowlist": ["10.0.0.0/8", "10.0.0.300/8"]}}) == (
        "alerts.allowlist[1]: must be a CIDR like 10.0.0.0/8, got '10.0.0.300/8'")


def test_url_parsing() -> None:
    u = parse_source_url("kafka://b1:9092,b2:9092/frames?group=nw&offset_reset=earliest")
    assert (u.scheme, u.host, u.path) == ("kafka", "b1:9092,b2:9092", "frames")
    assert u.params == {"group": "nw", "offset_reset": "earliest"}
    assert parse_source_url("iface://eth0?snaplen=96").host == "eth0"
    assert parse_source_url("tshark://eth1").scheme == "tshark"
    assert parse_source_url("/data/x.pcapng").path == "/data/x.pcapng"
    assert parse_source_url("pcap:///data/*.pcap").path == "/data/*.pcap"
    assert parse_source_url("pcap://rel/a.pcap").path == "rel/a.pcap"
    assert parse_sink_url("-").scheme == "stdout"
    assert parse_sink_url("alerts.jsonl").scheme == "file"
    assert parse_sink_url("kafka://h:1/alerts").path == "alerts"


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[flows\nidle_timeout_s = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read config"):
        load_config(tmp_path / "nope.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


def test_flow_overrides_warn_when_they_differ_from_training(
        caplog: pytest.LogCaptureFixture) -> None:
    trained = FlowParams(idle_timeout_s=120.0, max_flows=1000)
    caplog.set_level(logging.WARNING, logger="netwarden.config")
    same = FlowsConfig(idle_timeout_s=120.0, max_flows=50).apply(trained)
    assert same == FlowParams(idle_timeout_s=120.0, max_flows=50)
    assert not caplog.records  # equal value, and the table bound: no warning
    changed = FlowsConfig(idle_timeout_s=30.0).apply(trained)
    assert changed.idle_timeout_s == 30.0 and changed.max_flows == 1000
    assert len(caplog.records) == 1
    assert "flows.idle_timeout_s = 30.0 differs from the model's training value 120.0" in (
        caplog.records[0].getMessage())


def test_command_line_overrides_are_validated() -> None:
    cfg = Config().with_overrides(source_url="kafka://b:9092/t", alert_sinks=["-", "a.jsonl"],
                                  model_dir="m", threshold=0.9, providers="cpu",
                                  flow_log="f.jsonl")
    assert cfg.source.url == "kafka://b:9092/t"
    assert cfg.alerts.sinks == ("-", "a.jsonl") and cfg.alerts.flow_log == "f.jsonl"
    assert cfg.model.dir == Path("m") and cfg.model.threshold == 0.9
    with pytest.raises(ConfigError, match=r"^--source: unknown URL scheme 'ftp'"):
        Config().with_overrides(source_url="ftp://x")
    with pytest.raises(ConfigError, match=r"^--alerts\[1\]: unknown URL scheme"):
        Config().with_overrides(alert_sinks=["-", "ftp://x"])
    with pytest.raises(ConfigError, match=r"^--threshold: must be in 0..1, got 2"):
        Config().with_overrides(threshold=2.0)
    with pytest.raises(ConfigError, match=r"^--providers: must be one of"):
        Config().with_overrides(providers="tpu")


def test_threshold_file_must_exist_and_is_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{"threshold": 0.7}')
    cfg = config_from_dict({"model": {"threshold_file": "t.json"}}, base_dir=tmp_path)
    assert cfg.model.threshold_file == tmp_path / "t.json"
    assert Config().model.threshold_file is None
    with pytest.raises(ConfigError, match=r"^model\.threshold_file: must be an existing file, "
                                          r".*nope\.json' \(no such file\)"):
        config_from_dict({"model": {"threshold_file": "nope.json"}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^model\.threshold_file: .*\(is not a file\)"):
        config_from_dict({"model": {"threshold_file": "."}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^model\.threshold_file: must be a string, got 3"):
        config_from_dict({"model": {"threshold_file": 3}})
    with pytest.raises(ConfigError, match=r"^--threshold-file: must be an existing file"):
        Config().with_overrides(threshold_file=tmp_path / "nope.json")
    assert Config().with_overrides(threshold_file=tmp_path / "t.json").model.threshold_file == (
        tmp_path / "t.json")


def test_kafka_and_service_tables_are_validated_at_load() -> None:
    ok = config_from_dict({"kafka": {"flush_timeout_s": 2.0}, "service": {"stall_after_s": 5}})
    assert ok.kafka["flush_timeout_s"] == 2.0 and ok.service["stall_after_s"] == 5
    with pytest.raises(ConfigError, match=r"^kafka\.bogus: unknown key"):
        config_from_dict({"kafka": {"bogus": 1}})
    with pytest.raises(ConfigError, match=r"^kafka\.acks: must be all, 0 or 1"):
        config_from_dict({"kafka": {"acks": "2"}})
    with pytest.raises(Exception, match=r"^service\.stall_after_s: must be") as e:
        config_from_dict({"service": {"stall_after_s": -1}})
    assert getattr(e.value, "exit_code", None) == BAD_CONFIG
