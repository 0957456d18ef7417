#!/usr/bin/env python3
"""Resource and latency figures of one agent, with Serf and smg as references.

  * start-up: process spawn -> GET /v1/ready answers 200 (fresh data dir), 10 runs;
  * idle RSS: an agent with nothing registered, 5 s after ready; Serf agent the same;
  * 10,000 workers at a 5 s probe interval: the agent's CPU (share of one core, and
    microseconds per probe) and RSS (and bytes per worker over an idle agent) over
    60 s of steady state; the workers are 10,000 loopback addresses (127.0.x.y)
    served by a second agent's /v1/health; then the floor: the CPU wrk spends per
    keep-alive request to the same endpoint, times 2,000 requests/s;
  * blocking-query wake-up: time from sending a change to the return of a waiting
    `GET /v1/workers?index=N`, 50 runs;
  * `GET /v1/workers?status=ready` with 1,000 workers under wrk (64 connections),
    against smg's `GET /workers` with 1,000 workers (if wrk and smg are installed).

Usage: bench/resources.py [section ...]   sections: startup idle 10k wakeup http floor
Needs: cargo build --release -p probemesh. Everything listens on loopback and is
stopped at the end.
"""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchlib import BIN, ROOT, cpu_seconds, cpu_split, free_port, metric_sum, rss_kib
SMG = os.environ.get("SMG_BIN", os.path.expanduser("~/.cache/probemesh/smg-venv/bin/smg"))


def http(method, url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read() or b"null")


