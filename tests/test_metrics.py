"""Metrics and health: `dstore node --metrics-listen` serves /metrics (scraped here with the
Prometheus client library's own OpenMetrics parser) and /health, and refuses what is not a
plain GET; an embedded member gives the same text through `Node.metrics()`."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from harness import Cluster, cli, member, wait_for

FAMILIES = {
    "dstore_requests": "counter",
    "dstore_request_seconds": "histogram",
    "dstore_object_bytes_received": "counter",
    "dstore_object_bytes_sent": "counter",
    "dstore_members": "gauge",
    "dstore_keys": "gauge",
    "dstore_disk_bytes": "gauge",
    "dstore_objects": "gauge",
    "dstore_repair_passes": "counter",
    "dstore_scrub_passes": "counter",
    "dstore_gc_chunks_collected": "counter",
    "dstore_shards_rebuilt": "counter",
    "dstore_compactions": "counter",
    "dstore_compaction_bytes_freed": "counter",
}


# Families with samples only once the node has answered a request of some kind.
PER_REQUEST = {"dstore_requests", "dstore_request_seconds"}


def scrape(text: str, answered: bool = True) -> dict[str, object]:
    """The families of `text`, checked to include FAMILIES (those per request only if the
    node has `answered` requests: a family without samples is not written)."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        if not answered and name in PER_REQUEST:
            continue
        assert name in families, f"{name} missing from {sorted(families)}"
        assert families[name].type == kind, name
    return families


def value(family: object, **labels: str) -> float:
    """The sum of a counter's or gauge's samples with these labels."""
    names = {family.name, family.name + "_total"}  # type: ignore[attr-defined]
    return sum(
        s.value
        for s in family.samples  # type: ignore[attr-defined]
        if s.name in names and all(s.labels.get(k) == v for k, v in labels.items())
    )


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw(addr: str, payload: bytes) -> bytes:
    """What the server answers `payload` with; b"" if it cut the connection (a server that
    stops reading a request too long resets it while the rest is still coming)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            return s.recv(4096)
        except ConnectionError:
            return b""
        except OSError as e:
            if e.errno == 107:  # ENOTCONN: reset before the shutdown
                return b""
            raise


def test_nodes_serve_metrics_and_health(cluster: Cluster, tmp_path: Path) -> None:
    metrics = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    first = cluster.start("--metrics-listen", metrics[0])
    for addr in metrics[1:]:
        cluster.start("--metrics-listen", addr, peers=[cluster.addrs[first]])
    cluster.wait_members()
    embedded = member(tmp_path / "embedded", [cluster.addrs[0]])
    with embedded:
        wait_for(lambda: len(embedded.peers()) == 3, "the embedded member joins")
        (tmp_path / "in.bin").write_bytes(b"x" * 300_000)
        cli("put", "--peer", cluster.addrs[0], "k", str(tmp_path / "in.bin"))
        assert cli("get", "--peer", cluster.addrs[1], "k").stdout == b"x" * 300_000
        embedded.store("e", b"y" * 100_000)

        totals = {"put_manifest": 0.0, "received": 0.0}
        for addr in metrics:
            status, text = get(f"http://{addr}/metrics")
            assert status == 200
            families = scrape(text)
            totals["put_manifest"] += value(families["dstore_requests"], kind="put_manifest", outcome="ok")
            totals["received"] += value(families["dstore_object_bytes_received"])
            assert value(families["dstore_members"], state="live") == 3
            assert value(families["dstore_disk_bytes"]) > 0
            assert get(f"http://{addr}/health") == (200, "ok\n")
        # Two writes, each on a write quorum of owners (a member writing keeps its own copy
        # without a request), all at least 400 KB of objects received.
        assert totals["put_manifest"] >= 2 and totals["received"] >= 400_000
        # The embedded member may not have been asked anything (heartbeats are answered by
        # the cluster layer, not counted as requests), so only the rest is required of it.
        embedded_families = scrape(embedded.metrics(), answered=False)
        assert value(embedded_families["dstore_members"], state="live") == 3

        addr = metrics[0]
        assert get(f"http://{addr}/nothing")[0] == 404
        assert raw(addr, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
        assert raw(addr, b"\x16\x03\x01 garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
        too_long = raw(addr, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n")
        assert too_long == b"" or too_long.startswith(b"HTTP/1.1 400"), too_long
        assert get(f"http://{addr}/health")[0] == 200  # still serving after all that
