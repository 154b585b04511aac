"""netwarden's configuration: one TOML file, validated once at load into frozen dataclasses.

The loader is the only validator: every error names the key, the rule and the value
(``flows.idle_timeout_s: must be > 0, got -3``), unknown keys are errors with a did-you-mean,
and source/sink URLs are parsed and their scheme checked here.  Interior code trusts a
:class:`Config`.  Relative paths in the file are relative to the file's folder.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config_urls import (
    ConfigError,
    Url,
    allow_url_scheme,
    did_you_mean,
    parse_sink_url,
    parse_source_url,
    show_value,
)
from .flows.params import FlowParams
from .logsetup import FORMATS, LEVELS

if TYPE_CHECKING:
    from .alerts_gate import GateConfig

__all__ = [
    "AlertsConfig", "BatchingConfig", "Config", "ConfigError", "FlowsConfig", "LoggingConfig",
    "MetricsConfig", "ModelConfig", "SourceConfig", "Url", "allow_url_scheme",
    "config_from_dict", "load_config", "parse_sink_url", "parse_source_url",
]

log = logging.getLogger(__name__)

PROVIDERS = ("auto", "cpu", "cuda")


# ---------------------------------------------------------------------------------------------
# Sections.


@dataclass(frozen=True, slots=True)
class SourceConfig:
    url: str | None = None  # None: give it with --source (run) or as arguments (replay)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    dir: Path | None = None  # None: the default model (<repo>/models/*, or the packaged one)
    providers: str = "auto"
    threshold: float | None = None  # None: the calibrated one (threshold file, manifest)
    threshold_file: Path | None = None  # a threshold.json to use instead of the model dir's


@dataclass(frozen=True, slots=True)
class FlowsConfig:
    """Overrides of the model's training flow parameters; None keeps the manifest's value."""

    idle_timeout_s: float | None = None
    active_timeout_s: float | None = None
    activity_timeout_s: float | None = None
    max_flows: int | None = None
    tcp_close_grace_s: float | None = None

    def apply(self, trained: FlowParams) -> FlowParams:
        """Return ``trained`` with this section's values, warning about each difference."""
        changes: dict[str, Any] = {}
        for name in FlowParams.__dataclass_fields__:
            value = getattr(self, name, None)
            if value is None or value == getattr(trained, name):
                continue
            if name != "max_flows":  # the table bound does not change how flows are cut
                log.warning("flows.%s = %s differs from the model's training value %s: "
                            "served flows will be cut differently from training flows",
                            name, value, getattr(trained, name))
            changes[name] = value
        return dataclasses.replace(trained, **changes)


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    max_batch: int = 256
    max_batch_delay_ms: float = 50.0


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    sinks: tuple[str, ...] = ("-",)
    flow_log: str = ""  # sink URL for one document per scored flow; "" = off
    allowlist: tuple[str, ...] = ()
    community_id_seed: int = 0
    # the alert gate (netwarden.alerts_gate; 0 turns a rule off)
    corroborate_max_packets: int = 1
    corroborate_min_flows: int = 5
    corroborate_min_flows_sensor: int = 20
    aggregate_after: int = 100
    window_s: float = 300.0

    def gate(self) -> GateConfig | None:
        """The alert gate's rules, None when both are off."""
        from .alerts_gate import GateConfig  # numba and the model types: only when needed

        if self.corroborate_max_packets == 0 and self.aggregate_after == 0:
            return None
        return GateConfig(self.corroborate_max_packets, self.corroborate_min_flows,
                          self.corroborate_min_flows_sensor, self.aggregate_after,
                          self.window_s)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen_address: str = "127.0.0.1"
    port: int = 9108  # 0 = no metrics server


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    format: str = "text"


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(d))


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    source: SourceConfig = SourceConfig()
    model: ModelConfig = ModelConfig()
    flows: FlowsConfig = FlowsConfig()
    batching: BatchingConfig = BatchingConfig()
    alerts: AlertsConfig = AlertsConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    kafka: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    service: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    path: Path | None = None  # the file it was loaded from

    def with_overrides(self, *, source_url: str | None = None,
                       alert_sinks: list[str] | None = None, flow_log: str | None = None,
                       model_dir: str | Path | None = None, threshold: float | None = None,
                       threshold_file: str | Path | None = None,
                       providers: str | None = None) -> Config:
        """Apply command-line flags (validated like the file's values; paths relative to cwd).

        >>> Config().with_overrides(threshold=0.9).model.threshold
        0.9
        """
        rep = dataclasses.replace
        cfg = self
        if source_url is not None:
            parse_source_url(source_url, key="--source")
            cfg = rep(cfg, source=SourceConfig(source_url))
        if alert_sinks is not None:
            for i, u in enumerate(alert_sinks):
                parse_sink_url(u, key=f"--alerts[{i}]")
            cfg = rep(cfg, alerts=rep(cfg.alerts, sinks=tuple(alert_sinks)))
        if flow_log is not None:
            _check_flow_log("--flows-out", flow_log)
            cfg = rep(cfg, alerts=rep(cfg.alerts, flow_log=flow_log))
        model = cfg.model
        if model_dir is not None:
            model = rep(model, dir=Path(model_dir))
        if threshold is not None:
            model = rep(model, threshold=_value("--threshold", _MODEL_KEYS["threshold"],
                                                threshold, None))
        if threshold_file is not None:
            model = rep(model, threshold_file=_value(
                "--threshold-file", _MODEL_KEYS["threshold_file"], str(threshold_file), None))
        if providers is not None:
            model = rep(model, providers=_value("--providers", _MODEL_KEYS["providers"],
                                                providers, None))
        return rep(cfg, model=model)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every section (for ``check-config`` and logs)."""
        out: dict[str, Any] = {}
        for name in _SECTIONS:
            sec = getattr(self, name)
            out[name] = {k: _plain(getattr(sec, k)) for k in _SECTIONS[name][1]}
        out["kafka"] = dict(self.kafka)
        out["service"] = dict(self.service)
        return out


def _plain(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return list(v)
    return v


# ---------------------------------------------------------------------------------------------
# Validation rules: each returns None when the value passes, else the rule it broke.

Rule = Callable[[Any], "str | None"]


def _gt(bound: float) -> Rule:
    return lambda v: None if v > bound else f"must be > {bound:g}"


def _between(lo: float, hi: float) -> Rule:
    return lambda v: None if lo <= v <= hi else f"must be in {_num(lo)}..{_num(hi)}"


def _num(x: float) -> str:
    """A bound as a reader writes it: whole numbers in full (268435456, not 2.68435e+08)."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _one_of(*choices: str) -> Rule:
    return lambda v: None if v in choices else "must be one of " + ", ".join(map(repr, choices))


