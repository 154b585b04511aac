"""The ``netwarden`` command: argv in, exit code out.

The only module that reads argv and the environment.  Each subcommand registers itself with
``add_parser(subparsers)`` and sets ``func(args) -> int``; optional subcommand modules (the
training package's ``train``/``evaluate``/``calibrate``, anything else listed in
:data:`OPTIONAL_COMMANDS`) are added when they import, and replaced by a stub that explains
what to install when they do not.  A user error ends with one log line and the exit code from
:mod:`netwarden.exitcodes`; only internal errors show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from . import __version__
from .exitcodes import INTERNAL, INTERRUPTED, OK, user_error_code
from .logsetup import FORMATS, LEVELS, setup_logging

log = logging.getLogger("netwarden")

# module -> (subcommands it provides, hint when it cannot be imported)
OPTIONAL_COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "netwarden_train.cli": (("train", "evaluate", "calibrate"),
                            "install the training extras: pip install -e '.[train]'"),
    "netwarden.kafka.ship_cli": (("ship",), "reinstall netwarden (kafka-python is a dependency)"),
}


def add_parser_replay(sub: Any) -> None:
    p = sub.add_parser("replay", help="score capture files as fast as possible",
                       description="Read capture files, print alerts as JSON lines (stdout by "
                       "default) and a summary on stderr.")
    p.add_argument("pcaps", nargs="+", metavar="PCAP", help="pcap or pcapng files, in order")
    _model_flags(p)
    p.add_argument("--config", metavar="FILE", help="TOML config (flows, batching, alerts)")
    p.add_argument("--alerts-out", metavar="PATH",
                   help="write alerts here instead of stdout (appends to an existing file)")
    p.add_argument("--flows-out", metavar="PATH",
                   help="also write one document per flow (appends to an existing file)")
    p.add_argument("--realtime", action="store_true", help="pace at capture speed")
    p.add_argument("--metrics-port", type=int, default=0, metavar="N",
                   help="serve /metrics on 127.0.0.1:N while replaying (0: off)")
    p.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON")
    p.set_defaults(func=_lazy("netwarden.app_commands", "cmd_replay"))


def add_parser_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run the daemon on a live or Kafka source",
                       description="Long-running detection; flags override the config file.")
    p.add_argument("--config", metavar="FILE", help="TOML config file")
    p.add_argument("--source", metavar="URL",
                   help="pcap:///path, iface://eth0, tshark://eth0, kafka://host:port/topic")
    p.add_argument("--alerts", metavar="URL", action="append",
                   help="alert sink (-, file:///path, kafka://...; files are appended to); "
                   "repeat for several")
    p.add_argument("--model", metavar="DIR", help="model directory")
    p.add_argument("--realtime", action="store_true", help="pace file sources at capture speed")
    p.set_defaults(func=_lazy("netwarden.app_commands", "cmd_run"))


def add_parser_check_config(sub: Any) -> None:
    p = sub.add_parser("check-config", help="validate a config file and print it resolved")
    p.add_argument("file", metavar="FILE", nargs="?")
    p.add_argument("--config", metavar="FILE", help="the same as FILE")
    p.set_defaults(func=_lazy("netwarden.app_commands", "cmd_check_config"))


def add_parser_model(sub: Any) -> None:
    p = sub.add_parser("model", help="inspect a model directory")
    msub = p.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    info = msub.add_parser("info", help="summary of a model's manifest")
    info.add_argument("dir", metavar="DIR")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    info.set_defaults(func=_lazy("netwarden.app_commands", "cmd_model_info"))


def add_parser_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="generate benign and attack traffic and detect the attacks")
    p.add_argument("--model", metavar="DIR", help="model directory (default: the bundled one)")
    p.add_argument("--seed", type=int, default=7, help="traffic generator seed (default 7)")
    p.add_argument("--keep-pcap", metavar="PATH", help="also save the generated capture here")
    p.add_argument("--alerts-out", metavar="PATH",
                   help="write every alert as JSON lines here (appends to an existing file)")
    p.add_argument("--max-alerts", type=int, default=15, metavar="N",
                   help="alerts to print (default 15)")
    p.set_defaults(func=_lazy("netwarden.demo", "cmd_demo"), quiet_default=True)


BUILTIN_COMMANDS: tuple[Callable[[Any], None], ...] = (
    add_parser_replay, add_parser_run, add_parser_check_config, add_parser_model,
    add_parser_demo)


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="model directory (default: the bundled one)")
    p.add_argument("--threshold", type=float, metavar="X", help="alert threshold override")
    p.add_argument("--threshold-file", metavar="PATH",
                   help="a threshold.json to use instead of the model directory's")
    p.add_argument("--providers", choices=("auto", "cpu", "cuda"), help="ONNX Runtime provider")


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A handler imported on first call, so ``netwarden --help`` stays fast."""
    def run(args: argparse.Namespace) -> int:
        handler: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(module), name)
        return handler(args)
    return run


