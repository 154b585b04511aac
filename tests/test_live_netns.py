"""Live capture in two network namespaces joined by a veth pair (root only).

Namespace A (198.18.0.1, the 198.18.0.0/15 benchmarking range) sends benign TCP traffic and a
SYN port scan made with scapy to namespace B (198.18.0.2), where netwarden captures on B's
end of the veth.  Everything stays inside the namespaces the test creates; they are deleted
in a ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from netns import A_IP, B_IP, PY, SEND, Pair, _http_server, _only_caps, _stop

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2 (ip)"),
]

CAPTURE = textwrap.dedent("""
    import json, sys, threading
    from netwarden.capture.live import open_iface_source
    from netwarden.metrics import Metrics
    m = Metrics()
    src = open_iface_source(sys.argv[1], m)
    threading.Timer(float(sys.argv[2]), src.close).start()
    print("open", flush=True)
    frames = batches = empty = 0
    lens = set()
    for b in src:
        batches += 1
        empty += len(b) == 0
        frames += len(b)
        lens.update(int(x) for x in b.linktype)
    print(json.dumps({"frames": frames, "batches": batches, "empty": empty,
                      "linktypes": sorted(lens), "kernel_packets": src.kernel_packets,
                      "kernel_drops": src.kernel_drops}), flush=True)
""")


@pytest.mark.parametrize("ring", ["0", "1"])
def test_iface_source_filters_and_sees_both_directions(
    pair: Pair, tmp_path: Path, ring: str
) -> None:
    srv = _http_server(pair, tmp_path)
    url = f"iface://{pair.if_b}?filter=tcp%20port%208080&snaplen=128&ring={ring}"
    cap = pair.popen(
        pair.ns_b, PY, "-c", CAPTURE, url, "4", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert cap.stdout is not None and cap.stdout.readline().strip() == "open"
        sent = pair.run(pair.ns_a, PY, "-c", SEND, B_IP, "benign")
        assert sent.returncode == 0, sent.stderr
        out, err = cap.communicate(timeout=30)
    finally:
        _stop(cap)
        _stop(srv)
    res = json.loads(out.strip().splitlines()[-1])
    # 5 connections of >= 8 packets each way-summed; UDP and the scan-free rest filtered out.
    assert res["frames"] >= 40, (res, err)
    assert res["frames"] < 400
    assert res["linktypes"] == [1]
    assert res["empty"] >= 2  # quiet-link ticks while waiting for close
    assert res["kernel_drops"] == 0
    assert res["kernel_packets"] == res["frames"]


OPEN = textwrap.dedent("""
    import sys
    status = open("/proc/self/status").read()
    print("CapEff", [l.split()[1] for l in status.splitlines() if l.startswith("CapEff")][0])
    from netwarden.capture.live import open_iface_source
    from netwarden.exitcodes import UserError
    try:
        src = open_iface_source(sys.argv[1])
    except UserError as e:
        print("error:", e)
    else:
        flags = int(open(f"/sys/class/net/{src.opts.iface}/flags").read(), 16)
        print("opened", src.linktype, "promisc" if flags & 0x100 else "")
        src.close()
""")


@pytest.mark.parametrize(
    ("caps", "capeff", "query", "expect"),
    [
        ("+net_raw", 0x2000, "", "opened 1 \n"),
        # PACKET_ADD_MEMBERSHIP needs no CAP_NET_ADMIN: only SO_RCVBUFFORCE (buffer_mb above
        # net.core.rmem_max) does, and it falls back to SO_RCVBUF without it.
        ("+net_raw", 0x2000, "?promisc=1&buffer_mb=64", "opened 1 promisc\n"),
        ("+net_raw,+net_admin", 0x3000, "?promisc=1&filter=tcp", "opened 1 promisc\n"),
        ("", 0, "", "opening a packet socket needs CAP_NET_RAW"),
    ],
)
def test_capture_needs_only_the_unit_capabilities(
    pair: Pair, caps: str, capeff: int, query: str, expect: str
) -> None:
    r = pair.run(pair.ns_b, *_only_caps(caps), PY, "-c", OPEN, f"iface://{pair.if_b}{query}")
    assert f"CapEff {capeff:016x}" in r.stdout, r.stdout + r.stderr
    assert expect in r.stdout, r.stdout + r.stderr


DROPS = textwrap.dedent("""
    import json, socket, sys
    from netwarden.capture.live import open_iface_source
    from netwarden.metrics import Metrics
    m = Metrics()
    src = open_iface_source(sys.argv[1], m)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(20000):  # ~30 MB into a ~2 MB socket buffer nobody reads yet
        s.sendto(b"x" * 1400, ("127.0.0.1", 47001))
    frames = 0
    for batch in src:
        frames += len(batch)
        if len(batch) == 0:
            src.close()
    print(json.dumps({"frames": frames, "drops": src.kernel_drops,
                      "metric": m.registry.get_sample_value(
                          "netwarden_capture_kernel_drops_total")}))
