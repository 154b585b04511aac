"""Label rules for captures: which flows of a capture are which attack (or benign).

A capture under ``attack/`` is not 100 % attack traffic, so rules name the attacker and
victim addresses, ports, protocol and a time window; the first rule that matches a flow
labels it, and flows no rule matches get the capture's ``default`` label ("drop" leaves
them out).  The rules file is TOML::

    root = "../shared/data/pcaps"          # capture paths are relative to this

    [[capture]]
    path = "attack/scan/portscan-29ports.pcap"
    default = "drop"
    [[capture.rule]]
    label = "PortScan"
    hosts = ["10.100.25.14"]               # one endpoint in hosts (either direction) ...
    peers = ["10.100.18.12"]               # ... and, when given, the other in peers
    proto = 6                              # optional; ports = [..] (either port) optional
    after_s = 0.0                          # optional, seconds after the capture's first flow
    before_s = 60.0
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .labels import family

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
DROP = "drop"


@dataclass(frozen=True)
class Rule:
    label: str
    hosts: tuple[Net, ...] = ()
    peers: tuple[Net, ...] = ()
    ports: tuple[int, ...] = ()
    proto: int | None = None
    after_s: float | None = None
    before_s: float | None = None


@dataclass(frozen=True)
class CaptureRules:
    path: Path
    default: str
    rules: tuple[Rule, ...] = field(default_factory=tuple)


_RULE_KEYS = {"label", "hosts", "peers", "ports", "proto", "after_s", "before_s"}


def _label(value: Any, where: str, *, allow_drop: bool) -> str:
    if allow_drop and value == DROP:
        return DROP
    if not isinstance(value, str) or family(value) is None:
        raise ValueError(f"label rules: {where} must be a known label, got {value!r}")
    return str(family(value))


def _rule(d: dict[str, Any], where: str) -> Rule:
    unknown = set(d) - _RULE_KEYS
    if unknown:
        raise ValueError(f"label rules: unknown key {where}.{sorted(unknown)[0]}")
    nets = {
        k: tuple(ipaddress.ip_network(h, strict=False) for h in d.get(k, ()))
        for k in ("hosts", "peers")
    }
    return Rule(
        label=_label(d.get("label"), f"{where}.label", allow_drop=True),
        hosts=nets["hosts"],
        peers=nets["peers"],
        ports=tuple(int(p) for p in d.get("ports", ())),
        proto=d.get("proto"),
        after_s=d.get("after_s"),
        before_s=d.get("before_s"),
    )


def load_rules(path: Path) -> list[CaptureRules]:
    """Read and validate a rules file; capture paths are resolved against its ``root``.

    Raises:
        ValueError: unknown key, unknown label, or a capture file that does not exist.
    """
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    root = Path(doc.get("root", "."))
    out = []
    for i, cap in enumerate(doc.get("capture", [])):
        where = f"capture[{i}]"
        p = root / cap["path"]
        if not p.is_file():
            raise ValueError(f"label rules: {where}.path {p} does not exist")
        rules = tuple(_rule(r, f"{where}.rule[{j}]") for j, r in enumerate(cap.get("rule", [])))
        out.append(
            CaptureRules(
                p, _label(cap.get("default", DROP), f"{where}.default", allow_drop=True), rules
            )
        )
    return out


def addresses(hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]) -> list[Any]:
    """uint64 halves -> ip_address objects (IPv4-mapped IPv6 comes back as IPv4).

    >>> [str(a) for a in addresses(np.array([0], np.uint64), np.array([0xFFFF0A000001], np.uint64))]
    ['10.0.0.1']
    """
    out = []
    for h, lw in zip(hi.tolist(), lo.tolist(), strict=True):
        a = ipaddress.IPv6Address((int(h) << 64) | int(lw))
        out.append(a.ipv4_mapped or a)
    return out


def _in(addr: Any, nets: tuple[Net, ...]) -> bool:
    return any(addr.version == n.version and addr in n for n in nets)


def _matches(r: Rule, src: Any, dst: Any, row: np.void, t_rel: float) -> bool:
    if r.proto is not None and int(row["proto"]) != r.proto:
        return False
    if r.ports and int(row["sport"]) not in r.ports and int(row["dport"]) not in r.ports:
        return False
    if r.after_s is not None and t_rel < r.after_s:
        return False
    if r.before_s is not None and t_rel >= r.before_s:
        return False
    if r.hosts:
        fwd = _in(src, r.hosts) and (not r.peers or _in(dst, r.peers))
        rev = _in(dst, r.hosts) and (not r.peers or _in(src, r.peers))
        return fwd or rev
    return not r.peers or _in(src, r.peers) or _in(dst, r.peers)


def label_flows(meta: npt.NDArray[np.void], cap: CaptureRules, t0_ns: int) -> list[str]:
    """One label (a family, or "drop") per flow of ``meta`` (FLOW_META_DTYPE rows)."""
    srcs = addresses(meta["src_hi"], meta["src_lo"])
    dsts = addresses(meta["dst_hi"], meta["dst_lo"])
    labels = []
    for k in range(len(meta)):
        t_rel = (int(meta["first_ts_ns"][k]) - t0_ns) / 1e9
        for r in cap.rules:
            if _matches(r, srcs[k], dsts[k], meta[k], t_rel):
                labels.append(r.label)
                break
        else:
            labels.append(cap.default)
    return labels
