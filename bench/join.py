#!/usr/bin/env python3
"""Joining a running cluster: how long a new node takes to hold every registration on
disk and to have made its first probe of each.

  1. a worker endpoint: a standalone agent on 0.0.0.0 whose /v1/health answers for W
     loopback addresses 127.0.x.y (each a separate host, as in resources.py 10k);
  2. N agents (default 16) on loopback, each seeded with agent 0, and W registrations
     (default 1,000) of those addresses spread over them; wait until every agent lists
     all W and has probed them, and before each join until the cluster is calm: in two
     5 s windows in a row, fewer than 1 in 1,000 of the members' probes failed (one scrape per
     member and window, both counts read from it). A join measured while the
     registration burst still overloads the host measures the overload, not the join
     (12-03: joins of 7-11 s inside the burst, 2.5-3.2 s into a calm cluster). Gives
     up waiting after CALM_WITHIN seconds (default 300) and says so;
  3. start agent N+1 seeded with agent 0 and poll its GET /v1/workers every POLL
     seconds (default 0.02):
       * "on disk": the first time it lists all W. The API lists only what the node
         made durable: imports are appended and fsynced (Node::commit_imports) before
         they enter the view the API reads;
       * "probed": the first time the new agent's `probemesh_probes_total` reaches W.
         At a 5 s probe interval no worker gets a second probe within the few seconds
         measured, so W probes are the first probe of each. (The list's
         `probe.last_probe_at` is not used: `GET /v1/workers` serves probe details up
         to 1 s old from its cache, which would add up to a second.)
     Both are measured from the new agent's spawn, so they include its start-up,
     and the identity check's 8 gossip rounds (1.6 s at 200 ms) before a new node
     imports anything (docs/decisions-peers.md).

Usage: bench/join.py [N] [W] [REPEATS]        (default 16 1000 3)
Env GOSSIP_INTERVAL (default 200ms, the agent's default), PROBE_INTERVAL (default 5s),
LOG_DIR (keep the agents' logs there). Needs: cargo build --release -p probemesh.
Everything listens on loopback and is stopped at the end.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import BIN, cpu_seconds, free_port, metric_sum, stop_all

GOSSIP_INTERVAL = os.environ.get("GOSSIP_INTERVAL", "200ms")
PROBE_INTERVAL = os.environ.get("PROBE_INTERVAL", "5s")
POLL = float(os.environ.get("POLL", "0.02"))
CALM_WITHIN = float(os.environ.get("CALM_WITHIN", "300"))
CALM_WINDOW = 5.0


def probe_counts(base):
    """(all probes, failed probes) of one member, from one scrape."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:
        text = r.read().decode()
    total = failed = 0.0
    for line in text.splitlines():
        if line.startswith("probemesh_probes_total{"):
            v = float(line.rsplit(" ", 1)[1])
            total += v
            if 'result="ok"' not in line:
                failed += v
    return total, failed


def wait_calm(bases):
    """Seconds until two windows in a row had fewer than 1 in 1,000 probes failed,
    with the last window's figures; None for the seconds if not within CALM_WITHIN."""
    t0 = time.monotonic()
    before = [probe_counts(b) for b in bases]
    calm_windows = 0
    while True:
        time.sleep(CALM_WINDOW)
        after = [probe_counts(b) for b in bases]
        total = sum(a[0] - b[0] for a, b in zip(after, before))
        failed = sum(a[1] - b[1] for a, b in zip(after, before))
        before = after
        calm_windows = calm_windows + 1 if total > 0 and failed * 1000 < total else 0
        elapsed = time.monotonic() - t0
        if calm_windows >= 2:
            return elapsed, total, failed
        if elapsed > CALM_WITHIN:
            return None, total, failed


