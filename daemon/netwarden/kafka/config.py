"""Kafka settings: the ``[kafka]`` config table and the query parameters of ``kafka://`` URLs.

Validated here once; the source, sink and shipper take the frozen results.  Security settings
(SASL PLAIN/SCRAM, SSL) pass through to kafka-python under its own names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..config import ConfigError, Url, parse_sink_url, parse_source_url
from .formats import FORMATS

# kafka-python options passed through unchanged from the [kafka] table.
SECURITY_KEYS = (
    "security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
    "sasl_kerberos_service_name", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password",
    "ssl_crlfile", "ssl_check_hostname", "ssl_ciphers", "client_id",
)
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")
_OFFSET_RESETS = ("earliest", "latest")


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """The ``[kafka]`` table.  Defaults are kafka-python's group timings scaled down so a
    consumer joins in about 3 s (kafka-python's defaults take 20 s or more against tansu)."""

    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    max_poll_interval_ms: int = 300_000
    max_poll_records: int = 2_000
    fetch_max_bytes: int = 52_428_800
    max_partition_fetch_bytes: int = 8_388_608
    poll_timeout_ms: int = 200  # a quiet source yields an empty batch this often
    join_poll_timeout_ms: int = 5_000  # poll timeout while no partition is assigned (joining)
    check_crcs: bool = True  # keep: the crc32c extension makes it cheap (docs/kafka.md)
    request_timeout_ms: int = 30_000
    bootstrap_timeout_ms: int = 5_000  # one connection attempt; the source retries with backoff
    reconnect_backoff_ms: int = 100
    reconnect_backoff_max_ms: int = 10_000
    commit_interval_s: float = 1.0  # how often the app commits watermarks
    connect_retry_max_s: float = 30.0  # cap of the backoff between attempts to (re)connect
    # Producer (alert sink and shipper).
    acks: str = "all"
    linger_ms: int = 5
    max_in_flight_requests_per_connection: int = 5
    max_pending_alerts: int = 10_000  # unacknowledged alerts at most (kafka-python 3 has
    # no buffer_memory bound): past it, write() waits up to max_block_ms, then parks alerts
    max_block_ms: int = 1_000  # send() waits at most this long for buffer room, then drops
    retries: int = 5
    enable_idempotence: bool = False
    delivery_timeout_ms: int = 30_000
    flush_timeout_s: float = 10.0
    retry_buffer: int = 10_000  # failed alerts kept for the next flush before dropping
    dedup_window: int = 100_000  # alert ids remembered to suppress re-sends (0: off)
    security: Mapping[str, Any] = field(default_factory=dict)

    def client_options(self) -> dict[str, Any]:
        """kafka-python options common to consumers and producers."""
        return {
            "request_timeout_ms": self.request_timeout_ms,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
            "reconnect_backoff_ms": self.reconnect_backoff_ms,
            "reconnect_backoff_max_ms": self.reconnect_backoff_max_ms,
            **dict(self.security),
        }


# Timings the tests use: a group forms in about 3 s against tansu.
TEST_SETTINGS = dict(session_timeout_ms=6_000, heartbeat_interval_ms=1_000,
                     max_poll_interval_ms=3_000)


def settings_from_table(table: Mapping[str, Any] | None) -> KafkaSettings:
    """Validate the ``[kafka]`` table.

    >>> settings_from_table({"session_timeout_ms": 6000}).session_timeout_ms
    6000
    >>> sec = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
    ...        "sasl_plain_username": "nw", "sasl_plain_password": "secret"}
    >>> settings_from_table(sec).client_options()["sasl_mechanism"]
    'SCRAM-SHA-512'
    """
    table = dict(table or {})
    security = {k: table.pop(k) for k in SECURITY_KEYS if k in table}
    _check_security(security)
    known = {f.name: f for f in fields(KafkaSettings) if f.name != "security"}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in known:
            raise ConfigError(f"kafka.{key}: unknown key (known: {', '.join(sorted(known))}, "
                              f"{', '.join(SECURITY_KEYS)})")
        values[key] = _typed(key, raw, type(getattr(KafkaSettings(), key)))
    if "acks" in values and values["acks"] not in ("all", "0", "1"):
        raise ConfigError(f"kafka.acks: must be all, 0 or 1, got {values['acks']!r}")
    return KafkaSettings(**values, security=security)


def _typed(key: str, raw: Any, kind: type) -> Any:
    ok = isinstance(raw, kind) and not (kind is not bool and isinstance(raw, bool))
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        ok, raw = True, float(raw)
    if not ok:
        raise ConfigError(f"kafka.{key}: must be {kind.__name__}, got {raw!r}")
    if kind in (int, float) and raw < 0:
        raise ConfigError(f"kafka.{key}: must be >= 0, got {raw!r}")
    return raw


def _check_security(sec: Mapping[str, Any]) -> None:
    proto = sec.get("security_protocol", "PLAINTEXT")
    if proto not in _PROTOCOLS:
        raise ConfigError(f"kafka.security_protocol: must be one of {', '.join(_PROTOCOLS)}, "
                          f"got {proto!r}")
    mech = sec.get("sasl_mechanism")
    if mech is not None and mech not in _MECHANISMS:
        raise ConfigError(f"kafka.sasl_mechanism: must be one of {', '.join(_MECHANISMS)}, "
                          f"got {mech!r}")
    if proto.startswith("SASL") and mech in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and (
            "sasl_plain_username" not in sec or "sasl_plain_password" not in sec):
        raise ConfigError(f"kafka.sasl_plain_username/sasl_plain_password: required with "
                          f"sasl_mechanism {mech}")


@dataclass(frozen=True, slots=True)
class TopicUrl:
    """A ``kafka://host:port[,host:port]/topic?...`` URL, validated."""

    brokers: tuple[str, ...]
    topic: str
    group: str = "netwarden"
    format: str = "netwarden"
    offset_reset: str = "earliest"
    partitions: int = 0  # shipper: create the topic with this many partitions (0: leave it)
    keying: str = "flow"  # shipper: "flow" (symmetric flow hash) or "pycapa" (timestamp key)
    max_packets: int = 1024  # shipper, netwarden format: packets per message at most
    max_bytes: int = 900_000  # shipper, netwarden format: message size at most


_URL_KEYS = {"group", "format", "offset_reset", "partitions", "keying", "max_packets",
             "max_bytes"}


def parse_topic_url(raw: str | Url, *, key: str = "source.url", sink: bool = False) -> TopicUrl:
    """Validate a kafka URL and its query parameters.

    >>> u = parse_topic_url("kafka://127.0.0.1:9092/frames?group=g1&format=pycapa")
    >>> u.brokers, u.topic, u.group, u.format
    (('127.0.0.1:9092',), 'frames', 'g1', 'pycapa')
    """
    url = raw if isinstance(raw, Url) else (
        parse_sink_url(raw, key=key) if sink else parse_source_url(raw, key=key))
    if url.scheme != "kafka":
        raise ConfigError(f"{key}: expected a kafka:// URL, got {url.raw!r}")
    unknown = set(url.params) - _URL_KEYS
    if unknown:
        raise ConfigError(f"{key}: unknown query parameter(s) {sorted(unknown)} "
                          f"(known: {sorted(_URL_KEYS)}), got {url.raw!r}")
    p = dict(url.params)
    ints = {k: _int_param(key, k, p.pop(k), url.raw)
            for k in ("partitions", "max_packets", "max_bytes") if k in p}
    out = TopicUrl(tuple(url.host.split(",")), url.path, **p, **ints)  # type: ignore[arg-type]
    _check_choice(key, "format", out.format, FORMATS, url.raw)
    _check_choice(key, "offset_reset", out.offset_reset, _OFFSET_RESETS, url.raw)
    _check_choice(key, "keying", out.keying, ("flow", "pycapa"), url.raw)
    return out


def _int_param(key: str, name: str, value: str, raw: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{key}: query parameter {name} must be a positive integer, "
                          f"got {value!r} in {raw!r}")
    return int(value)


def _check_choice(key: str, name: str, value: str, choices: tuple[str, ...], raw: str) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: query parameter {name} must be one of {', '.join(choices)}, "
                          f"got {value!r} in {raw!r}")
