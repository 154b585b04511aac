"""Kafka formats, partitioning and settings without a broker: property tests (round trips,
hash symmetry), every bad-input reason, and config validation messages."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netwarden.config import ConfigError
from netwarden.kafka.config import parse_topic_url, settings_from_table
from netwarden.kafka.formats import (
    BAD_REASONS,
    MAX_FRAME,
    decode_netwarden,
    decode_pycapa,
    encode_netwarden,
    encode_pycapa,
    frame_batch_of,
)
from netwarden.kafka.partitioning import flow_hash, partition_of
from netwarden.packets import FRAG_LATER, empty_packets

frames_st = st.lists(st.binary(min_size=14, max_size=300), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(frames=frames_st, split=st.integers(1, 40), linktype=st.sampled_from([1, 101, 113]))
def test_netwarden_round_trip(frames: list[bytes], split: int, linktype: int) -> None:
    ts = [1_700_000_000_000_000_000 + 7 * i for i in range(len(frames))]
    batch = frame_batch_of(frames, ts_ns=ts, linktype=linktype)
    msgs = [encode_netwarden(batch, np.arange(i, min(i + split, len(frames))))
            for i in range(0, len(frames), split)]
    d = decode_netwarden(msgs, parts=np.full(len(msgs), 5, np.int32),
                         offsets=np.arange(100, 100 + len(msgs)))
    f = d.frames
    got = [f.data[o:o + c].tobytes() for o, c in zip(f.offsets, f.caplen, strict=True)]
    assert got == frames
    assert f.ts_ns.tolist() == ts and set(f.linktype.tolist()) == {linktype}
    assert f.seq.tolist() == [100 + i // split for i in range(len(frames))]
    assert int(d.bad[0]) == len(msgs) and int(d.bad[1:].sum()) == 0


@settings(max_examples=60, deadline=None)
@given(frames=frames_st)
def test_pycapa_round_trip(frames: list[bytes]) -> None:
    ts = [1_600_000_000_123_456_000 + 1000 * i for i in range(len(frames))]
    keys, values = zip(*(encode_pycapa(t, f) for t, f in zip(ts, frames, strict=True)),
                       strict=True)
    d = decode_pycapa(list(keys), list(values), parts=np.zeros(len(frames), np.int32),
                      offsets=np.arange(len(frames)))
    f = d.frames
    assert [f.data[o:o + c].tobytes() for o, c in zip(f.offsets, f.caplen, strict=True)] == \
        frames
    assert f.ts_ns.tolist() == ts  # microsecond timestamps survive exactly


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200))
def test_garbage_never_crashes_and_is_counted(data: bytes) -> None:
    d = decode_netwarden([data], parts=np.zeros(1, np.int32), offsets=np.zeros(1, np.int64))
    assert int(d.bad.sum()) == 1
    if int(d.bad[0]) == 1:  # accepted: then it really was a well-formed message
        assert data[:4] == b"NWPK"


def reason_of(values: list[bytes | None], keys: list[bytes | None] | None = None) -> list[str]:
    parts, offs = np.zeros(len(values), np.int32), np.arange(len(values))
    d = (decode_pycapa(keys, values, parts=parts, offsets=offs) if keys is not None
         else decode_netwarden(values, parts=parts, offsets=offs))
    return [BAD_REASONS[i] for i in np.flatnonzero(d.bad) for _ in range(int(d.bad[i]))]


def test_every_bad_reason() -> None:
    ok = encode_netwarden(frame_batch_of([bytes(20), bytes(30)], ts_ns=[1, 2]), np.arange(2))
    big = encode_netwarden(frame_batch_of([bytes(MAX_FRAME + 1)], ts_ns=[1]), np.arange(1))
    assert reason_of([ok[:20]]) == ["truncated"]
    assert reason_of([ok + b"x"]) == ["bad_length"]
    assert reason_of([big]) == ["oversize_frame"]
    assert reason_of([b""]) == ["empty_value"]
    assert reason_of([None]) == ["empty_value"]
    assert reason_of([b"\xff" * 20]) == ["bad_magic"]
    k, v = encode_pycapa(10**18, bytes(12) + b"\x86\xdd" + bytes(40))
    assert reason_of([v]) == ["wrong_format"]
    assert reason_of([ok], [k]) == ["wrong_format"]
    assert reason_of([v, v, v, bytes(MAX_FRAME + 1)], [None, b"1234567", k, k]) == [
        "ok", "missing_key", "short_key", "oversize_frame"]


addr = st.integers(0, 2**64 - 1)


@settings(max_examples=200, deadline=None)
@given(shi=addr, slo=addr, dhi=addr, dlo=addr, sp=st.integers(0, 65535),
       dp=st.integers(0, 65535), proto=st.sampled_from([1, 6, 17, 58]), n=st.integers(1, 64))
def test_flow_hash_symmetric(shi: int, slo: int, dhi: int, dlo: int, sp: int, dp: int,
                             proto: int, n: int) -> None:
    p = empty_packets(2)
    p["src_hi"], p["src_lo"], p["dst_hi"], p["dst_lo"] = [shi, dhi], [slo, dlo], [dhi, shi], \
        [dlo, slo]
    p["sport"], p["dport"], p["proto"] = [sp, dp], [dp, sp], proto
    h = flow_hash(p)
    assert h[0] == h[1]
    parts = partition_of(h, n)
    assert parts[0] == parts[1] and 0 <= parts[0] < n


def test_later_fragments_join_their_flow_partition() -> None:
    p = empty_packets(2)
    p["src_lo"], p["dst_lo"], p["proto"] = 1, 2, 17
    p["frag"] = [1, FRAG_LATER]  # first fragment has ports, later ones do not
    p["sport"], p["dport"] = [53, 0], [999, 0]
    h = flow_hash(p)
    assert h[0] == h[1]


@pytest.mark.parametrize(("url", "message"), [
    ("kafka://h:9092/t?format=pcap", "format must be one of netwarden, pycapa"),
    ("kafka://h:9092/t?offset_reset=oldest", "offset_reset must be one of"),
    ("kafka://h:9092/t?grup=x", "unknown query parameter"),
    ("kafka://h:9092/t?partitions=0", "partitions must be a positive integer"),
    ("kafka://h/t", "host:port"),
    ("kafka://h:9092/", "needs one topic"),
])
def test_bad_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_topic_url(url)


@pytest.mark.parametrize(("table", "message"), [
    ({"session_timeout_ms": "6000"}, "kafka.session_timeout_ms: must be int"),
    ({"poll_timeout_ms": -1}, "must be >= 0"),
    ({"sesion_timeout_ms": 1}, "unknown key"),
    ({"security_protocol": "TLS"}, "security_protocol: must be one of"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "required with"),
    ({"acks": "2"}, "kafka.acks"),
])
def test_bad_settings_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_table(table)


def test_security_settings_reach_kafka_python() -> None:
    s = settings_from_table({"security_protocol": "SSL", "ssl_cafile": "/ca.pem",
                             "check_crcs": True, "flush_timeout_s": 2})
    opts = s.client_options()
    assert opts["security_protocol"] == "SSL" and opts["ssl_cafile"] == "/ca.pem"
    assert s.flush_timeout_s == 2.0
