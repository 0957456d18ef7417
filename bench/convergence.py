#!/usr/bin/env python3
"""Convergence on loopback: probemesh vs Serf, same machine, same run.

For each N it measures
  * probemesh membership: agents started at once -> every agent lists N alive members;
  * probemesh registration: POST on agent 0 -> the worker is `ready` on all N agents
    (every agent verified it with its own probes); the workers are loopback addresses
    of a standalone agent whose /v1/health answers the probes;
  * Serf membership: agents started at once -> every agent lists N alive members.

Usage: bench/convergence.py [N ...]   (default: 3 8 16)
Env GOSSIP_INTERVAL, PROBE_INTERVAL, REPEATS (registrations per N, default 3), QUIET
(seconds without changes before each registration, default 3).
Needs: a release build (cargo build --release -p probemesh) and Debian's `serf`.
Everything listens on 127.0.0.1 and is stopped at the end.
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

from benchlib import BIN, free_port, stop_all
GOSSIP_INTERVAL = os.environ.get("GOSSIP_INTERVAL", "100ms")
PROBE_INTERVAL = os.environ.get("PROBE_INTERVAL", "200ms")
REPEATS = int(os.environ.get("REPEATS", "3"))
# Seconds of quiet before each registration: longer than the gossip thread's hold of
# its short coalescing window (2 s at 100 ms rounds, gossip/src/pace.rs), so that each
# registration reaches agents that are all back on the long window, the slow case.
QUIET = float(os.environ.get("QUIET", "3"))


def get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def wait(pred, timeout, step=0.005):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return True
        except OSError:
            pass
        time.sleep(step)
    return False


def run_probemesh(n, workdir, worker_port):
    subprocess.run([BIN, "tls", "ca", "create", "--out", f"{workdir}/ca"], check=True, capture_output=True)
    nodes = []
    for i in range(n):
        name = f"n{i}"
        subprocess.run([BIN, "tls", "cert", "create", "--ca", f"{workdir}/ca", "--node", name, "--out", f"{workdir}/certs"], check=True, capture_output=True)
        nodes.append((name, free_port(), free_port(socket.SOCK_DGRAM)))
    procs = []
    start = time.monotonic()
    for i, (name, admin, gossip) in enumerate(nodes):
        args = [BIN, "agent", "--node-id", name, "--data-dir", f"{workdir}/{name}",
                "--admin-listen", f"127.0.0.1:{admin}", "--gossip-listen", f"127.0.0.1:{gossip}",
                "--tls-ca", f"{workdir}/ca/ca.pem", "--tls-cert", f"{workdir}/certs/{name}.pem",
                "--tls-key", f"{workdir}/certs/{name}-key.pem",
                "--gossip-interval", GOSSIP_INTERVAL, "--probe-interval", PROBE_INTERVAL]
        if i > 0:
            args += ["--seeds", f"127.0.0.1:{nodes[0][2]}"]
        log = open(f"{workdir}/{name}.log", "w")
        procs.append(subprocess.Popen(args, stdout=log, stderr=log))
    try:
        def all_see_n():
            for _, admin, _ in nodes:
                m = get(f"http://127.0.0.1:{admin}/v1/members")["members"]
                if sum(1 for x in m if x["state"] == "alive") != n:
                    return False
            return True
        ok = wait(all_see_n, 60)
        membership = time.monotonic() - start if ok else None
        times = []
        for r in range(REPEATS):
            # Each registration is another worker: another loopback address of the
            # endpoint agent, whose /v1/health answers every probe.
            url = f"http://127.0.0.{r + 2}:{worker_port}"
            time.sleep(QUIET)
            t0 = time.monotonic()
            post(f"http://127.0.0.1:{nodes[0][1]}/v1/workers", {"url": url, "health": {"path": "/v1/health"}})

            def ready_everywhere():
                for _, admin, _ in nodes:
                    ws = get(f"http://127.0.0.1:{admin}/v1/workers?status=ready")["workers"]
                    if not any(w["url"] == url for w in ws):
                        return False
                return True
            if wait(ready_everywhere, 60):
                times.append(time.monotonic() - t0)
        return membership, times
    finally:
        stop_all(procs)


def run_serf(n, workdir):
    serf = shutil.which("serf")
    if not serf:
        return None
    ports = [(free_port(), free_port()) for _ in range(n)]
    procs = []
    start = time.monotonic()
    for i, (bind, rpc) in enumerate(ports):
        args = [serf, "agent", f"-node=s{i}", f"-bind=127.0.0.1:{bind}", f"-rpc-addr=127.0.0.1:{rpc}", "-profile=lan", "-log-level=err"]
        if i > 0:
            # Retried: agents start at once, and a join sent before the first agent
            # listens is not retried otherwise (some agents then never join).
            args += [f"-retry-join=127.0.0.1:{ports[0][0]}", "-retry-interval=100ms"]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        def all_see_n():
            for _, rpc in ports:
                out = subprocess.run([serf, "members", f"-rpc-addr=127.0.0.1:{rpc}", "-status=alive"], capture_output=True, text=True, timeout=5).stdout
                if len([l for l in out.splitlines() if l.strip()]) != n:
                    return False
            return True
        ok = wait(all_see_n, 60, step=0.02)
        return time.monotonic() - start if ok else None
    finally:
        stop_all(procs)


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [3, 8, 16]
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found: run cargo build --release -p probemesh first")
    # The worker: a standalone agent (a cluster of its own) answering GET /v1/health on
    # every loopback address. A Python server was the bottleneck at N = 64 (320 probes
    # a second on a saturated machine: probes timed out), which measured the worker,
    # not the agents.
    port = free_port()
    wdir = tempfile.mkdtemp()
    endpoint = subprocess.Popen([BIN, "agent", "--node-id", "endpoint", "--data-dir", f"{wdir}/endpoint",
                                 "--admin-listen", f"0.0.0.0:{port}", "--admin-token", "bench",
                                 "--gossip-listen", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait(lambda: get(f"http://127.0.0.1:{port}/v1/ready") is not None, 30):
        sys.exit("the endpoint agent did not start")
    print(f"gossip interval {GOSSIP_INTERVAL}, probe interval {PROBE_INTERVAL}, {REPEATS} registrations per N, each after {QUIET:g} s of quiet")
    print(f"{'N':>3}  {'probemesh members':>18}  {'registration->ready on all (min/median/max)':>44}  {'serf members':>13}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            membership, times = run_probemesh(n, d, port)
        with tempfile.TemporaryDirectory() as d:
            serf = run_serf(n, d)
        times.sort()
        ready = f"{times[0]:.3f} / {times[len(times)//2]:.3f} / {times[-1]:.3f} s" if times else "timeout"
        mem = f"{membership:.3f} s" if membership else "timeout"
        sm = f"{serf:.3f} s" if serf else "n/a"
        print(f"{n:>3}  {mem:>18}  {ready:>44}  {sm:>13}", flush=True)
    stop_all([endpoint])
    shutil.rmtree(wdir, ignore_errors=True)


if __name__ == "__main__":
    main()
