"""``netwarden ship`` on the CLI, without importing kafka-python until the command runs.

The CLI mounts every subcommand at start-up; keeping the parser here means ``netwarden replay``
never loads the Kafka client.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Mount ``netwarden ship`` on the CLI's subparsers."""
    p = sub.add_parser(
        "ship",
        help="publish capture files or an interface to a Kafka topic",
        description="Publish packets to Kafka in the netwarden or pycapa format, "
        "partitioned by a symmetric flow hash (see docs/kafka.md).",
    )
    p.add_argument("pcaps", nargs="*", metavar="PCAP", help="capture files, in order")
    p.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="kafka://host:port/topic?format=netwarden|pycapa&partitions=N"
        "&keying=flow|pycapa&max_packets=N&max_bytes=N",
    )
    p.add_argument("--interface", metavar="IF", help="ship live from this interface instead")
    p.add_argument(
        "--duration-s",
        type=float,
        default=0.0,
        help="with --interface: stop after this many seconds (0: until Ctrl-C)",
    )
    p.add_argument("--config", metavar="FILE", help="TOML config; its [kafka] table is used")
    p.set_defaults(func=_cmd_ship)


def _cmd_ship(args: argparse.Namespace) -> int:
    from .ship import cmd_ship

    return cmd_ship(args)
