"""Every Prometheus metric netwarden exports, built on an injected registry.

Metrics observe the pipeline; they never steer it.  Label values come from small fixed sets
(reasons, stages, labels of the model's classes, partition numbers): never addresses or ports.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

# Inference latency: 50 us .. 2.5 s; batch sizes: powers of two up to 8192.
_LATENCY_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25,
                    0.5, 1.0, 2.5)
_BATCH_BUCKETS = tuple(float(2**i) for i in range(14))
RESULTS = ("ok", "error")  # reloads{result}, model_loads{result}
_COMMIT_BUCKETS = (1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Owns every metric.  One instance per process (or per test, with its own registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        ns = "netwarden"
        # Capture and decode.
        self.packets = Counter("packets", "Frames read from sources", namespace=ns, registry=r)
        self.bytes = Counter("bytes", "Bytes of frames read (original length)", namespace=ns,
                             registry=r)
        self.frames_skipped = Counter("frames_skipped", "Frames not decoded, by reason",
                                      ["reason"], namespace=ns, registry=r)
        self.capture_drops = Counter("capture_kernel_drops", "Packets the kernel dropped",
                                     namespace=ns, registry=r)
        self.fragments = Counter("ip_fragments", "IP fragments seen (not reassembled), by kind",
                                 ["kind"], namespace=ns, registry=r)
        self.last_packet_ts = Gauge("last_packet_timestamp_seconds",
                                    "Wall-clock time the last packet was read", namespace=ns,
                                    registry=r)
        # Flows.
        self.active_flows = Gauge("active_flows", "Flows in the flow table", namespace=ns,
                                  registry=r)
        self.flows_ended = Counter("flows_ended", "Flows that left the flow table, by reason",
                                   ["reason"], namespace=ns, registry=r)
        # Inference.
        self.batch_size = Histogram("inference_batch_size", "Flows per inference batch",
                                    namespace=ns, buckets=_BATCH_BUCKETS, registry=r)
        self.inference_latency = Histogram("inference_latency_seconds",
                                           "Wall time of one inference batch", namespace=ns,
                                           buckets=_LATENCY_BUCKETS, registry=r)
        self.flows_scored = Counter("flows_scored", "Flows scored by the model", namespace=ns,
                                    registry=r)
        self.model_info = Info("model", "Model in use: name, version, provider", namespace=ns,
                               registry=r)
        self.model_loads = Counter("model_loads", "Model (re)loads by result", ["result"],
                                   namespace=ns, registry=r)
        # Alerts and errors.
        self.alerts = Counter("alerts", "Alerts emitted, by label", ["label"], namespace=ns,
                              registry=r)
        self.alerts_suppressed = Counter("alerts_suppressed",
                                         "Alerts not emitted on their own, by reason "
                                         "(allowlist, aggregated, uncorroborated, duplicate)",
                                         ["reason"], namespace=ns, registry=r)
        self.alerts_held = Gauge("alerts_held", "Lone flows waiting for corroboration",
                                 namespace=ns, registry=r)
        self.errors = Counter("errors", "Errors handled, by pipeline stage", ["stage"],
                              namespace=ns, registry=r)
        self.sink_records = Counter("sink_records", "Records written, by sink kind", ["sink"],
                                    namespace=ns, registry=r)
        # Kafka.
        self.kafka_messages = Counter("kafka_messages_consumed", "Kafka messages consumed",
                                      namespace=ns, registry=r)
        self.kafka_bytes = Counter("kafka_bytes_consumed", "Bytes of Kafka message values",
                                   namespace=ns, registry=r)
        self.kafka_lag = Gauge("kafka_consumer_lag", "Messages behind the partition end",
                               ["partition"], namespace=ns, registry=r)
        self.kafka_commit_latency = Histogram("kafka_commit_latency_seconds",
                                              "Wall time of an offset commit", namespace=ns,
                                              buckets=_COMMIT_BUCKETS, registry=r)
        self.kafka_bad_messages = Counter("kafka_bad_messages", "Kafka messages skipped, by reason",
                                          ["reason"], namespace=ns, registry=r)
        self.kafka_alerts_produced = Counter("kafka_alerts_produced", "Alerts produced to Kafka",
                                             namespace=ns, registry=r)
        self.kafka_produce_errors = Counter("kafka_produce_errors", "Kafka produce failures",
                                            namespace=ns, registry=r)
        self.kafka_connected = Gauge("kafka_connected", "1 while the broker is reachable",
                                     namespace=ns, registry=r)
        self.kafka_rebalances = Counter("kafka_rebalances", "Partition assignment changes",
                                        namespace=ns, registry=r)
        # Service.
        self.up = Gauge("ready", "1 when the source is connected and a model is loaded",
                        namespace=ns, registry=r)
        self.reloads = Counter("reloads", "SIGHUP reloads by result", ["result"], namespace=ns,
                               registry=r)
        self.init_series(self.reloads, "result", RESULTS)
        self.init_series(self.model_loads, "result", RESULTS)

    @staticmethod
    def init_series(metric: Counter, label: str, values: Iterable[str]) -> None:
        """Create ``metric{label=value}`` for each value, at 0 until first counted.

        A labelled series appears only once it is used; alert rules such as
        ``increase(netwarden_reloads_total{result="error"}[10m]) > 0`` need it from start-up.

        >>> m = Metrics()
        >>> m.registry.get_sample_value("netwarden_reloads_total", {"result": "error"})
        0.0
        """
        for value in values:
            metric.labels(**{label: value})
