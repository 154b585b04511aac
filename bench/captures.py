"""Capture files for the benchmark: build the 1M-packet capture, cut small ones, count records.

Standard library only, so the peer venvs and the orchestrator can use it without netwarden.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SHARED_PCAPS = SHARED / "data" / "pcaps"
MAKE_BENCH_PCAP = SHARED / "tools" / "make_bench_pcap.py"

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 16),
    b"\xa1\xb2\xc3\xd4": (">", 16),
    b"\x4d\x3c\xb2\xa1": ("<", 16),
    b"\xa1\xb2\x3c\x4d": (">", 16),
    b"\x34\xcd\xb2\xa1": ("<", 24),  # modified (Kuznetzov) pcap
    b"\xa1\xb2\xcd\x34": (">", 24),
}
_PCAPNG_PACKET_BLOCKS = {0x00000006, 0x00000003, 0x00000002}  # EPB, SPB, obsolete PB


def count_packets(path: Path) -> int:
    """Count packet records in a classic pcap or pcapng file (truncated tail not counted)."""
    data = path.read_bytes()
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return _count_pcapng(data)
    endian, rec_hdr = _PCAP_MAGICS[data[:4]]
    n, off = 0, 24
    while off + rec_hdr <= len(data):
        incl = struct.unpack_from(endian + "I", data, off + 8)[0]
        off += rec_hdr + incl
        if off > len(data):
            break
        n += 1
    return n


def _count_pcapng(data: bytes) -> int:
    n, off, endian = 0, 0, "<"
    while off + 12 <= len(data):
        if data[off : off + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if data[off + 8 : off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        btype, blen = struct.unpack_from(endian + "II", data, off)
        if blen < 12 or off + blen > len(data):
            break
        n += btype in _PCAPNG_PACKET_BLOCKS
        off += blen
    return n


def classic_shared_pcaps() -> list[Path]:
    """The shared classic-pcap captures (make_bench_pcap.py skips pcapng and non-Ethernet)."""
    return sorted(SHARED_PCAPS.rglob("*.pcap"))


def shared_captures_by_family() -> dict[str, list[Path]]:
    """Every shared capture (pcap and pcapng), keyed by family (``benign`` or the attack kind)."""
    families: dict[str, list[Path]] = {}
    for p in sorted(SHARED_PCAPS.rglob("*")):
        if p.suffix not in (".pcap", ".pcapng"):
            continue
        rel = p.relative_to(SHARED_PCAPS).parts
        family = rel[1] if rel[0] == "attack" else rel[0]
        families.setdefault(family, []).append(p)
    return families


def ensure_bench_pcap(out: Path, n_packets: int, python: str = sys.executable) -> Path:
    """Build ``out`` with the shared make_bench_pcap.py tool unless it already exists."""
    if out.exists():
        return out
    if not MAKE_BENCH_PCAP.exists():
        raise FileNotFoundError(f"{MAKE_BENCH_PCAP} not found: ../shared is needed to build {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    cmd = [python, str(MAKE_BENCH_PCAP), str(tmp), str(n_packets)]
    subprocess.run([*cmd, *map(str, classic_shared_pcaps())], check=True, capture_output=True)
    tmp.rename(out)
    return out


def cut_pcap(src: Path, dst: Path, n_packets: int) -> Path:
    """Write the first ``n_packets`` records of classic pcap ``src`` to ``dst`` (if missing)."""
    if dst.exists():
        return dst
    with src.open("rb") as f, dst.with_suffix(".tmp").open("wb") as g:
        head = f.read(24)
        endian, rec_hdr = _PCAP_MAGICS[head[:4]]
        g.write(head)
        for _ in range(n_packets):
            hdr = f.read(rec_hdr)
            if len(hdr) < rec_hdr:
                break
            incl = struct.unpack_from(endian + "I", hdr, 8)[0]
            g.write(hdr + f.read(incl))
    dst.with_suffix(".tmp").rename(dst)
    return dst