def _host(v: str) -> str | None:
    if v and " " not in v and "/" not in v:
        return None
    return "must be an IP address or host name"


@dataclass(frozen=True, slots=True)
class _Key:
    kind: str  # "str", "path", "number", "int", "list" (of strings)
    rule: Rule | None = None
    check: Callable[[str, Any], None] | None = None  # raises ConfigError itself (key, value)
    each: Callable[[str, Any], None] | None = None  # the same for each list element


def _check_cidr(key: str, v: Any) -> None:
    try:
        ipaddress.ip_network(v, strict=False)
    except (ValueError, TypeError):
        raise ConfigError(f"{key}: must be a CIDR like 10.0.0.0/8, got {show_value(v)}") from None


def _check_sink(key: str, v: Any) -> None:
    parse_sink_url(v, key=key)


def _check_source(key: str, v: Any) -> None:
    parse_source_url(v, key=key)


def _check_file(key: str, v: Path) -> None:
    if not v.is_file():
        what = "is not a file" if v.exists() else "no such file"
        raise ConfigError(f"{key}: must be an existing file, got {show_value(str(v))} ({what})")


def _check_flow_log(key: str, v: Any) -> None:
    if v != "":
        parse_sink_url(v, key=key)


_MODEL_KEYS = {
    "dir": _Key("path"),
    "providers": _Key("str", _one_of(*PROVIDERS)),
    "threshold": _Key("number", _between(0.0, 1.0)),
    "threshold_file": _Key("path", check=_check_file),
}
_SECTIONS: dict[str, tuple[type, dict[str, _Key]]] = {
    "source": (SourceConfig, {"url": _Key("str", check=_check_source)}),
    "model": (ModelConfig, _MODEL_KEYS),
    "flows": (FlowsConfig, {
        "idle_timeout_s": _Key("number", _gt(0)),
        "active_timeout_s": _Key("number", _gt(0)),
        "activity_timeout_s": _Key("number", _gt(0)),
        "max_flows": _Key("int", _between(1, 1 << 28)),
        "tcp_close_grace_s": _Key("number", _between(0, 3600)),
    }),
    "batching": (BatchingConfig, {
        "max_batch": _Key("int", _between(1, 65536)),
        "max_batch_delay_ms": _Key("number", _between(0, 60_000)),
    }),
    "alerts": (AlertsConfig, {
        "sinks": _Key("list", each=_check_sink),
        "flow_log": _Key("str", check=_check_flow_log),
        "allowlist": _Key("list", each=_check_cidr),
        "community_id_seed": _Key("int", _between(0, 65535)),
        "corroborate_max_packets": _Key("int", _between(0, 1_000_000)),
        "corroborate_min_flows": _Key("int", _between(1, 1_000_000)),
        "corroborate_min_flows_sensor": _Key("int", _between(0, 1_000_000_000)),
        "aggregate_after": _Key("int", _between(0, 1_000_000_000)),
        "window_s": _Key("number", _between(1, 86_400)),
    }),
    "metrics": (MetricsConfig, {
        "listen_address": _Key("str", _host),
        "port": _Key("int", _between(0, 65535)),
    }),
    "logging": (LoggingConfig, {
        "level": _Key("str", _one_of(*LEVELS)),
        "format": _Key("str", _one_of(*FORMATS)),
    }),
}
_PASS_THROUGH = ("kafka", "service")


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML config file; None gives the defaults.

    Raises:
        ConfigError: the file is unreadable, not TOML, or breaks a rule.
    """
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: cannot read config: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return config_from_dict(data, base_dir=p.resolve().parent, path=p)


def config_from_dict(data: Mapping[str, Any], *, base_dir: Path | None = None,
                     path: Path | None = None) -> Config:
    """Validate an already parsed TOML document (see :func:`load_config`).

    >>> config_from_dict({"flows": {"idle_timeout_s": 60}}).flows.idle_timeout_s
    60.0
    """
    known = [*_SECTIONS, *_PASS_THROUGH]
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name not in known:
            raise ConfigError(f"{name}: unknown section{did_you_mean(name, known)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: must be a table ([{name}]), got {show_value(table)}")
        if name in _PASS_THROUGH:
            _check_pass_through(name, table)
            sections[name] = _frozen(table)
        else:
            sections[name] = _section(name, table, base_dir)
    return Config(**sections, path=path)


def _check_pass_through(name: str, table: Mapping[str, Any]) -> None:
    """Validate ``[kafka]`` and ``[service]`` with their owners' rules, so ``check-config``
    catches their errors too (imported lazily: neither imports kafka-python)."""
    if name == "kafka":
        from .kafka.config import settings_from_table

        settings_from_table(table)
    elif name == "service":
        from .service.health import health_from_settings

        health_from_settings(table)


def _section(name: str, table: Mapping[str, Any], base_dir: Path | None) -> Any:
    cls, keys = _SECTIONS[name]
    values: dict[str, Any] = {}
    for key, raw in table.items():
        full = f"{name}.{key}"
        if key not in keys:
            raise ConfigError(f"{full}: unknown key{did_you_mean(key, list(keys))}")
        values[key] = _value(full, keys[key], raw, base_dir)
    return cls(**values)


def _value(full: str, spec: _Key, raw: Any, base_dir: Path | None) -> Any:
    value = _typed(full, spec.kind, raw)
    if spec.kind == "path":
        p = Path(value).expanduser()
        p = p if p.is_absolute() or base_dir is None else base_dir / p
        if spec.check is not None:
            spec.check(full, p)
        return p
    if spec.kind == "list":
        if spec.each is not None:
            for i, item in enumerate(value):
                spec.each(f"{full}[{i}]", item)
        if full in _URL_KEYS and base_dir is not None:
            value = [_absolute_url(v, base_dir, source=False) for v in value]
        return tuple(value)
    if spec.check is not None:
        spec.check(full, value)
    if full in _URL_KEYS and value and base_dir is not None:
        value = _absolute_url(value, base_dir, source=full == "source.url")
    broken = spec.rule(value) if spec.rule is not None else None
    if broken:
        raise ConfigError(f"{full}: {broken}, got {show_value(raw)}")
    return value


_URL_KEYS = ("source.url", "alerts.sinks", "alerts.flow_log")


def _absolute_url(raw: str, base_dir: Path, *, source: bool) -> str:
    """A file URL whose path is relative made relative to ``base_dir`` (the config's folder)."""
    url = parse_source_url(raw) if source else parse_sink_url(raw)
    if url.scheme not in ("pcap", "file") or Path(url.path).is_absolute():
        return raw
    return str(base_dir / url.path)


def _typed(full: str, kind: str, raw: Any) -> Any:
    if kind == "number" and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if kind == "int" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind in ("str", "path") and isinstance(raw, str):
        return raw.lower() if full in ("logging.level",) else raw
    if kind == "list" and isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return raw
    what = {"number": "a number", "int": "an integer", "str": "a string", "path": "a string",
            "list": "a list of strings"}[kind]
    raise ConfigError(f"{full}: must be {what}, got {show_value(raw)}")