def _add_optional(sub: Any) -> None:
    for module, (names, hint) in OPTIONAL_COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ImportError as e:  # torch missing, or the module does not exist in this build
            _add_stubs(sub, names, f"{hint} ({e})")
            continue
        mod.add_parser(sub)


def _add_stubs(sub: Any, names: Sequence[str], hint: str) -> None:
    def unavailable(args: argparse.Namespace) -> int:
        log.error("netwarden %s is not available: %s", args.command, hint)
        return 2

    for name in names:
        if name in sub.choices:
            continue
        p = sub.add_parser(name, help=f"(not available: {hint.split(' (')[0]})", add_help=False)
        p.set_defaults(func=unavailable, accepts_extra=True)  # whatever follows: same hint


class _Subcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Gives every subcommand the common flags, so ``--log-level`` works after it too."""

    common: argparse.ArgumentParser | None = None

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        if self.common is not None:
            kw.setdefault("parents", [self.common])
        parser: argparse.ArgumentParser = super().add_parser(name, **kw)
        return parser


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (built-in and optional subcommands)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", choices=LEVELS, default=argparse.SUPPRESS,
                        help="log level (default: info; run/replay config may set it)")
    common.add_argument("--log-format", choices=FORMATS, default=argparse.SUPPRESS,
                        help="log format on stderr (default: text)")
    parser = argparse.ArgumentParser(
        prog="netwarden", parents=[common],
        description="Streaming network-attack detection: packets -> flows -> ONNX scores -> "
                    "alerts.")
    parser.add_argument("--version", action="version", version=f"netwarden {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                action=_Subcommands)
    cast(_Subcommands, sub).common = common
    for add in BUILTIN_COMMANDS:
        add(sub)
    _add_optional(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``netwarden`` console script; returns the exit code."""
    _no_huge_pages_by_default()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    default_level = "warning" if getattr(args, "quiet_default", False) else "info"
    setup_logging(getattr(args, "log_level", default_level), getattr(args, "log_format", "text"))
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        log.warning("interrupted")
        return INTERRUPTED
    except BrokenPipeError:  # `netwarden replay x.pcap | head`: the reader left, not an error
        _silence_stdout()
        return OK
    except Exception as e:
        code = user_error_code(e)
        if code is None:
            log.exception("internal error (a bug; please report it with this traceback)")
            return INTERNAL
        log.error("%s", _one_line(e))
        return code


def _no_huge_pages_by_default() -> None:
    """Ask numpy (not yet imported) not to madvise its large arrays for transparent huge pages,
    unless ``NUMPY_MADVISE_HUGEPAGE`` is set.

    The flow table's arrays are allocated at start-up and as they grow; on a kernel whose THP
    ``defrag`` setting is ``madvise`` (the usual default) each of those page faults may compact
    memory first.  On the benchmark machine that doubled replay's system time (0.45 s of a
    2.0 s replay of 1M packets, 0.2 s without) and made it vary from run to run, with no
    measurable gain in user time from fewer TLB misses.
    """
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _silence_stdout() -> None:
    try:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
