"""Source and sink URLs, parsed and checked once (part of the config loader).

Also the config error type and the message helpers every config check shares.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .exitcodes import BAD_CONFIG, UserError

# Schemes known at config time; plug-ins add theirs with :func:`allow_url_scheme`.
_SOURCE_SCHEMES = {"pcap", "iface", "tshark", "kafka"}
_SINK_SCHEMES = {"stdout", "file", "kafka"}


class ConfigError(UserError):
    """The config (or a flag that overrides it) is invalid; the message names key and rule."""

    def __init__(self, message: str) -> None:
        super().__init__(message, BAD_CONFIG)


@dataclass(frozen=True, slots=True)
class Url:
    """A parsed source or sink URL.  ``path`` is a file path for pcap/file URLs, the topic
    for kafka (no leading slash); ``host`` is the interface for iface/tshark, the broker
    list for kafka."""

    raw: str
    scheme: str
    host: str = ""
    path: str = ""
    params: Mapping[str, str] = field(default_factory=dict)


def allow_url_scheme(kind: str, scheme: str) -> None:
    """Accept ``scheme`` in ``kind`` ("source" or "sink") URLs from now on."""
    (_SOURCE_SCHEMES if kind == "source" else _SINK_SCHEMES).add(scheme)


def parse_source_url(raw: str, *, key: str = "source.url") -> Url:
    """Parse a source URL; a plain path is a pcap file.

    >>> parse_source_url("kafka://b1:9092/frames?group=nw").params["group"]
    'nw'
    >>> parse_source_url("/tmp/x.pcap").scheme
    'pcap'
    """
    return _parse_url(raw, key=key, schemes=_SOURCE_SCHEMES, plain="pcap")


def parse_sink_url(raw: str, *, key: str = "alerts.sinks") -> Url:
    """Parse a sink URL: ``-`` is stdout, a plain path is a file.

    >>> parse_sink_url("-").scheme
    'stdout'
    >>> parse_sink_url("file:///var/log/a.json").path
    '/var/log/a.json'
    """
    if raw == "-":
        return Url(raw, "stdout")
    return _parse_url(raw, key=key, schemes=_SINK_SCHEMES, plain="file")


def _parse_url(raw: str, *, key: str, schemes: set[str], plain: str) -> Url:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{key}: must be a non-empty URL or path, got {show_value(raw)}")
    if "://" not in raw:
        return Url(raw, plain, path=raw)
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        known = ", ".join(sorted(schemes))
        raise ConfigError(
            f"{key}: unknown URL scheme {scheme!r} (expected one of {known}, or a plain path)"
            f"{did_you_mean(scheme, schemes)}, got {show_value(raw)}"
        )
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme in ("pcap", "file"):
        path = parts.netloc + parts.path  # pcap://rel/a.pcap is the relative path rel/a.pcap
        if not path:
            raise ConfigError(f"{key}: a {scheme} URL needs a path, got {show_value(raw)}")
        return Url(raw, scheme, "", path, params)
    if scheme == "kafka":
        return Url(raw, scheme, parts.netloc, _kafka_topic(raw, parts.netloc, parts.path, key),
                   params)
    if not parts.netloc and not parts.path:
        raise ConfigError(f"{key}: needs an interface, like {scheme}://eth0, got {show_value(raw)}")
    return Url(raw, scheme, parts.netloc, parts.path, params)


def _kafka_topic(raw: str, brokers: str, path: str, key: str) -> str:
    example = "like kafka://host:9092/topic"
    if not brokers:
        raise ConfigError(f"{key}: needs a broker, {example}, got {show_value(raw)}")
    for broker in brokers.split(","):
        host, _, port = broker.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"{key}: each broker must be host:port with a port in 1..65535, {example}, "
                f"got {show_value(raw)}"
            )
    topic = path.lstrip("/")
    if not topic or "/" in topic:
        raise ConfigError(f"{key}: needs one topic, {example}, got {show_value(raw)}")
    return topic


def did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def show_value(v: Any) -> str:
    """A value as the user wrote it in TOML (bools lower case, strings quoted)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "a table"
    return repr(v)
