"""Per-flow state layout of the ``cicflowmeter-v1`` features (column numbers, no code).

The flow table keeps the state of every open flow in two preallocated matrices, one row per
flow: ``int64`` (counts, sums, extremes, timestamps in ns) and ``float64`` (Welford running
means and sums of squared deviations).  These constants name their columns; numba freezes
module-level integers into the compiled code, so a column access costs one indexed load.
Constant memory per flow: ``N_ICOLS * 8 + N_FCOLS * 8`` bytes, whatever the flow's length.
"""

from __future__ import annotations

# ---- int64 columns ------------------------------------------------------------------------
FWD_N, BWD_N = 0, 1  # packets per direction
FWD_PL, BWD_PL = 2, 3  # payload byte sums
FWD_PL_MIN, FWD_PL_MAX, BWD_PL_MIN, BWD_PL_MAX = 4, 5, 6, 7
FWD_HDR, BWD_HDR = 8, 9  # transport header byte sums
FWD_WIN, BWD_WIN = 10, 11  # TCP window: first forward packet / last backward packet
ACT_DATA = 12  # forward packets with payload >= 1
SEG_MIN = 13  # min forward transport header length
# flag counts both ways, in the schema's order FIN SYN RST PSH ACK URG CWR ECE
FL_FIN, FL_SYN, FL_RST, FL_PSH, FL_ACK, FL_URG, FL_CWR, FL_ECE = 14, 15, 16, 17, 18, 19, 20, 21
F_PSH, B_PSH, F_URG, B_URG, F_RST, B_RST = 22, 23, 24, 25, 26, 27
IAT_MIN, IAT_MAX, FIAT_MIN, FIAT_MAX, BIAT_MIN, BIAT_MAX = 28, 29, 30, 31, 32, 33
FWD_LAST, BWD_LAST, LAST_TS = 34, 35, 36  # ns
# bulk state, forward block then backward block (CICFlowMeter's updateForwardBulk variables)
BULK_F, BULK_B = 37, 45
B_DUR, B_PKTS, B_SIZE, B_STATES, B_PKT_H, B_START_H, B_SIZE_H, B_LAST = 0, 1, 2, 3, 4, 5, 6, 7
# activity (Active*/Idle*) state
START_ACT, END_ACT = 53, 54
ACT_N, ACT_MIN, ACT_MAX, IDLE_N, IDLE_MIN, IDLE_MAX = 55, 56, 57, 58, 59, 60
ICMP_CODE, ICMP_TYPE = 61, 62  # of the first packet, -1 when not ICMP
CONN_START = 63  # ns: start of the TCP connection this flow continues (Total TCP Flow Time)
FIRST_TS = 64  # ns
BWD_FIRST = 65  # ns: first backward packet (Bwd IAT Total)
N_ICOLS = 66

# ---- float64 columns (Welford: running mean and M2 = sum of squared deviations) ----------
FWD_MEAN, FWD_M2, BWD_MEAN, BWD_M2 = 0, 1, 2, 3
IAT_MEAN, IAT_M2, FIAT_MEAN, FIAT_M2, BIAT_MEAN, BIAT_M2 = 4, 5, 6, 7, 8, 9
ACT_MEAN, ACT_M2, IDLE_MEAN, IDLE_M2 = 10, 11, 12, 13
N_FCOLS = 14

BYTES_PER_FLOW = 8 * (N_ICOLS + N_FCOLS)