def req(method, url, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(r, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def wait_ready(base, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            req("GET", f"{base}/v1/ready", timeout=1)
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{base} not ready")


class Cluster:
    def __init__(self, d):
        self.d = d
        self.procs = []
        self.logs = os.environ.get("LOG_DIR")
        subprocess.run([BIN, "tls", "ca", "create", "--out", f"{d}/ca"], check=True, capture_output=True)

    def spawn(self, name, seed_gossip, extra=()):
        subprocess.run([BIN, "tls", "cert", "create", "--ca", f"{self.d}/ca", "--node", name, "--out", f"{self.d}/certs"], check=True, capture_output=True)
        admin, gossip = free_port(), free_port(socket.SOCK_DGRAM)
        args = [BIN, "agent", "--node-id", name, "--data-dir", f"{self.d}/{name}", "--admin-listen", f"127.0.0.1:{admin}",
                "--gossip-listen", f"127.0.0.1:{gossip}", "--tls-ca", f"{self.d}/ca/ca.pem",
                "--tls-cert", f"{self.d}/certs/{name}.pem", "--tls-key", f"{self.d}/certs/{name}-key.pem",
                "--gossip-interval", GOSSIP_INTERVAL, "--probe-interval", PROBE_INTERVAL, *extra]
        if seed_gossip:
            args += ["--seeds", f"127.0.0.1:{seed_gossip}"]
        log = open(os.path.join(self.logs, f"{name}.log"), "w") if self.logs else subprocess.DEVNULL
        started = time.monotonic()
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
        self.procs.append(p)
        return f"http://127.0.0.1:{admin}", gossip, p, started


def probed_all(workers, w):
    return len(workers) == w and all(x["probe"]["last_probe_at"] for x in workers)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    w = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with tempfile.TemporaryDirectory() as d:
        c = Cluster(d)
        try:
            # The worker endpoint: a standalone agent (its own cluster) on every address.
            wport = free_port()
            endpoint = subprocess.Popen([BIN, "agent", "--node-id", "endpoint", "--data-dir", f"{d}/endpoint",
                                         "--admin-listen", f"0.0.0.0:{wport}", "--admin-token", "bench",
                                         "--gossip-listen", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
                                         "--admin-max-connections", str((n + repeats + 1) * w + 1000)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            c.procs.append(endpoint)
            wait_ready(f"http://127.0.0.1:{wport}")
            nodes = []
            for i in range(n):
                base, gossip, p, _ = c.spawn(f"n{i}", nodes[0][1] if nodes else None)
                nodes.append((base, gossip, p))
            for base, _, _ in nodes:
                wait_ready(base)
            for j in range(w):
                req("POST", f"{nodes[j % n][0]}/v1/workers", {"url": f"http://127.0.{j // 250}.{j % 250 + 1}:{wport}", "health": {"path": "/v1/health"}})
            t0 = time.monotonic()
            for base, _, _ in nodes:
                while not probed_all(req("GET", f"{base}/v1/workers")["workers"], w):
                    time.sleep(0.5)
            print(f"{n} agents x {w} workers: all registered and probed everywhere after {time.monotonic() - t0:.1f} s")
            for r in range(repeats):
                calm, total, failed = wait_calm([b for b, _, _ in nodes])
                if calm is None:
                    print(f"not calm within {CALM_WITHIN:.0f} s: {failed:.0f} of {total:.0f} probes failed in the last {CALM_WINDOW:.0f} s; join measured anyway")
                else:
                    print(f"calm after {calm:.1f} s ({failed:.0f} of {total:.0f} probes failed in the last {CALM_WINDOW:.0f} s)")
                cpu_before = [cpu_seconds(p.pid) for _, _, p in nodes]
                base, _, p, started = c.spawn(f"join{r}", nodes[0][1])
                on_disk = probed = ready = None
                end = started + 60
                while time.monotonic() < end and probed is None:
                    try:
                        ws = req("GET", f"{base}/v1/workers", timeout=5)["workers"]
                    except OSError:
                        time.sleep(POLL)
                        continue
                    now = time.monotonic() - started
                    if ready is None:
                        ready = now
                    if on_disk is None and len(ws) == w:
                        on_disk = now
                    if metric_sum(base, "probemesh_probes_total{", timeout=5) >= w:
                        probed = now
                    time.sleep(POLL)
                cpu = sorted(cpu_seconds(q.pid) - b for (_, _, q), b in zip(nodes, cpu_before))
                fmt = lambda t: f"{t:.3f} s" if t is not None else "not within 60 s"
                print(f"join {r + 1}: API up {fmt(ready)}, all {w} registrations on disk {fmt(on_disk)}, first probe of each {fmt(probed)} (from spawn); "
                      f"the {n} others used {sum(cpu):.2f} CPU s meanwhile")
                p.terminate()
                p.wait(15)
        finally:
            stop_all(c.procs)


if __name__ == "__main__":
    main()
