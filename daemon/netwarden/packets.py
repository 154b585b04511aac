"""Batch records passed between the first stages of the pipeline.

A source yields :class:`FrameBatch` objects (raw link-layer frames, many per batch, no Python
object per frame).  The decoder turns a frame batch into a numpy structured array of
``PACKET_DTYPE`` (one row per decodable packet) plus skip counts by reason.  The flow table
consumes packet arrays.  Nothing on the per-packet path builds a Python object per packet.

Addresses are stored as two ``uint64`` halves of the 128-bit IPv6 address; IPv4 addresses are
IPv4-mapped (``::ffff:a.b.c.d``), so ``hi == 0`` and ``lo == 0xFFFF_0000_0000 | ipv4``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Link types (pcap LINKTYPE_* values) the decoder understands.
LINKTYPE_NULL = 0  # BSD loopback: 4-byte host-order address family
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OLD = 12  # raw IP on some BSDs (DLT_RAW)
LINKTYPE_RAW_OLD2 = 14  # raw IP (DLT_RAW on OpenBSD)
LINKTYPE_RAW = 101  # raw IPv4/IPv6
LINKTYPE_LOOP = 108  # OpenBSD loopback: 4-byte network-order address family
LINKTYPE_LINUX_SLL = 113  # Linux cooked capture v1
LINKTYPE_LINUX_SLL2 = 276  # Linux cooked capture v2

IPV4_MAPPED_PREFIX = np.uint64(0xFFFF_0000_0000)

# TCP flag bits as they appear in the TCP header's flags byte.
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80

# Values of the ``frag`` field.
FRAG_NONE = 0  # not a fragment
FRAG_FIRST = 1  # offset 0, more fragments follow: carries the transport header
FRAG_LATER = 2  # offset > 0: no transport header, ports unknown

PACKET_DTYPE = np.dtype(
    [
        ("ts_ns", np.int64),  # capture time, ns since the epoch
        ("src_hi", np.uint64),
        ("src_lo", np.uint64),
        ("dst_hi", np.uint64),
        ("dst_lo", np.uint64),
        ("sport", np.uint16),  # 0 where the protocol has no ports
        ("dport", np.uint16),
        ("proto", np.uint8),  # IP protocol number (after IPv6 extension headers)
        ("ip_version", np.uint8),  # 4 or 6
        ("vlan", np.uint16),  # outermost 802.1Q/802.1ad VLAN id, 0 when untagged
        ("wire_len", np.uint32),  # original frame length on the wire
        ("ip_len", np.uint32),  # IP total length (IPv4) / 40 + payload length (IPv6)
        ("ip_hdr_len", np.uint16),  # IP header incl. IPv6 extension headers
        ("l4_hdr_len", np.uint16),  # TCP header incl. options / 8 UDP / 8 ICMP / 0
        ("payload_len", np.uint32),  # transport payload bytes (from IP lengths, not caplen)
        ("tcp_flags", np.uint8),
        ("tcp_window", np.uint16),
        ("icmp_type", np.uint8),
        ("icmp_code", np.uint8),
        ("ttl", np.uint8),  # IPv4 TTL / IPv6 hop limit
        ("frag", np.uint8),  # FRAG_* value
        ("src_part", np.int32),  # source partition (Kafka partition, file index); -1 if none
        ("src_seq", np.int64),  # position within the partition (Kafka offset, record index)
    ],
    align=False,
)

PacketArray = npt.NDArray[np.void]


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """Many raw frames in one contiguous buffer.

    Frame ``i`` is ``data[offsets[i] : offsets[i] + caplen[i]]``.  ``linktype`` is per frame so a
    pcapng file with several interfaces (or a Kafka message mixing sensors) fits in one batch.
    ``part``/``seq`` identify each frame's origin for at-least-once delivery (Kafka partition and
    offset); file sources use the file index and the record number.
    """

    data: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]
    caplen: npt.NDArray[np.uint32]
    wirelen: npt.NDArray[np.uint32]
    ts_ns: npt.NDArray[np.int64]
    linktype: npt.NDArray[np.uint16]
    part: npt.NDArray[np.int32]
    seq: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.offsets.shape[0])


def empty_packets(n: int = 0) -> PacketArray:
    """Return a zeroed packet array of ``n`` rows.

    >>> empty_packets(2).shape
    (2,)
    """
    return np.zeros(n, dtype=PACKET_DTYPE)
