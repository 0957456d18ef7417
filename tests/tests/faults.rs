//! Faults on network-namespace hosts (root only; skipped with a reason otherwise, and
//! failed instead under `PROBEMESH_REQUIRE_ROOT_TESTS=1`, see `require`):
//! partial reachability, partition and heal, loss and latency, self-isolation. Each
//! scenario asserts its invariant and prints its figures (docs/reliability.md).

use probemesh_tests::ns_cluster::NsCluster;
use probemesh_tests::{eventually, id_of, require};
use serde_json::json;
use std::time::{Duration, Instant};

const FAST: [&str; 4] = ["--probe-interval", "200ms", "--probe-timeout", "300ms"];

/// Whether this machine cannot run the scenarios (printed, or a failure in CI).
fn skip() -> bool {
    !require::netns()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_reachability_ready_only_where_reachable_never_evicted_then_picked_up() {
    if skip() {
        return;
    }
    let mut c = NsCluster::start(3, 0, &FAST).await;
    // W sits behind a0 on its own link; a1 and a2 route to it through a0, which drops.
    c.lab.add_ns("wp");
    c.lab.link("a0", "10.234.0.1/24", "wp", "10.234.0.2/24");
    c.lab
        .route("wp", &format!("10.{}.0.0/24", c.net), "10.234.0.1");
    c.lab.route("a1", "10.234.0.0/24", &c.agent_ip(0));
    c.lab.route("a2", "10.234.0.0/24", &c.agent_ip(0));
    let fixture = format!("{}/fixtures/fake_llm_worker.py", env!("CARGO_MANIFEST_DIR"));
    let log = c.dir.path().join("wp.log");
    c.lab
        .spawn("wp", "python3", &[&fixture, "10.234.0.2", "8000"], &log);
    let url = "http://10.234.0.2:8000";
    c.apis[0].register(&json!({"url": url})).await;
    eventually(
        "imported everywhere",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let s = c.statuses(url).await;
            if s.iter().all(Option::is_some) {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    // Sample every 100 ms: a0 gets it ready; a1 and a2 never list it ready; nobody evicts.
    let start = Instant::now();
    let mut a0_ready = false;
    let mut failed_elsewhere = false;
    while start.elapsed() < Duration::from_secs(20) {
        let s = c.statuses(url).await;
        assert!(s.iter().all(Option::is_some), "evicted somewhere: {s:?}");
        assert_ne!(
            s[1].as_deref(),
            Some("ready"),
            "a1 routes to an unreachable worker"
        );
        assert_ne!(
            s[2].as_deref(),
            Some("ready"),
            "a2 routes to an unreachable worker"
        );
        a0_ready |= s[0].as_deref() == Some("ready");
        failed_elsewhere = s[1].as_deref() == Some("failed") && s[2].as_deref() == Some("failed");
        if a0_ready && failed_elsewhere {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a0_ready && failed_elsewhere, "{:?}", c.statuses(url).await);
    let failed_at = Instant::now();
    // Restore the others' path to W: a0 starts forwarding.
    c.lab
        .exec("a0", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    eventually(
        "a1 and a2 pick W up after their retry backoff",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async {
            let s = c.statuses(url).await;
            if s.iter().all(|x| x.as_deref() == Some("ready")) {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "partial reachability: picked up {:?} after the path was restored (S6b backoff 60 s)",
        failed_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_isolation_reports_nothing_ready_and_evicts_nothing() {
    if skip() {
        return;
    }
    let c = NsCluster::start(3, 2, &FAST).await;
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for j in 0..2 {
            v.push(id_of(
                &c.apis[0].register(&json!({"url": c.worker_url(j)})).await,
            ));
        }
        v
    };
    for j in 0..2 {
        eventually(
            "ready everywhere",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async {
                let s = c.statuses(&c.worker_url(j)).await;
                if s.iter().all(|x| x.as_deref() == Some("ready")) {
                    Ok(())
                } else {
                    Err(format!("{s:?}"))
                }
            },
        )
        .await;
    }
    // a2 loses its network to every worker.
    for j in 0..2 {
        c.lab.blackhole("a2", &format!("{}/32", c.worker_ip(j)));
    }
    let start = Instant::now();
    eventually(
        "a2 reports nothing ready",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let r = c.apis[2].get("/v1/workers?status=ready").await.body;
            let n = r["workers"].as_array().map_or(0, Vec::len);
            if n == 0 {
                Ok(())
            } else {
                Err(format!("{n} ready"))
            }
        },
    )
    .await;
    eprintln!(
        "self-isolation: a2 had nothing ready {:?} after losing its network",
        start.elapsed()
    );
    // Long enough for a2 to reach `failed` on both (30 probes) and then some.
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        for j in 0..2 {
            let s = c.statuses(&c.worker_url(j)).await;
            assert_eq!(s[0].as_deref(), Some("ready"), "worker {j}: {s:?}");
            assert_eq!(s[1].as_deref(), Some("ready"), "worker {j}: {s:?}");
            assert!(s[2].is_some(), "worker {j} evicted: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &ids {
        assert!(c.apis[0].worker(id).await.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_reach_ready_everywhere_under_loss_and_latency() {
    if skip() {
        return;
    }
    let mut c = NsCluster::start(3, 3, &FAST).await;
    // 10% loss and 50 ms latency on every link with netem; on kernels without netem,
    // 10% loss on every host with iptables, and no added latency (reported).
    let applied = if c.lab.netem_available() {
        c.lab.impair_switch(&["loss", "10%", "delay", "50ms"]);
        "netem loss 10% delay 50ms on every switch port"
    } else {
        match c.lab.drop_randomly(10) {
            Ok(()) => {
                "10% random drop on every host (iptables); no latency: this kernel has no sch_netem"
            }
            Err(why) => {
                require::skip_or_fail(&format!("no netem and no iptables: {why}"));
                return;
            }
        }
    };
    let mut times = Vec::new();
    for j in 0..3 {
        let t0 = Instant::now();
        // The admin call itself may need retries under loss.
        c.apis[j % 3]
            .register(&json!({"url": c.worker_url(j)}))
            .await;
        eventually(
            "ready on every node under 10% loss, 50 ms delay",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || async {
                let s = c.statuses(&c.worker_url(j)).await;
                if s.iter().all(|x| x.as_deref() == Some("ready")) {
                    Ok(())
                } else {
                    Err(format!("{s:?}"))
                }
            },
        )
        .await;
        times.push(t0.elapsed());
    }
    times.sort();
    eprintln!("{applied}, 3 agents: registration -> ready on all in {times:?}");
    assert!(times[2] < Duration::from_secs(30), "{times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_into_one_view_with_every_deletion_applied() {
    if skip() {
        return;
    }
    let c = NsCluster::start(5, 6, &FAST).await;
    // Two workers known everywhere before the split.
    let before: Vec<String> = vec![
        id_of(&c.apis[0].register(&json!({"url": c.worker_url(0)})).await),
        id_of(&c.apis[0].register(&json!({"url": c.worker_url(1)})).await),
    ];
    eventually(
        "both known everywhere",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            for j in 0..2 {
                let s = c.statuses(&c.worker_url(j)).await;
                if !s.iter().all(|x| x.as_deref() == Some("ready")) {
                    return Err(format!("{j}: {s:?}"));
                }
            }
            Ok(())
        },
    )
    .await;
    // Split {a0,a1,a2} | {a3,a4}.
    let (left, right) = ([0usize, 1, 2], [3usize, 4]);
    for &l in &left {
        for &r in &right {
            c.lab
                .blackhole(&format!("a{l}"), &format!("{}/32", c.agent_ip(r)));
            c.lab
                .blackhole(&format!("a{r}"), &format!("{}/32", c.agent_ip(l)));
        }
    }
    let split = Instant::now();
    // Each side deletes one and registers one.
    c.apis[1]
        .delete(&format!("/v1/workers/{}", before[0]))
        .await;
    c.apis[4]
        .delete(&format!("/v1/workers/{}", before[1]))
        .await;
    c.apis[2].register(&json!({"url": c.worker_url(2)})).await;
    c.apis[3].register(&json!({"url": c.worker_url(3)})).await;
    // During the split each side serves its own verified set.
    eventually(
        "left side verified its new worker",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let s = c.statuses(&c.worker_url(2)).await;
            if left.iter().all(|&i| s[i].as_deref() == Some("ready")) {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    eventually(
        "right side verified its new worker",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let s = c.statuses(&c.worker_url(3)).await;
            if right.iter().all(|&i| s[i].as_deref() == Some("ready")) {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
    let remaining = Duration::from_secs(30).saturating_sub(split.elapsed());
    tokio::time::sleep(remaining).await;
    for &l in &left {
        for &r in &right {
            c.lab
                .unblackhole(&format!("a{l}"), &format!("{}/32", c.agent_ip(r)));
            c.lab
                .unblackhole(&format!("a{r}"), &format!("{}/32", c.agent_ip(l)));
        }
    }
    let healed = Instant::now();
    eventually(
        "one view: new workers everywhere, deleted ones nowhere",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            for (j, want) in [(0, None), (1, None), (2, Some("ready")), (3, Some("ready"))] {
                let s = c.statuses(&c.worker_url(j)).await;
                if !s.iter().all(|x| x.as_deref() == want) {
                    return Err(format!("worker {j}: {s:?}"));
                }
            }
            Ok(())
        },
    )
    .await;
    let converged = healed.elapsed();
    eprintln!("partition 3/2 for 30 s: converged {converged:?} after healing");
    // Nothing deleted comes back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for j in 0..2 {
        assert!(
            c.statuses(&c.worker_url(j))
                .await
                .iter()
                .all(Option::is_none),
            "worker {j} came back"
        );
    }
}
