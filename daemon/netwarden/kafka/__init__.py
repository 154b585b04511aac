"""Kafka integration: raw-packet topics in (``kafka://`` source), alerts out (``kafka://``
sink), and the ``netwarden ship`` producer.  See docs/kafka.md.

The source registry finds ``netwarden.kafka.source.open_source``; ``app_build`` opens
``kafka://`` alert sinks with ``netwarden.kafka.sink.open_kafka_sink`` and the ``[kafka]``
table.  Other users of :func:`netwarden.sinks.open_sink` (whose factories get no config) call
:func:`install` once to register the ``kafka`` sink scheme with the table's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def install(kafka_table: Mapping[str, Any] | None = None) -> None:
    """Register the ``kafka`` sink scheme with the ``[kafka]`` config table's settings.

    Raises:
        ConfigError: the table is invalid.
    """
    from ..metrics import Metrics
    from ..sinks import register_sink_scheme
    from ..stages import Sink
    from .config import settings_from_table
    from .sink import open_kafka_sink

    settings = settings_from_table(kafka_table)

    def factory(url: str, metrics: Metrics | None) -> Sink:
        return open_kafka_sink(url, metrics=metrics, settings=settings)

    register_sink_scheme("kafka", factory, replace=True)