""")


@pytest.mark.parametrize("ring", ["0", "1"])
def test_kernel_drops_are_counted(pair: Pair, ring: str) -> None:
    url = f"iface://lo?filter=udp%20port%2047001&buffer_mb=1&ring={ring}"
    r = pair.run(pair.ns_b, PY, "-c", DROPS, url)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["drops"] > 0 and res["frames"] > 0
    assert res["frames"] + res["drops"] == 20000
    assert res["metric"] == res["drops"]


VLAN = textwrap.dedent("""
    import json, sys, threading
    from netwarden.capture.live import open_iface_source
    from netwarden.decode import decode
    src = open_iface_source(sys.argv[1])
    threading.Timer(float(sys.argv[2]), src.close).start()
    print("open", flush=True)
    tags, vlans = [], []
    for b in src:
        for o, c in zip(b.offsets.tolist(), b.caplen.tolist()):
            tags.append(bytes(b.data[o + 12 : o + 16]).hex())
        if len(b):
            pkts, _skips = decode(b)
            vlans += pkts["vlan"].tolist()
    print(json.dumps({"tags": sorted(set(tags)), "vlans": sorted(set(vlans)), "n": len(tags)}))
""")


@pytest.mark.parametrize("ring", ["0", "1"])
def test_vlan_tag_stripped_by_the_device_is_put_back(pair: Pair, ring: str) -> None:
    # Tagged frames sent from A; B's kernel moves the tag into packet metadata on receive
    # (as a NIC with VLAN offload does), so the capture must put it back.  The filter proves
    # the stripping: its code tests EtherType 0x0800 at offset 12, which a frame still
    # carrying its tag would fail.
    if_a = pair.if_b.replace("nwb", "nwa")
    url = f"iface://{pair.if_b}?filter=udp%20port%209999&ring={ring}"
    cap = pair.popen(
        pair.ns_b, PY, "-c", VLAN, url, "3", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert cap.stdout is not None and cap.stdout.readline().strip() == "open"
        code = (
            "from scapy.all import Ether, Dot1Q, IP, UDP, sendp\n"
            f"sendp([Ether(dst='02:00:00:00:00:02') / Dot1Q(vlan=7) / IP(src='{A_IP}', "
            f"dst='{B_IP}') / UDP(dport=9999) / b'v'] * 10, iface='{if_a}', verbose=0)"
        )
        sent = pair.run(pair.ns_a, PY, "-c", code)
        assert sent.returncode == 0, sent.stderr
        out, err = cap.communicate(timeout=30)
    finally:
        _stop(cap)
    res = json.loads(out.strip().splitlines()[-1])
    assert res["n"] >= 10, err
    assert res["tags"] == ["81000007"]  # TPID 0x8100, VID 7, back between MACs and EtherType
    assert res["vlans"] == [7]


LINK = textwrap.dedent("""
    import json, socket, subprocess, sys, threading, time
    from netwarden.capture.live import open_iface_source
    from netwarden.metrics import Metrics
    iface, peer, ring = sys.argv[1], sys.argv[2], sys.argv[3]
    m = Metrics()
    src = open_iface_source(f"iface://{iface}?filter=udp%20port%209998&ring={ring}", m)
    seen = {}

    def act():
        time.sleep(0.3)
        subprocess.run(["ip", "link", "set", iface, "down"], check=True)
        time.sleep(0.8)
        seen["down"] = src.link_up
        subprocess.run(["ip", "link", "set", iface, "up"], check=True)
        time.sleep(1.0)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(5):
            s.sendto(b"after", (peer, 9998))
            time.sleep(0.05)
        time.sleep(0.8)
        if sys.argv[4] == "delete":
            subprocess.run(["ip", "link", "del", iface], check=True)
            time.sleep(1.0)
        src.close()

    threading.Thread(target=act).start()
    frames, error = 0, ""
    try:
        for b in src:
            frames += len(b)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
    errors = m.registry.get_sample_value("netwarden_errors_total", {"stage": "capture"})
    print(json.dumps({"frames": frames, "error": error, "down": seen.get("down"),
                      "up": src.link_up, "errors": errors}))
""")


@pytest.mark.parametrize("ring", ["0", "1"])
def test_link_down_and_up_keeps_capturing(pair: Pair, ring: str) -> None:
    r = pair.run(pair.ns_b, PY, "-c", LINK, pair.if_b, A_IP, ring, "keep")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["error"] == "", res
    assert res["frames"] >= 5 and res["up"] is True, res
    # recvmsg sees ENETDOWN as an error, the ring as POLLERR: both count it and wait
    assert res["down"] is False and res["errors"] >= 1, res
    assert "link down" in r.stderr


@pytest.mark.parametrize("ring", ["0", "1"])
def test_deleted_interface_ends_the_capture(pair: Pair, ring: str) -> None:
    r = pair.run(pair.ns_b, PY, "-c", LINK, pair.if_b, A_IP, ring, "delete")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["error"] == f"LiveCaptureError: capture: interface {pair.if_b} disappeared", res
