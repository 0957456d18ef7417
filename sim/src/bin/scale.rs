//! Scale by simulation (docs/scale.md): N nodes and W workers in paused time, on the
//! model or on real chitchat over its in-memory transport. Prints one JSON line:
//! virtual-time convergence (membership, registration → imported and → ready
//! everywhere, a new node's membership and catch-up, eviction everywhere), gossip
//! bytes per node per second, memory per node and the wall time of each phase.
//!
//! `scale --nodes 64 --workers 1000 [--backend model|chitchat] [--interval 200ms]
//! [--probe-interval 1s] [--seed 1] [--trace]` (`--trace` prints the trace on stderr)

use probemesh_gossip::model::WorkerUrl;
use probemesh_sim::check::Failure;
use probemesh_sim::scenario::compile::Expect;
use probemesh_sim::scenario::{Cond, Scenario, Sel, Settings, Step, WorkerStatus};
use probemesh_sim::{Backend, RunOptions, run};
use std::time::Duration;

struct Args {
    nodes: usize,
    workers: usize,
    backend: Backend,
    interval: Duration,
    probe_interval: Duration,
    seed: u64,
    trace: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        nodes: 16,
        workers: 100,
        backend: Backend::Model,
        interval: Duration::from_millis(200),
        probe_interval: Duration::from_secs(1),
        seed: 1,
        trace: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--trace" {
            a.trace = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        let dur = |v: &str| humantime::parse_duration(v).map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--nodes" => a.nodes = num(&v)?,
            "--workers" => a.workers = num(&v)?,
            "--seed" => a.seed = num(&v)? as u64,
            "--interval" => a.interval = dur(&v)?,
            "--probe-interval" => a.probe_interval = dur(&v)?,
            "--backend" => {
                a.backend = match v.as_str() {
                    "model" => Backend::Model,
                    "chitchat" => Backend::Chitchat,
                    _ => return Err(format!("--backend {v}: model or chitchat")),
                }
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.nodes == 0 || a.workers == 0 {
        return Err("--nodes and --workers must be at least 1".into());
    }
    Ok(a)
}

fn url(i: usize) -> Result<WorkerUrl, String> {
    let s = format!("http://10.1.{}.{}:8000", i / 250, i % 250 + 1);
    WorkerUrl::parse(&s).map_err(|e| format!("{s}: {e}"))
}

/// Steady-state window after everything is ready.
const STEADY: Duration = Duration::from_secs(10);

fn scenario(a: &Args) -> Result<Scenario, String> {
    let (n, w) = (a.nodes, a.workers);
    let evicted = (w / 10).max(1);
    let long = Duration::from_secs(900);
    let mut steps = vec![
        Step::Start {
            count: n,
            seed_node: 0,
            allow: vec![],
        },
        Step::AssertWithin(long, Cond::MembersAlive(n, Sel::All)),
    ];
    for i in 0..w {
        steps.push(Step::Register {
            on: i % n,
            url: url(i)?,
            disable_checks: false,
            expect: Expect::Ok,
        });
    }
    steps.extend([
        Step::AssertWithin(long, Cond::Count(WorkerStatus::Known, w, Sel::All)),
        Step::AssertWithin(
            long,
            Cond::Count(
                WorkerStatus::Is(probemesh_gossip::model::Status::Ready),
                w,
                Sel::All,
            ),
        ),
        Step::AssertFor(STEADY, Cond::Count(WorkerStatus::Known, w, Sel::All)),
        Step::Start {
            count: 1,
            seed_node: 0,
            allow: vec![],
        },
        Step::AssertWithin(long, Cond::MembersAlive(n + 1, Sel::All)),
        Step::AssertWithin(
            long,
            Cond::Count(WorkerStatus::Known, w, Sel::Nodes(vec![n])),
        ),
        // Ready on the newcomer too, so that eviction measures the ready → failed path
        // (12 probes) everywhere, not a pending newcomer's 30.
        Step::AssertWithin(
            long,
            Cond::Count(
                WorkerStatus::Is(probemesh_gossip::model::Status::Ready),
                w,
                Sel::All,
            ),
        ),
    ]);
    for i in 0..evicted {
        steps.push(Step::Unreachable {
            worker: url(i)?,
            from: Sel::All,
            how: Failure::Refused,
        });
    }
    steps.push(Step::AssertWithin(
        long,
        Cond::Count(WorkerStatus::Known, w - evicted, Sel::All),
    ));
    Ok(Scenario {
        name: format!("scale {n} x {w}"),
        file: "<scale>".into(),
        seed: a.seed,
        settings: Settings {
            gossip_interval: a.interval,
            probe_interval: a.probe_interval,
            probe_timeout: a.probe_interval / 2,
            poll: Duration::from_millis(50),
            ..Settings::default()
        },
        steps,
    })
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("scale: {e}");
            std::process::exit(2);
        }
    };
    let s = match scenario(&a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("scale: {e}");
            std::process::exit(2);
        }
    };
    let t0 = std::time::Instant::now();
    let out = run(
        &s,
        &RunOptions {
            backend: a.backend,
            trace: a.trace,
            ..Default::default()
        },
    );
    let h = &out.held;
    let n = a.nodes as f64;
    let steady_bytes = h[3].bytes.saturating_sub(h[2].bytes) as f64;
    let rss_per_node = h[2].rss_kib.saturating_sub(out.rss_before_kib) as f64 / n;
    let (digest, delta, sent) = out.traffic.as_ref().map_or((0, 0, 0), |t| {
        t.values().fold((0, 0, 0), |acc, x| {
            (acc.0 + x.digest, acc.1 + x.delta, acc.2 + x.sent)
        })
    });
    let json = serde_json::json!({
        "backend": format!("{:?}", a.backend).to_lowercase(),
        "nodes": a.nodes,
        "workers": a.workers,
        "evicted": (a.workers / 10).max(1),
        "interval_ms": a.interval.as_millis() as u64,
        "probe_interval_ms": a.probe_interval.as_millis() as u64,
        "membership_ms": h[0].waited_ms,
        "imported_everywhere_ms": h[1].waited_ms,
        "ready_everywhere_ms": h[1].waited_ms + h[2].waited_ms,
        "new_node_member_everywhere_ms": h[4].waited_ms,
        "new_node_caught_up_ms": h[4].waited_ms + h[5].waited_ms,
        "evicted_everywhere_ms": h[7].waited_ms,
        "steady_bytes_per_node_per_s": (steady_bytes / n / STEADY.as_secs_f64()).round(),
        "total_bytes_per_node": (h[7].bytes as f64 / n).round(),
        "digest_share": if sent > 0 { digest as f64 / sent as f64 } else { f64::NAN },
        "delta_share": if sent > 0 { delta as f64 / sent as f64 } else { f64::NAN },
        "rss_per_node_kib": rss_per_node.round(),
        "model_entries": out.footprint.map(|f| f.entries),
        "virtual_s": out.virtual_ms as f64 / 1000.0,
        "wall_s": t0.elapsed().as_secs_f64(),
        "wall_phase_s": h.iter().map(|x| x.wall_ms as f64 / 1000.0).collect::<Vec<_>>(),
        "bytes_per_node_by_phase": h.iter().map(|x| (x.bytes as f64 / n).round()).collect::<Vec<_>>(),
        "virtual_s_by_phase": h.iter().map(|x| x.at_ms as f64 / 1000.0).collect::<Vec<_>>(),
    });
    println!("{json}");
    if a.trace {
        eprint!("{}", out.trace.render());
    }
}