class Agent:
    def __init__(self, workdir, name, extra=(), admin="127.0.0.1"):
        self.admin = free_port()
        self.gossip = free_port(socket.SOCK_DGRAM)
        self.base = f"http://127.0.0.1:{self.admin}"
        args = [BIN, "agent", "--node-id", name, "--data-dir", f"{workdir}/{name}",
                "--admin-listen", f"{admin}:{self.admin}", "--gossip-listen", f"127.0.0.1:{self.gossip}", *extra]
        if admin != "127.0.0.1":
            args += ["--admin-token", "bench"]
        self.log = open(f"{workdir}/{name}.log", "w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)

    def wait_ready(self, timeout=120):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if http("GET", f"{self.base}/v1/ready", timeout=1)[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.001)
        raise RuntimeError(f"agent not ready, see {self.log.name}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def startup():
    times = []
    for _ in range(10):
        with tempfile.TemporaryDirectory() as d:
            a = Agent(d, "s")
            times.append(a.wait_ready())
            a.stop()
    times.sort()
    print(f"start-up to /v1/ready: median {statistics.median(times)*1000:.0f} ms, max {times[-1]*1000:.0f} ms (10 runs, fresh data dir incl. CA creation)")


def idle():
    with tempfile.TemporaryDirectory() as d:
        a = Agent(d, "idle")
        a.wait_ready()
        time.sleep(5)
        mine = rss_kib(a.proc.pid)
        a.stop()
    serf = shutil.which("serf")
    ref = "n/a"
    if serf:
        p = subprocess.Popen([serf, "agent", "-node=idle", f"-bind=127.0.0.1:{free_port()}", f"-rpc-addr=127.0.0.1:{free_port()}", "-log-level=err"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(5)
        ref = f"{rss_kib(p.pid)/1024:.1f} MiB"
        p.terminate()
        p.wait()
    print(f"idle RSS: probemesh {mine/1024:.1f} MiB, serf {ref}")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wrk_cpu(url, connections, seconds=10):
    """Runs wrk (one thread, keep-alive) against `url`; returns (requests, CPU seconds
    of wrk, requests/s). wrk's CPU is its rusage, read when it exits (wait4)."""
    p = subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = p.stdout.read()
    _, _, ru = os.wait4(p.pid, 0)
    p.returncode = 0
    line = next((l for l in out.splitlines() if "requests in" in l), "")
    requests = int(line.split()[0]) if line else 0
    rps = next((float(l.split()[1]) for l in out.splitlines() if l.startswith("Requests/sec")), 0.0)
    return requests, ru.ru_utime + ru.ru_stime, rps


def floor(url, probes_per_s):
    """The floor for probing: the CPU wrk spends per keep-alive request on loopback,
    times the probe rate. With 64 connections wrk batches (one epoll wake-up serves
    many answers); with 1 connection every answer is a wake-up of its own, as a probe
    is at 2,000/s spread over 5 s."""
    if not shutil.which("wrk"):
        print("floor: wrk not installed (apt-get install wrk)")
        return
    for c in (64, 1):
        requests, cpu, rps = wrk_cpu(url, c)
        if not requests:
            print(f"floor: wrk -c{c} made no request")
            continue
        us = cpu / requests * 1e6
        print(f"floor: wrk -t1 -c{c} keep-alive on loopback: {rps:.0f} req/s, {us:.2f} us CPU per request -> {us * probes_per_s / 1e4:.2f}% of one core at {probes_per_s} requests/s")


def ten_k(n=10_000, seconds=60):
    """10,000 workers at 5 s: the agent's CPU (share of one core, and microseconds per
    probe from probemesh_probes_total), RSS and bytes per worker (RSS over an idle
    agent's, measured in the same run), open descriptors; then the wrk floor against
    the same worker endpoint."""
    with tempfile.TemporaryDirectory() as d:
        idle_agent = Agent(d, "idle0")
        idle_agent.wait_ready()
        time.sleep(5)
        idle_rss = rss_kib(idle_agent.proc.pid)
        idle_agent.stop()
        # The worker side holds one kept-alive connection per worker address.
        target = Agent(d, "target", ["--admin-max-connections", str(n + 2000)], admin="0.0.0.0")
        target.wait_ready()
        workers = [f"http://127.0.{i // 250}.{i % 250 + 1}:{target.admin}" for i in range(n)]
        with open(f"{d}/agent.toml", "w") as f:
            f.write("probe_path = \"/v1/health\"\nprobe_interval = \"5s\"\n")
            f.write("worker = [\n" + ",\n".join(f'  "{w}"' for w in workers) + "\n]\n")
        a = Agent(d, "tenk", ["--config", f"{d}/agent.toml"])
        a.wait_ready(timeout=600)
        # Wait until every worker is ready (each verified by two probes).
        end = time.monotonic() + 300
        ready = 0
        while time.monotonic() < end:
            ready = len(http("GET", f"{a.base}/v1/workers?status=ready", timeout=30)[1]["workers"])
            if ready == n:
                break
            time.sleep(2)
        time.sleep(10)  # past the start-up burst: every worker on its own 5 s rhythm
        probes0 = metric_sum(a.base, "probemesh_probes_total{")
        (u0, s0), t0 = cpu_split(a.proc.pid), time.monotonic()
        time.sleep(seconds)
        (u1, s1), t1 = cpu_split(a.proc.pid), time.monotonic()
        probes = metric_sum(a.base, "probemesh_probes_total{") - probes0
        rss = rss_kib(a.proc.pid)
        fds = open_fds(a.proc.pid)
        user, system = 100 * (u1 - u0) / (t1 - t0), 100 * (s1 - s0) / (t1 - t0)
        us = ((u1 - u0) + (s1 - s0)) / probes * 1e6 if probes else float("nan")
        per_worker = (rss - idle_rss) * 1024 / n
        print(f"{n} workers at 5 s ({ready} ready): CPU {user + system:.1f}% of one core (user {user:.1f}%, kernel {system:.1f}%), "
              f"{probes / (t1 - t0):.0f} probes/s, {us:.1f} us CPU per probe; RSS {rss/1024:.1f} MiB "
              f"(idle agent {idle_rss/1024:.1f} MiB: {per_worker:.0f} bytes per worker); {fds} open descriptors (over {seconds} s)")
        a.stop()
        floor(f"http://127.0.0.1:{target.admin}/v1/health", round(n / 5))
        target.stop()


def wakeup(runs=50):
    with tempfile.TemporaryDirectory() as d:
        a = Agent(d, "w")
        a.wait_ready()
        lat = []
        for i in range(runs):
            idx = http("GET", f"{a.base}/v1/workers")[1]["index"]
            out = {}

            def wait():
                http("GET", f"{a.base}/v1/workers?index={idx}&wait=30s", timeout=40)
                out["t"] = time.monotonic()
            th = threading.Thread(target=wait)
            th.start()
            time.sleep(0.05)  # let the query park
            t0 = time.monotonic()
            http("POST", f"{a.base}/v1/workers", {"url": f"http://10.0.{i // 250}.{i % 250 + 1}:8000", "health": {"disable": True}})
            t_post = time.monotonic()
            th.join()
            lat.append((out["t"] - t0, t_post - t0))
        a.stop()
    wake = sorted(x[0] for x in lat)
    post = sorted(x[1] for x in lat)
    print(f"blocking-query wake-up after a change (incl. the POST and its fsync): median {statistics.median(wake)*1000:.2f} ms, p99 {wake[-1]*1000:.2f} ms; POST alone median {statistics.median(post)*1000:.2f} ms")


def wrk(url, seconds=10, gzip=False):
    headers = ["-H", "Accept-Encoding: gzip"] if gzip else []
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", *headers, url], capture_output=True, text=True).stdout
    rps = next((l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")), "?")
    p99 = next((l.split()[1] for l in out.splitlines() if l.strip().startswith("99%")), "?")
    return rps, p99


def body_size(url, gzip=False):
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return len(r.read())


def http_bench(n=1000):
    if not shutil.which("wrk"):
        print("http: wrk not installed (apt-get install wrk)")
        return
    with tempfile.TemporaryDirectory() as d:
        a = Agent(d, "h")
        a.wait_ready()
        for i in range(n):
            http("POST", f"{a.base}/v1/workers", {"url": f"http://10.1.{i // 250}.{i % 250 + 1}:8000", "model_id": "m", "health": {"disable": True}})
        url = f"{a.base}/v1/workers?status=ready"
        for gz in (False, True):
            rps, p99 = wrk(url, gzip=gz)
            print(f"GET /v1/workers?status=ready, {n} workers, 64 connections{', Accept-Encoding: gzip' if gz else ''}: {rps} req/s, p99 {p99} ({body_size(url, gz)} bytes per answer)")
        a.stop()
    if not os.path.exists(SMG):
        print("smg: not installed (tests install it into ~/.cache/probemesh/smg-venv)")
        return
    fake = os.path.join(ROOT, "tests", "fixtures", "fake_llm_worker.py")
    wport = free_port()
    worker = subprocess.Popen(["python3", fake, "0.0.0.0", str(wport)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sport = free_port()
    smg = subprocess.Popen([SMG, "launch", "--host", "127.0.0.1", "--port", str(sport), "--prometheus-port", str(free_port())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{sport}"
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                http("GET", f"{base}/workers", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        for i in range(n):
            try:
                http("POST", f"{base}/workers", {"url": f"http://127.0.{i // 250}.{i % 250 + 1}:{wport}"})
            except Exception:
                pass
        end = time.monotonic() + 120
        total = 0
        while time.monotonic() < end:
            total = http("GET", f"{base}/workers", timeout=10)[1].get("total", 0)
            if total >= n:
                break
            time.sleep(1)
        for gz in (False, True):
            rps, p99 = wrk(f"{base}/workers", gzip=gz)
            print(f"smg GET /workers, {total} workers, 64 connections{', Accept-Encoding: gzip' if gz else ''}: {rps} req/s, p99 {p99} ({body_size(f'{base}/workers', gz)} bytes per answer)")
    finally:
        smg.terminate()
        worker.terminate()


def floor_only():
    """The wrk floor alone, against an idle agent's /v1/health."""
    with tempfile.TemporaryDirectory() as d:
        a = Agent(d, "floor")
        a.wait_ready()
        floor(f"{a.base}/v1/health", 2000)
        a.stop()


SECTIONS = {"startup": startup, "idle": idle, "10k": ten_k, "wakeup": wakeup, "http": http_bench, "floor": floor_only}

if __name__ == "__main__":
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} not found: run cargo build --release -p probemesh first")
    for name in sys.argv[1:] or list(SECTIONS):
        SECTIONS[name]()
