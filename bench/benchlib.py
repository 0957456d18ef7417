"""Helpers shared by the bench scripts: where the binary is, free ports, a process's
CPU and memory from /proc, and stopping the processes a script started."""
import os
import socket
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PROBEMESH_BIN", os.path.join(ROOT, "target", "release", "probemesh"))
TICK = os.sysconf("SC_CLK_TCK")


_HANDED_OUT = set()


def free_port(kind=socket.SOCK_STREAM):
    """A free loopback port of `kind`, never one this script was given before: the
    kernel may hand the same ephemeral port to two binds in a row once the first socket
    is closed, and with 64 agents that happened in about one run in ten (an agent then
    failed to bind its gossip port)."""
    while True:
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if (kind, p) not in _HANDED_OUT:
            _HANDED_OUT.add((kind, p))
            return p


def cpu_split(pid):
    """(user, system) CPU seconds of a process: fields 14 and 15 of /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) / TICK, int(parts[12]) / TICK


def cpu_seconds(pid):
    return sum(cpu_split(pid))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stop_all(procs, grace=10):
    """SIGTERM every process, then wait for each (SIGKILL after `grace` seconds)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()


def metric_sum(base, prefix, timeout=30):
    """Sum of every sample of a metric family in GET /metrics (`prefix` = name + "{")."""
    import urllib.request
    with urllib.request.urlopen(f"{base}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(prefix))
