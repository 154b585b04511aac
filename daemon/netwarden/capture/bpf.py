"""Classic BPF programs for packet sockets: compile a tcpdump-style filter, attach it.

libpcap (through scapy, no tcpdump needed) compiles the expression for the interface's link
type; the accept length becomes the snapshot length, so the kernel copies no more than that,
and an optional two-instruction prefix drops outgoing packets (loopback shows each packet
twice, once outgoing and once incoming).
"""

from __future__ import annotations

import ctypes
import socket
import struct

from ..exitcodes import BAD_CONFIG, UserError

SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
# cBPF opcodes used for the loopback prefix and the default accept-all program.
_BPF_LD_B_ABS = 0x30
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06
_SKF_AD_PKTTYPE = (-0x1000 + 4) & 0xFFFFFFFF


def bpf_program(
    expr: str, *, linktype: int, snaplen: int, drop_outgoing: bool = False
) -> list[tuple[int, int, int, int]]:
    """Classic BPF instructions ``(code, jt, jf, k)`` for a tcpdump-style filter expression.

    Accepting returns map to ``snaplen`` (the kernel truncates there); an empty expression
    accepts everything.  ``drop_outgoing`` prepends a test that rejects ``PACKET_OUTGOING``.

    Raises:
        UserError: (exit code 3) the expression does not compile.

    >>> bpf_program("", linktype=1, snaplen=96)
    [(6, 0, 0, 96)]
    >>> bpf_program("", linktype=1, snaplen=96, drop_outgoing=True)[:3]
    [(48, 0, 0, 4294963204), (21, 0, 1, 4), (6, 0, 0, 0)]
    """
    body = _compile(expr, linktype) if expr.strip() else [(_BPF_RET_K, 0, 0, 1)]
    body = [(c, jt, jf, snaplen if c == _BPF_RET_K and k else k) for c, jt, jf, k in body]
    if drop_outgoing:
        prefix = [
            (_BPF_LD_B_ABS, 0, 0, _SKF_AD_PKTTYPE),
            (_BPF_JEQ_K, 0, 1, PACKET_OUTGOING),
            (_BPF_RET_K, 0, 0, 0),
        ]
        body = prefix + body
    return body


def _compile(expr: str, linktype: int) -> list[tuple[int, int, int, int]]:
    """Compile with libpcap through scapy (imported only when a filter is given)."""
    try:
        from scapy.arch.common import compile_filter
        from scapy.error import Scapy_Exception
    except ImportError as e:
        raise UserError(f"capture filter {expr!r}: cannot load libpcap: {e}", BAD_CONFIG) from e
    try:
        prog = compile_filter(expr, linktype=linktype)
    except (Scapy_Exception, ImportError, OSError) as e:
        raise UserError(f"capture filter {expr!r}: {e}", BAD_CONFIG) from e
    ins = prog.bf_insns
    return [(ins[i].code, ins[i].jt, ins[i].jf, ins[i].k) for i in range(prog.bf_len)]


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


def attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    """``SO_ATTACH_FILTER``: the kernel copies the program, so the buffer may go after."""
    insns = (_SockFilter * len(prog))(*(_SockFilter(*i) for i in prog))
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(insns))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
