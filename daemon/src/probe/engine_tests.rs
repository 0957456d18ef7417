//! The engine with the real checker and a scripted host: a worker the engine stops
//! probing has its kept connection closed.

use super::*;
use crate::probe::check::Checker;
use crate::probe::test_worker::{Mode, OK, eventually, worker};
use probemesh_gossip::model::WorkerUrl;
use rand::SeedableRng;
use std::sync::Mutex;

/// A host with a fixed set of workers, each probed every 20 ms; a worker taken out
/// of the set has no target any more and its results say stop.
#[derive(Default)]
struct Host {
    targets: Mutex<HashMap<WorkerId, Target>>,
}

impl Host {
    fn add(&self, url: &reqwest::Url) -> WorkerId {
        let id = WorkerUrl::parse(url.as_str()).unwrap().id();
        let target = Target::http(url.clone(), Duration::from_secs(5));
        self.targets.lock().unwrap().insert(id.clone(), target);
        id
    }

    fn remove(&self, id: &WorkerId) {
        self.targets.lock().unwrap().remove(id);
    }
}

impl ProbeHost for Host {
    fn target(&self, id: &WorkerId, _generation: u64) -> Option<Target> {
        self.targets.lock().unwrap().get(id).cloned()
    }

    fn record(&self, id: &WorkerId, _generation: u64, _report: ProbeReport) -> NextStep {
        if self.targets.lock().unwrap().contains_key(id) {
            NextStep::Probe(Duration::from_millis(20))
        } else {
            NextStep::Stop
        }
    }

    fn retry(&self, _id: &WorkerId, _generation: u64) -> Option<Duration> {
        None
    }

    fn in_flight(&self, _delta: i64) {}
}

struct Running {
    host: Arc<Host>,
    checker: Arc<Checker>,
    tx: mpsc::UnboundedSender<Command>,
    stop: CancellationToken,
}

fn start() -> Running {
    let host = Arc::new(Host::default());
    let checker = Arc::new(Checker::new(vec![]).unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    tokio::spawn(run(
        Arc::clone(&host),
        rx,
        Arc::clone(&checker),
        EngineSettings {
            concurrency: 4,
            rng: StdRng::seed_from_u64(1),
        },
        stop.clone(),
    ));
    Running {
        host,
        checker,
        tx,
        stop,
    }
}

impl Running {
    fn first(&self, id: &WorkerId) {
        self.tx
            .send(Command::First {
                id: id.clone(),
                generation: 1,
                interval: Duration::from_millis(20),
            })
            .unwrap();
    }
}

#[tokio::test]
async fn a_cancelled_worker_has_its_connection_closed() {
    let e = start();
    let (url, seen) = worker(Mode::KeepAlive, OK).await;
    let id = e.host.add(&url);
    e.first(&id);
    eventually("several probes", || seen.requests().len() >= 5).await;
    assert_eq!(seen.accepted(), 1, "the probes share one connection");
    e.host.remove(&id);
    e.tx.send(Command::Cancel { id }).unwrap();
    eventually("the worker sees its connection closed", || {
        seen.closed() == 1
    })
    .await;
    eventually("nothing kept", || e.checker.idle_connections() == 0).await;
    e.stop.cancel();
}

#[tokio::test]
async fn a_worker_its_host_no_longer_gives_has_its_connection_closed() {
    let e = start();
    let (url, seen) = worker(Mode::KeepAlive, OK).await;
    let (other, other_seen) = worker(Mode::KeepAlive, OK).await;
    let id = e.host.add(&url);
    let other_id = e.host.add(&other);
    e.first(&id);
    e.first(&other_id);
    eventually("several probes", || seen.requests().len() >= 3).await;
    // Gone from the host without a cancel: the next due probe finds no target, or
    // the probe in flight is told to stop.
    e.host.remove(&id);
    eventually("the worker sees its connection closed", || {
        seen.closed() == 1
    })
    .await;
    let before = other_seen.requests().len();
    eventually("the other worker is still probed", || {
        other_seen.requests().len() >= before + 3
    })
    .await;
    assert_eq!(other_seen.closed(), 0);
    assert_eq!(e.checker.idle_connections(), 1);
    e.stop.cancel();
}

/// A check that takes 30 ms and records how many ran at once.
#[derive(Default)]
struct Slow {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    done: std::sync::atomic::AtomicUsize,
}

impl Check for Slow {
    async fn check(&self, _target: &Target) -> ProbeReport {
        use std::sync::atomic::Ordering::SeqCst;
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(n, SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.now.fetch_sub(1, SeqCst);
        self.done.fetch_add(1, SeqCst);
        ProbeReport {
            result: crate::probe::result::ProbeResult::Ok(200),
            latency: Duration::from_millis(30),
        }
    }
}

#[tokio::test]
async fn probes_past_the_concurrency_bound_wait_their_turn() {
    let host = Arc::new(Host::default());
    let check = Arc::new(Slow::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    tokio::spawn(run(
        Arc::clone(&host),
        rx,
        Arc::clone(&check),
        EngineSettings {
            concurrency: 3,
            rng: StdRng::seed_from_u64(2),
        },
        stop.clone(),
    ));
    for port in 1..=20u16 {
        let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let id = host.add(&url);
        tx.send(Command::First {
            id,
            generation: 1,
            interval: Duration::from_millis(20),
        })
        .unwrap();
    }
    eventually("every worker probed", || {
        check.done.load(std::sync::atomic::Ordering::SeqCst) >= 40
    })
    .await;
    assert_eq!(check.most.load(std::sync::atomic::Ordering::SeqCst), 3);
    stop.cancel();
}
