//! Full disk (SPEC S13, S8) with the real binary, root only: the agent's `--data-dir`
//! is on a small tmpfs whose free space the test controls with a filler file.
//!
//! - Refused twice, then space returns, then `kill -9`: every 2xx survives the restart,
//!   no refused change ever appears, the agent starts.
//! - Refused, `kill -9`, restart, without freeing space, twice: the agent still starts.
//! - A log past the compaction size on a disk too small for the snapshot beside it: every
//!   registration answers 201 until the log itself cannot grow, then 507; no temporary
//!   snapshot is left; every 2xx survives `kill -9`.
//!
//! A refused mutation must answer 507 `STORE_FULL`; anything else (a 503, a 201 that is
//! lost later) fails the test with the answer. Each test prints its figures
//! (`--nocapture`), reported in docs/reliability.md.

use probemesh_tests::tmpfs::Tmpfs;
use probemesh_tests::{Agent, Reply, eventually, id_of, require, worker_id_for};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The store compacts its log into a snapshot at this many bytes
/// (`daemon/src/store/mod.rs`, `COMPACT_BYTES`).
const COMPACT_BYTES: u64 = 8 << 20;
/// One label value; random alphanumerics, so that no compression makes a record small.
const LABEL_BYTES: usize = 900;
/// Names of metrics that count failed compactions start with this and contain `fail`.
const COMPACTION_METRIC_PREFIX: &str = "probemesh_store_compaction";

/// What the store did with one registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 201: on disk.
    Stored,
    /// 507 `STORE_FULL`: refused, nothing changed.
    Full,
}

/// An agent whose data directory is on its own tmpfs. Fields drop in order: the agent
/// is killed before the tmpfs is unmounted, and the mount point removed last, also when
/// a test panics.
struct Rig {
    agent: Agent,
    fs: Tmpfs,
    _dir: TempDir,
    labels: usize,
    next_port: u16,
    /// Ids of every worker whose registration answered 201.
    accepted: BTreeSet<String>,
    /// Id -> spec of every registration answered 507 (and not stored since).
    refused: BTreeMap<String, Value>,
}

