#!/usr/bin/env python3
"""CPU of N agents together once they have converged (steady state, nothing to probe),
with Serf at the same N as the reference, in the same run.

  1. N probemesh agents on loopback with mutual TLS, each seeded with the first,
     started at once (default gossip interval 100 ms, probe interval 200 ms, as in the
     issue's 64-agent budget); wait until every agent lists N members alive (or 120 s);
  2. wait SETTLE seconds (default 10), then sum the agents' CPU (/proc/PID/stat) over
     WINDOW seconds (default 10), repeated ROUNDS times (default 3), and each agent's
     gossip messages per second (probemesh_gossip_messages_out_total);
  3. the same for N Serf agents (-profile=lan), if Debian's `serf` is installed.

Usage: bench/idle_cpu.py [N]        (default 64)
Env GOSSIP_INTERVAL, PROBE_INTERVAL, SETTLE, WINDOW, ROUNDS, LOG_DIR (agents' logs).
Needs: cargo build --release -p probemesh. Everything listens on 127.0.0.1 and is
stopped at the end.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import BIN, cpu_seconds, free_port, metric_sum, stop_all

GOSSIP_INTERVAL = os.environ.get("GOSSIP_INTERVAL", "100ms")
PROBE_INTERVAL = os.environ.get("PROBE_INTERVAL", "200ms")
SETTLE = float(os.environ.get("SETTLE", "10"))
WINDOW = float(os.environ.get("WINDOW", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def alive_everywhere(admins, n):
    for admin in admins:
        try:
            members = get(f"http://127.0.0.1:{admin}/v1/members")["members"]
        except OSError:
            return False
        if sum(1 for m in members if m["state"] == "alive") != n:
            return False
    return True


def measure(procs, label, extra=lambda: ""):
    for r in range(ROUNDS):
        c0, t0 = sum(cpu_seconds(p.pid) for p in procs), time.monotonic()
        x0 = extra()
        time.sleep(WINDOW)
        c1, t1 = sum(cpu_seconds(p.pid) for p in procs), time.monotonic()
        x1 = extra()
        rate = f"; {(x1 - x0) / (t1 - t0) / len(procs):.0f} gossip messages/s sent per agent" if x0 != "" else ""
        print(f"{label} round {r + 1}: {100 * (c1 - c0) / (t1 - t0):.0f}% of one core for all {len(procs)} "
              f"({100 * (c1 - c0) / (t1 - t0) / len(procs):.2f}% each){rate}", flush=True)


def probemesh(n, d):
    subprocess.run([BIN, "tls", "ca", "create", "--out", f"{d}/ca"], check=True, capture_output=True)
    nodes = []
    for i in range(n):
        name = f"n{i}"
        subprocess.run([BIN, "tls", "cert", "create", "--ca", f"{d}/ca", "--node", name, "--out", f"{d}/certs"],
                       check=True, capture_output=True)
        nodes.append((name, free_port(), free_port(socket.SOCK_DGRAM)))
    logs = os.environ.get("LOG_DIR")
    procs = []
    start = time.monotonic()

    def spawn(i):
        name, admin, gossip = nodes[i]
        args = [BIN, "agent", "--node-id", name, "--data-dir", f"{d}/{name}", "--admin-listen", f"127.0.0.1:{admin}",
                "--gossip-listen", f"127.0.0.1:{gossip}", "--tls-ca", f"{d}/ca/ca.pem",
                "--tls-cert", f"{d}/certs/{name}.pem", "--tls-key", f"{d}/certs/{name}-key.pem",
                "--gossip-interval", GOSSIP_INTERVAL, "--probe-interval", PROBE_INTERVAL]
        if i > 0:
            args += ["--seeds", f"127.0.0.1:{nodes[0][2]}"]
        log = open(os.path.join(logs, f"{name}.log"), "w") if logs else subprocess.DEVNULL
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)

    for i in range(n):
        procs.append(spawn(i))
    # A port picked free can be taken before the agent binds it (the agent then exits
    # with "address already in use"): start such an agent again on new ports.
    time.sleep(1)
    for i, p in enumerate(procs):
        if p.poll() is not None and i > 0:
            name, _, _ = nodes[i]
            nodes[i] = (name, free_port(), free_port(socket.SOCK_DGRAM))
            procs[i] = spawn(i)
            print(f"probemesh: {name} could not bind its ports; started again on new ones")
    try:
        admins = [a for _, a, _ in nodes]
        end = start + 120
        while time.monotonic() < end and not alive_everywhere(admins, n):
            time.sleep(0.2)
        converged = time.monotonic() - start
        if not alive_everywhere(admins, n):
            print(f"probemesh: {n} agents did not all list {n} members alive within 120 s")
        else:
            print(f"probemesh: {n} agents list {n} members alive after {converged:.1f} s")
        time.sleep(SETTLE)
        base = f"http://127.0.0.1:{admins[-1]}"
        sent = lambda: metric_sum(base, "probemesh_gossip_messages_out_total") * n
        measure(procs, f"probemesh N={n}", sent)
    finally:
        stop_all(procs)


def serf(n):
    exe = shutil.which("serf")
    if not exe:
        print("serf: not installed (apt-get install serf)")
        return
    ports = [(free_port(), free_port()) for _ in range(n)]
    procs = []
    for i, (bind, rpc) in enumerate(ports):
        args = [exe, "agent", f"-node=s{i}", f"-bind=127.0.0.1:{bind}", f"-rpc-addr=127.0.0.1:{rpc}",
                "-profile=lan", "-log-level=err"]
        if i > 0:
            # Retried: agents start at once, and a join sent before the first agent
            # listens is not retried otherwise (some agents then never join).
            args += [f"-retry-join=127.0.0.1:{ports[0][0]}", "-retry-interval=100ms"]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        time.sleep(SETTLE + 5)
        out = subprocess.run([exe, "members", f"-rpc-addr=127.0.0.1:{ports[-1][1]}", "-status=alive"],
                             capture_output=True, text=True, timeout=10).stdout
        print(f"serf: the last agent lists {len([l for l in out.splitlines() if l.strip()])} members alive")
        measure(procs, f"serf N={n}")
    finally:
        stop_all(procs)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found: run cargo build --release -p probemesh first")
    print(f"gossip interval {GOSSIP_INTERVAL}, probe interval {PROBE_INTERVAL}, window {WINDOW:.0f} s x {ROUNDS}")
    with tempfile.TemporaryDirectory() as d:
        probemesh(n, d)
    serf(n)


if __name__ == "__main__":
    main()
