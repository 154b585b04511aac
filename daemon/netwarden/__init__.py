"""netwarden: a streaming network-attack detection daemon.

Pipeline: source -> decode -> flow table -> features -> batcher -> scorer -> alert policy -> sinks.
"""

__version__ = "0.1.0"
