"""The ``cicflowmeter-v1`` schema: the CICFlowMeter feature set used by CIC-IDS2017.

Names, units and meaning follow the CIC-IDS2017 "improved" CSVs (Engelen et al. 2021), which
are CICFlowMeter output with its bugs fixed: durations and inter-arrival times in
microseconds, rates per second, lengths in bytes.  "Packet length" is the transport payload
length (TCP/UDP payload; ICMP and other protocols: the IP payload after their header), as in
CICFlowMeter.  "Header length" is the transport header length (TCP header with options, 8 for
UDP).  Identifiers (addresses, ports, timestamps, flow id) are deliberately not features.
"""

from __future__ import annotations

from .schema import FeatureSchema, FeatureSpec

_US = "us"
_B = "bytes"
_N = "count"
_PS = "1/s"
_BS = "bytes/s"


def _stats(prefix: str, unit: str, what: str, stats: tuple[str, ...]) -> list[FeatureSpec]:
    return [FeatureSpec(f"{prefix} {s}", unit, f"{s.lower()} of {what}") for s in stats]


_MMMS = ("Max", "Min", "Mean", "Std")
_MSMM = ("Mean", "Std", "Max", "Min")

_FEATURES: list[FeatureSpec] = [
    FeatureSpec("Flow Duration", _US, "last packet time minus first packet time"),
    FeatureSpec("Total Fwd Packet", _N, "packets sent by the flow's initiator"),
    FeatureSpec("Total Bwd packets", _N, "packets sent by the responder"),
    FeatureSpec("Total Length of Fwd Packet", _B, "sum of forward payload lengths"),
    FeatureSpec("Total Length of Bwd Packet", _B, "sum of backward payload lengths"),
    *_stats("Fwd Packet Length", _B, "forward payload lengths", _MMMS),
    *_stats("Bwd Packet Length", _B, "backward payload lengths", _MMMS),
    FeatureSpec("Flow Bytes/s", _BS, "payload bytes both ways / flow duration"),
    FeatureSpec("Flow Packets/s", _PS, "packets both ways / flow duration"),
    *_stats("Flow IAT", _US, "inter-arrival times of all packets", _MSMM),
    FeatureSpec("Fwd IAT Total", _US, "sum of forward inter-arrival times"),
    *_stats("Fwd IAT", _US, "forward inter-arrival times", _MSMM),
    FeatureSpec("Bwd IAT Total", _US, "sum of backward inter-arrival times"),
    *_stats("Bwd IAT", _US, "backward inter-arrival times", _MSMM),
    FeatureSpec("Fwd PSH Flags", _N, "forward packets with PSH set"),
    FeatureSpec("Bwd PSH Flags", _N, "backward packets with PSH set"),
    FeatureSpec("Fwd URG Flags", _N, "forward packets with URG set"),
    FeatureSpec("Bwd URG Flags", _N, "backward packets with URG set"),
    FeatureSpec("Fwd RST Flags", _N, "forward packets with RST set"),
    FeatureSpec("Bwd RST Flags", _N, "backward packets with RST set"),
    FeatureSpec("Fwd Header Length", _B, "sum of forward transport header lengths"),
    FeatureSpec("Bwd Header Length", _B, "sum of backward transport header lengths"),
    FeatureSpec("Fwd Packets/s", _PS, "forward packets / flow duration"),
    FeatureSpec("Bwd Packets/s", _PS, "backward packets / flow duration"),
    FeatureSpec("Packet Length Min", _B, "min payload length, both ways"),
    FeatureSpec("Packet Length Max", _B, "max payload length, both ways"),
    FeatureSpec("Packet Length Mean", _B, "mean payload length, both ways"),
    FeatureSpec("Packet Length Std", _B, "std of payload length, both ways"),
    FeatureSpec("Packet Length Variance", "bytes^2", "variance of payload length, both ways"),
    FeatureSpec("FIN Flag Count", _N, "packets with FIN, both ways"),
    FeatureSpec("SYN Flag Count", _N, "packets with SYN, both ways"),
    FeatureSpec("RST Flag Count", _N, "packets with RST, both ways"),
    FeatureSpec("PSH Flag Count", _N, "packets with PSH, both ways"),
    FeatureSpec("ACK Flag Count", _N, "packets with ACK, both ways"),
    FeatureSpec("URG Flag Count", _N, "packets with URG, both ways"),
    FeatureSpec("CWR Flag Count", _N, "packets with CWR, both ways"),
    FeatureSpec("ECE Flag Count", _N, "packets with ECE, both ways"),
    FeatureSpec("Down/Up Ratio", "ratio", "backward packets / forward packets"),
    FeatureSpec("Average Packet Size", _B, "total payload bytes / total packets"),
    FeatureSpec("Fwd Segment Size Avg", _B, "forward payload bytes / forward packets"),
    FeatureSpec("Bwd Segment Size Avg", _B, "backward payload bytes / backward packets"),
    FeatureSpec("Fwd Bytes/Bulk Avg", _B, "mean bytes per forward bulk transfer"),
    FeatureSpec("Fwd Packet/Bulk Avg", _N, "mean packets per forward bulk transfer"),
    FeatureSpec("Fwd Bulk Rate Avg", _BS, "mean forward bulk rate"),
    FeatureSpec("Bwd Bytes/Bulk Avg", _B, "mean bytes per backward bulk transfer"),
    FeatureSpec("Bwd Packet/Bulk Avg", _N, "mean packets per backward bulk transfer"),
    FeatureSpec("Bwd Bulk Rate Avg", _BS, "mean backward bulk rate"),
    FeatureSpec("Subflow Fwd Packets", _N, "forward packets / number of subflows"),
    FeatureSpec("Subflow Fwd Bytes", _B, "forward payload bytes / number of subflows"),
    FeatureSpec("Subflow Bwd Packets", _N, "backward packets / number of subflows"),
    FeatureSpec("Subflow Bwd Bytes", _B, "backward payload bytes / number of subflows"),
    FeatureSpec("FWD Init Win Bytes", _B, "TCP window of the first forward packet (0: none)"),
    FeatureSpec(
        "Bwd Init Win Bytes", _B, "TCP window of the last backward packet, as in the CSVs (0: none)"
    ),
    FeatureSpec("Fwd Act Data Pkts", _N, "forward packets with at least 1 byte of payload"),
    FeatureSpec("Fwd Seg Size Min", _B, "min forward transport header length"),
    *_stats("Active", _US, "active periods (gaps under the activity timeout)", _MSMM),
    *_stats("Idle", _US, "idle periods (gaps over the activity timeout)", _MSMM),
    FeatureSpec("ICMP Code", "code", "ICMP code of the first ICMP packet (-1: not ICMP)"),
    FeatureSpec("ICMP Type", "type", "ICMP type of the first ICMP packet (-1: not ICMP)"),
    FeatureSpec("Total TCP Flow Time", _US, "first SYN to last packet of a TCP flow (0: none)"),
]

CIC_SCHEMA = FeatureSchema("cicflowmeter-v1", tuple(_FEATURES))