impl Rig {
    /// Mounts a tmpfs of `size` bytes and starts an agent on it, or `None` when this
    /// machine cannot (printed; a failure under `PROBEMESH_REQUIRE_ROOT_TESTS=1`).
    /// Registrations carry `labels` labels of [`LABEL_BYTES`] bytes.
    async fn start(size: u64, labels: usize) -> Option<Rig> {
        if !require::root("mount a tmpfs")
            || !require::tool("mount", "mount a tmpfs")
            || !require::tool("umount", "unmount a tmpfs")
        {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("probemesh-disk-")
            .tempdir()
            .expect("tempdir");
        let fs = require::ok(Tmpfs::mount(&dir.path().join("disk"), size), "a tmpfs")?;
        let agent = Agent::builder()
            .data_dir(&fs.path().join("data"))
            .start()
            .await;
        Some(Rig {
            agent,
            fs,
            _dir: dir,
            labels,
            next_port: 20_000,
            accepted: BTreeSet::new(),
            refused: BTreeMap::new(),
        })
    }

    fn data(&self) -> PathBuf {
        self.agent.data_dir().to_path_buf()
    }

    fn wal_len(&self) -> u64 {
        std::fs::metadata(self.data().join("wal.log")).map_or(0, |m| m.len())
    }

    /// Names of temporary files in the data directory (a failed snapshot's leftovers).
    fn temp_files(&self) -> Vec<String> {
        std::fs::read_dir(self.data())
            .expect("read data dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect()
    }

    /// A new registration: a URL nobody else uses (nothing listens there; health checks
    /// are disabled, so no probe matters) and large random labels.
    fn next_spec(&mut self) -> Value {
        self.next_port += 1;
        let mut rng = rand::rng();
        let labels: serde_json::Map<String, Value> = (0..self.labels)
            .map(|i| {
                let v: String = (&mut rng)
                    .sample_iter(rand::distr::Alphanumeric)
                    .take(LABEL_BYTES)
                    .map(char::from)
                    .collect();
                (format!("k{i:02}"), Value::String(v))
            })
            .collect();
        json!({
            "url": format!("http://127.0.0.1:{}", self.next_port),
            "labels": labels,
            "health": {"disable": true},
        })
    }

    /// POSTs `spec` and records the outcome; panics on anything but 201 or 507
    /// `STORE_FULL`. A refused worker must not be visible right away.
    async fn post(&mut self, spec: &Value) -> Outcome {
        let id = worker_id_for(spec["url"].as_str().expect("url"));
        let r = self.agent.api().post("/v1/workers", spec).await;
        match outcome(&r) {
            Outcome::Stored => {
                assert_eq!(id_of(&r.body), id);
                self.refused.remove(&id);
                self.accepted.insert(id);
                Outcome::Stored
            }
            Outcome::Full => {
                assert!(
                    self.agent.api().worker(&id).await.is_none(),
                    "worker {id} was refused with 507 but is visible"
                );
                self.refused.insert(id, spec.clone());
                Outcome::Full
            }
        }
    }

    /// Registers one new worker.
    async fn register_new(&mut self) -> Outcome {
        let spec = self.next_spec();
        self.post(&spec).await
    }

    /// Registers new workers until `n` in a row are refused (at most `max` attempts);
    /// returns how many were stored meanwhile.
    async fn register_until_refused(&mut self, n: usize, max: usize) -> usize {
        let (mut stored, mut in_a_row) = (0, 0);
        for _ in 0..max {
            match self.register_new().await {
                Outcome::Stored => {
                    stored += 1;
                    in_a_row = 0;
                }
                Outcome::Full => {
                    in_a_row += 1;
                    if in_a_row == n {
                        return stored;
                    }
                }
            }
        }
        panic!(
            "{n} refusals in a row never came in {max} registrations ({stored} stored, {} free bytes): the test's disk is too large",
            self.fs.free_bytes()
        );
    }

    /// The set of worker ids in `GET /v1/workers`, which must be exactly the accepted
    /// ones: every 2xx is there, no refused change is.
    async fn assert_listed_exactly_the_accepted(&self, when: &str) {
        let listed: BTreeSet<String> = self
            .agent
            .api()
            .workers("")
            .await
            .iter()
            .map(id_of)
            .collect();
        let lost: Vec<_> = self.accepted.difference(&listed).collect();
        let ghosts: Vec<_> = listed
            .iter()
            .filter(|id| self.refused.contains_key(*id))
            .collect();
        let unknown: Vec<_> = listed
            .difference(&self.accepted)
            .filter(|id| !self.refused.contains_key(*id))
            .collect();
        assert!(
            lost.is_empty() && ghosts.is_empty() && unknown.is_empty(),
            "{when}: {} acknowledged registrations lost {lost:?}, {} refused ones visible {ghosts:?}, {} unknown {unknown:?} (accepted {}, refused {}, listed {})",
            lost.len(),
            ghosts.len(),
            unknown.len(),
            self.accepted.len(),
            self.refused.len(),
            listed.len()
        );
    }

    /// `kill -9`, restart on the same data directory; panics (with the log) unless the
    /// agent is ready again. Returns the time to ready.
    async fn crash_and_restart(&mut self) -> Duration {
        self.agent.kill9();
        let t = Instant::now();
        self.agent.restart().await;
        t.elapsed()
    }

    /// Waits (briefly) until no temporary snapshot file is left in the data directory.
    async fn assert_no_temp_file(&self, when: &str) {
        eventually(
            &format!("no temporary file in the data directory {when}"),
            Duration::from_secs(5),
            Duration::from_millis(20),
            || async {
                let t = self.temp_files();
                if t.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{t:?}"))
                }
            },
        )
        .await;
    }
}

/// 201 is [`Outcome::Stored`], 507 `STORE_FULL` is [`Outcome::Full`]; anything else
/// breaks SPEC S13 and panics with the answer.
fn outcome(r: &Reply) -> Outcome {
    match (r.status, r.error_code()) {
        (201, _) => Outcome::Stored,
        (507, Some("STORE_FULL")) => Outcome::Full,
        _ => panic!(
            "registration answered HTTP {}: {}; SPEC S13 allows only 201, or 507 STORE_FULL when the disk is full",
            r.status, r.text
        ),
    }
}

/// The sum of every series counting failed compactions, when the agent has one.
fn compaction_failures(metrics: &str) -> Option<(String, f64)> {
    let mut found: Option<(String, f64)> = None;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if name.starts_with(COMPACTION_METRIC_PREFIX)
            && name.contains("fail")
            && let Ok(v) = value.parse::<f64>()
        {
            let e = found.get_or_insert_with(|| (name.to_string(), 0.0));
            e.1 += v;
        }
    }
    found
}

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_twice_then_space_returns_then_kill9_keeps_every_2xx_and_no_refused_change() {
    let Some(mut rig) = Rig::start(MIB, 50).await else {
        return;
    };
    // One registration measures a record on disk; the filler then leaves room for 3.5.
    assert_eq!(rig.register_new().await, Outcome::Stored);
    let record = rig.wal_len();
    assert!(
        record > 40_000,
        "a record takes only {record} bytes on disk"
    );
    let filler = rig.fs.fill_leaving("filler", record * 7 / 2);
    let free = rig.fs.free_bytes();
    let fit = rig.register_until_refused(2, 20).await;
    assert!(fit >= 1, "nothing fit in {free} free bytes");
    eprintln!(
        "disk_full: 1 MiB tmpfs, {record} B per record, {free} B free: {fit} registrations fit, then 2 refused in a row (507 STORE_FULL)"
    );
    rig.assert_listed_exactly_the_accepted("after two refusals")
        .await;

    // Space returns: the first refused spec, sent again as it was, and new ones are all
    // stored. The refused spec answers 201, not 200 ("already registered"): nothing of
    // it was kept. The second refused one is never sent again and must never appear.
    std::fs::remove_file(&filler).expect("remove filler");
    let first_refused = rig.refused.values().next().expect("a refusal").clone();
    assert_eq!(
        rig.post(&first_refused).await,
        Outcome::Stored,
        "the refused spec again, once space returned"
    );
    assert_eq!(rig.refused.len(), 1);
    for _ in 0..5 {
        assert_eq!(
            rig.register_new().await,
            Outcome::Stored,
            "registration after space returned ({} free bytes)",
            rig.fs.free_bytes()
        );
    }
    rig.assert_listed_exactly_the_accepted("after space returned")
        .await;

    let took = rig.crash_and_restart().await;
    rig.assert_listed_exactly_the_accepted("after kill -9 and restart")
        .await;
    eprintln!(
        "disk_full: after space returned, {} registrations acknowledged in all; kill -9, ready again in {took:?}, all {} listed, none of the refused",
        rig.accepted.len(),
        rig.accepted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_then_kill9_without_freeing_space_still_starts_every_time() {
    let Some(mut rig) = Rig::start(MIB, 50).await else {
        return;
    };
    assert_eq!(rig.register_new().await, Outcome::Stored);
    let record = rig.wal_len();
    let filler = rig.fs.fill_leaving("filler", record * 5 / 2);
    let mut times = Vec::new();
    for round in 1..=3 {
        // Refused once or twice, then a crash while the disk is still full.
        let fit = rig.register_until_refused(round.min(2), 20).await;
        let took = rig.crash_and_restart().await;
        rig.assert_listed_exactly_the_accepted(&format!(
            "round {round}: refused, kill -9, restart on a full disk"
        ))
        .await;
        eprintln!(
            "disk_full: full disk, round {round}: {fit} fit, refused {}x, kill -9, ready again in {took:?} ({} free bytes)",
            round.min(2),
            rig.fs.free_bytes()
        );
        times.push(took);
    }
    std::fs::remove_file(&filler).expect("remove filler");
    assert_eq!(
        rig.register_new().await,
        Outcome::Stored,
        "after space returned"
    );
    rig.crash_and_restart().await;
    rig.assert_listed_exactly_the_accepted("space returned, one more, kill -9, restart")
        .await;
    eprintln!(
        "disk_full: {} acknowledged, {} refused, restarts on a full disk took {times:?}",
        rig.accepted.len(),
        rig.refused.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_compaction_never_fails_its_change_nor_leaves_a_temp_file() {
    // 13 MiB, 1 MiB of it a filler: the log reaches the compaction size with about
    // 4 MiB free, less than the snapshot of everything it holds.
    let Some(mut rig) = Rig::start(13 * MIB, 60).await else {
        return;
    };
    let filler = rig.fs.fill_leaving("filler", 12 * MIB);
    let free = rig.fs.free_bytes();
    let t0 = Instant::now();
    let (mut before_compaction, mut past_compaction) = (0usize, 0usize);
    let mut last_wal = 0;
    let mut refusals = 0;
    for _ in 0..400 {
        let outcome = rig.register_new().await;
        let wal = rig.wal_len();
        if outcome == Outcome::Full {
            let free = rig.fs.free_bytes();
            assert!(
                wal >= COMPACT_BYTES,
                "refused with a {wal}-byte log and {free} bytes free: only a log that cannot grow may refuse"
            );
            // Only a log that cannot take one more record may refuse: the failed
            // snapshot's space must have been given back.
            let record = wal / rig.accepted.len() as u64;
            assert!(
                free < 2 * record,
                "507 with {free} bytes free, room for {} more records ({record} B each)",
                free / record
            );
            rig.assert_no_temp_file("after a refusal").await;
            refusals += 1;
            if refusals == 2 {
                break;
            }
            continue;
        }
        refusals = 0;
        assert!(
            wal >= last_wal,
            "the log shrank from {last_wal} to {wal} bytes: a snapshot fit, so this disk is too large for the test"
        );
        last_wal = wal;
        if wal >= COMPACT_BYTES {
            // Every registration from here on is due a compaction (at once, or when the
            // retry comes due), and none can be written.
            past_compaction += 1;
            rig.assert_no_temp_file(&format!(
                "after registration {past_compaction} past the compaction size"
            ))
            .await;
        } else {
            before_compaction += 1;
        }
    }
    assert_eq!(refusals, 2, "the log never filled the disk");
    assert!(
        past_compaction > 0,
        "the log never reached the compaction size"
    );
    let metrics = rig.agent.api().metrics().await;
    let counted = compaction_failures(&metrics);
    match &counted {
        Some((name, n)) => assert!(
            *n > 0.0,
            "{name} is {n} after {past_compaction} registrations past the compaction size"
        ),
        None => {
            eprintln!("disk_full: note: no {COMPACTION_METRIC_PREFIX}*fail* metric in /metrics yet")
        }
    }
    eprintln!(
        "disk_full: 13 MiB tmpfs, {free} B free: {before_compaction} registrations filled the log to 8 MiB, {past_compaction} more were acknowledged (201) while no snapshot could be written ({}), then 507 STORE_FULL with a {last_wal}-byte log, in {:?}",
        counted.map_or("no metric".into(), |(n, v)| format!("{n} = {v}")),
        t0.elapsed()
    );
    rig.assert_listed_exactly_the_accepted("after failed compactions")
        .await;

    // A crash with the disk still full, then with space back.
    let full = rig.crash_and_restart().await;
    rig.assert_listed_exactly_the_accepted("kill -9 and restart on the full disk")
        .await;
    rig.assert_no_temp_file("after the restart").await;
    std::fs::remove_file(&filler).expect("remove filler");
    for _ in 0..3 {
        assert_eq!(
            rig.register_new().await,
            Outcome::Stored,
            "after space returned"
        );
        rig.assert_no_temp_file("after a registration with space back")
            .await;
    }
    let freed = rig.crash_and_restart().await;
    rig.assert_listed_exactly_the_accepted("space returned, kill -9, restart")
        .await;
    eprintln!(
        "disk_full: {} acknowledged registrations survived; ready again in {full:?} on the full disk, {freed:?} with space back ({}-byte log)",
        rig.accepted.len(),
        rig.wal_len()
    );
}
