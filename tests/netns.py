"""A private network of Linux network namespaces for partition tests (needs root and the `ip`
command from iproute2; `.ci/run` installs it when missing).

    hub namespace:   bridge A (the majority side) and bridge B (where a cut-off host goes)
    host i:          a namespace with eth0 = 10.X.Y.(i+1)/24, its veth peer on bridge A
    this namespace:  one veth with 10.X.Y.254/24 on bridge A, for the test's own clients

The bridges live in their own namespace so that the host's firewall (e.g. Docker's FORWARD
policy, which bridged traffic meets when br_netfilter is loaded) never sees the traffic.
Moving a host's veth from bridge A to bridge B cuts it off from everyone on A while the hosts
on B still reach each other: a clean partition, healed by moving it back. Every name carries
this process's pid, and the subnet is derived from it, so parallel runs do not collide.
"""

from __future__ import annotations

import os
import subprocess

import pytest


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


REFUSED = ("operation not permitted", "permission denied", "must be root")


class Net:
    PORT = 7420

    def __init__(self, hosts: int) -> None:
        pid = os.getpid()
        self.tag = f"ds{pid}"
        self.hub = f"{self.tag}hub"
        self.hosts = [f"{self.tag}h{i}" for i in range(hosts)]
        self.subnet = f"10.{200 + pid % 50}.{(pid // 50) % 256}"
        self.ips = [f"{self.subnet}.{i + 1}" for i in range(hosts)]
        self.client_ip = f"{self.subnet}.254"
        self.made: list[str] = []  # namespaces created, deleted at teardown

    def addr(self, i: int) -> str:
        return f"{self.ips[i]}:{self.PORT}"

    def prefix(self, i: int) -> list[str]:
        """The command prefix that runs a program on host i."""
        return ["ip", "netns", "exec", self.hosts[i]]

    def veth(self, i: int) -> str:
        """Host i's end of its cable, on the hub's bridges."""
        return f"{self.tag}v{i}"

    def up(self) -> None:
        r = ip("netns", "add", self.hub, check=False)
        if r.returncode != 0:
            if any(s in r.stderr.lower() for s in REFUSED):
                pytest.skip(f"this kernel or user may not create network namespaces: {r.stderr.strip()}")
            raise RuntimeError(f"ip netns add: {r.stderr.strip()}")
        self.made.append(self.hub)
        hub = ["-n", self.hub]
        ip(*hub, "link", "set", "lo", "up")
        for bridge in ("brA", "brB"):
            ip(*hub, "link", "add", bridge, "type", "bridge")
            ip(*hub, "link", "set", bridge, "up")
        for i, ns in enumerate(self.hosts):
            ip("netns", "add", ns)
            self.made.append(ns)
            inner = f"{self.tag}p{i}"
            ip("link", "add", self.veth(i), "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", ns)
            ip("-n", ns, "link", "set", inner, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{self.ips[i]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("link", "set", self.veth(i), "netns", self.hub)
            ip(*hub, "link", "set", self.veth(i), "master", "brA", "up")
        # This namespace's own port on bridge A.
        ip("link", "add", f"{self.tag}r", "type", "veth", "peer", "name", f"{self.tag}q")
        ip("link", "set", f"{self.tag}q", "netns", self.hub)
        ip(*hub, "link", "set", f"{self.tag}q", "master", "brA", "up")
        ip("addr", "add", f"{self.client_ip}/24", "dev", f"{self.tag}r")
        ip("link", "set", f"{self.tag}r", "up")

    def cut(self, *hosts: int) -> None:
        """Moves these hosts to bridge B: they reach each other, and nobody else."""
        for i in hosts:
            ip("-n", self.hub, "link", "set", self.veth(i), "master", "brB")

    def heal(self, *hosts: int) -> None:
        for i in hosts:
            ip("-n", self.hub, "link", "set", self.veth(i), "master", "brA")

    def down(self) -> None:
        """Deletes everything made; deleting a namespace deletes the veths in it, and a veth
        pair goes with either end. Safe to call after a partial `up`."""
        for ns in reversed(self.made):
            ip("netns", "del", ns, check=False)
        self.made.clear()
        ip("link", "del", f"{self.tag}r", check=False)
