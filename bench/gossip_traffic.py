#!/usr/bin/env python3
"""Steady-state gossip traffic: N agents on loopback sharing W workers.

Starts N agents (default gossip interval, 200 ms), registers W workers spread over them
(health checks disabled, so the figure is gossip only and the machine is not busy
probing), waits until every agent lists every worker, lets the cluster settle, then
reads probemesh_gossip_bytes_out_total / messages_out_total on every agent twice,
SECONDS apart, and prints bytes per second per node.

Usage: bench/gossip_traffic.py [N] [W] [SECONDS]     (default 16 1000 30)
Env SETTLE: seconds to wait after every agent lists every worker (default 60).
Env LOG_DIR: keep each agent's log there (n0.log, ...); levels via RUST_LOG (default info).
Needs: cargo build --release -p probemesh.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import BIN, cpu_seconds, free_port, stop_all


def req(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(r, timeout=30) as resp:
        return resp.read()


def metric(base, name):
    for line in req("GET", f"{base}/metrics").decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


class WireCounter:
    """Counts the UDP bytes the agents send (QUIC headers, TLS tags, ACKs and
    keep-alives included) with an iptables chain; needs root and iptables, else off."""

    CHAIN = "PMBENCH_GOSSIP"

    def __init__(self, ports):
        self.ports = ports
        self.on = os.geteuid() == 0 and subprocess.run(["sh", "-c", "command -v iptables"], capture_output=True).returncode == 0
        if self.on:
            self.remove()
            subprocess.run(["iptables", "-N", self.CHAIN], check=True)
            subprocess.run(["iptables", "-I", "OUTPUT", "-j", self.CHAIN], check=True)
            for p in ports:
                subprocess.run(["iptables", "-A", self.CHAIN, "-p", "udp", "--sport", str(p)], check=True)

    def read_and_remove(self):
        if not self.on:
            return None
        out = subprocess.run(["iptables", "-L", self.CHAIN, "-v", "-x", "-n"], capture_output=True, text=True, check=True).stdout
        total = 0
        for line in out.splitlines()[2:]:
            fields = line.split()
            if len(fields) > 1 and fields[1].isdigit():
                # iptables counts IP packets: take off the IP (20) and UDP (8) headers.
                total += int(fields[1]) - 28 * int(fields[0])
        self.remove()
        return total

    def remove(self):
        subprocess.run(["iptables", "-D", "OUTPUT", "-j", self.CHAIN], capture_output=True)
        subprocess.run(["iptables", "-F", self.CHAIN], capture_output=True)
        subprocess.run(["iptables", "-X", self.CHAIN], capture_output=True)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    w = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([BIN, "tls", "ca", "create", "--out", f"{d}/ca"], check=True, capture_output=True)
        nodes, procs = [], []
        for i in range(n):
            name = f"n{i}"
            subprocess.run([BIN, "tls", "cert", "create", "--ca", f"{d}/ca", "--node", name, "--out", f"{d}/certs"], check=True, capture_output=True)
            nodes.append((name, free_port(), free_port(socket.SOCK_DGRAM)))
        for i, (name, admin, gossip) in enumerate(nodes):
            args = [BIN, "agent", "--node-id", name, "--data-dir", f"{d}/{name}", "--admin-listen", f"127.0.0.1:{admin}",
                    "--gossip-listen", f"127.0.0.1:{gossip}", "--tls-ca", f"{d}/ca/ca.pem",
                    "--tls-cert", f"{d}/certs/{name}.pem", "--tls-key", f"{d}/certs/{name}-key.pem"]
            if i > 0:
                args += ["--seeds", f"127.0.0.1:{nodes[0][2]}"]
            # LOG_DIR keeps each agent's log (for investigating a run); else logs are dropped.
            log = open(os.path.join(os.environ["LOG_DIR"], f"{name}.log"), "w") if os.environ.get("LOG_DIR") else subprocess.DEVNULL
            procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log))
        bases = [f"http://127.0.0.1:{admin}" for _, admin, _ in nodes]
        try:
            for b in bases:
                for _ in range(600):
                    try:
                        req("GET", f"{b}/v1/ready")
                        break
                    except OSError:
                        time.sleep(0.05)
            for j in range(w):
                req("POST", f"{bases[j % n]}/v1/workers", {"url": f"http://10.3.{j // 250}.{j % 250 + 1}:8000", "health": {"disable": True}})
            t0 = time.monotonic()
            for b in bases:
                while len(json.loads(req("GET", f"{b}/v1/workers"))["workers"]) < w:
                    time.sleep(0.5)
            print(f"{w} registrations known to all {n} agents after {time.monotonic() - t0:.1f} s")
            # Let verdicts and imports settle before measuring (SETTLE seconds).
            time.sleep(float(os.environ.get("SETTLE", "60")))
            kinds = ["syn", "synack", "ack"]
            by_kind = [f'probemesh_gossip_bytes_out_by_kind_total{{kind="{k}"}}' for k in kinds]
            before = [(metric(b, "probemesh_gossip_bytes_out_total"), metric(b, "probemesh_gossip_messages_out_total")) for b in bases]
            kinds_before = [sum(metric(b, m) for b in bases) for m in by_kind]
            wire = WireCounter([g for _, _, g in nodes])
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            flaps, moved = 0, 0
            idx0 = [json.loads(req("GET", f"{b}/v1/workers?status=ready&model=none"))["index"] for b in bases]
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for b in bases:
                    members = json.loads(req("GET", f"{b}/v1/members"))["members"]
                    flaps += sum(1 for m in members if m["state"] != "alive")
                time.sleep(1)
            idx1 = [json.loads(req("GET", f"{b}/v1/workers?status=ready&model=none"))["index"] for b in bases]
            moved = sum(1 for a, b0 in zip(idx1, idx0) if a != b0)
            print(f"during the window: {flaps} member observations not alive; {moved} of {n} local views changed")
            after = [(metric(b, "probemesh_gossip_bytes_out_total"), metric(b, "probemesh_gossip_messages_out_total")) for b in bases]
            wire_bytes = wire.read_and_remove()
            if wire_bytes is not None:
                print(f"on the wire (UDP payload of QUIC packets, iptables): {wire_bytes / seconds / n / 1024:.1f} KB/s per node, mean")
            cpu = sorted((cpu_seconds(p.pid) - c) / seconds * 100 for p, c in zip(procs, cpu0))
            print(f"agent CPU during the window: median {cpu[n // 2]:.1f}%, max {cpu[-1]:.1f}% of one core; {sum(cpu):.0f}% for all {n} (machine: {os.cpu_count()} cores)")
            kinds_after = [sum(metric(b, m) for b in bases) for m in by_kind]
            split = ", ".join(f"{k} {(a - b0) / seconds / n / 1024:.1f}" for k, a, b0 in zip(kinds, kinds_after, kinds_before))
            print(f"bytes out per node by message kind (KB/s, mean): {split}")
            for m in ["oversized_messages", "malformed_messages", "dropped_send_queue_full", "dropped_recv_queue_full", "dropped_recv_stale", "dropped_send_failed", "connections_dialed"]:
                total = sum(metric(b, f"probemesh_gossip_{m}_total") for b in bases)
                if total:
                    print(f"  gossip {m}: {total:.0f} in all (since start, all agents)")
            rates = sorted((a[0] - b0[0]) / seconds for a, b0 in zip(after, before))
            msgs = sum(a[1] - b0[1] for a, b0 in zip(after, before)) / seconds / n
            print(f"steady state, {n} agents x {w} workers, gossip 200 ms: bytes out per node median {rates[n // 2] / 1024:.1f} KB/s, max {rates[-1] / 1024:.1f} KB/s; {msgs:.1f} messages/s per node")
        finally:
            stop_all(procs)


if __name__ == "__main__":
    main()
