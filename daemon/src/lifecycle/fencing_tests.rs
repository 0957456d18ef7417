//! Table tests of the degraded rule and its hysteresis.

use super::*;
use chitchat::ChitchatId;
use probemesh_gossip::cluster::{DecodeCache, RawNode, RawState};
use probemesh_gossip::keys;
use probemesh_gossip::model::WorkerUrl;

fn wid(i: u16) -> WorkerId {
    WorkerUrl::parse(&format!("http://10.0.0.1:{}", 8000 + i))
        .unwrap()
        .id()
}

/// One peer: whether it says it is degraded, and its status of workers 0..n.
type PeerRow = (bool, Vec<Status>);

/// A snapshot with `peers` besides this node.
fn snapshot(peers: &[PeerRow]) -> ClusterSnapshot {
    let addr = |i: usize| std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16));
    let mut nodes = vec![RawNode::new(
        ChitchatId::new("me".to_string(), 1, addr(0)),
        1,
        true,
        true,
        Some(vec![]),
    )];
    for (k, (degraded, statuses)) in peers.iter().enumerate() {
        let mut kvs: Vec<(String, String)> = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| keys::single_verdict(&wid(i as u16), 1, *s, 1))
            .collect();
        if *degraded {
            kvs.push((keys::DEGRADED_KEY.into(), "its own fault".into()));
        }
        nodes.push(RawNode::new(
            ChitchatId::new(format!("peer-{k}"), 1, addr(k + 1)),
            1,
            false,
            true,
            Some(kvs),
        ));
    }
    ClusterSnapshot::from_raw(RawState::from_nodes(nodes), &mut DecodeCache::default())
}

fn assess_with(peers: &[PeerRow], failing_here: &[bool]) -> Assessment {
    let ids: Vec<WorkerId> = (0..failing_here.len() as u16).map(wid).collect();
    assess(
        &snapshot(peers),
        ids.iter().zip(failing_here).map(|(id, f)| LocalResult {
            id,
            generation: 1,
            failing: *f,
        }),
    )
}

use Status::{Failed, NotReady, Pending, Ready};

#[test]
fn failing_means_left_ready_or_never_got_there() {
    assert!(is_failing(NotReady, 0));
    assert!(is_failing(Failed, 0));
    assert!(is_failing(Pending, 1));
    assert!(!is_failing(Pending, 0));
    assert!(!is_failing(Ready, 0));
}

#[test]
fn the_assessment_counts_workers_most_healthy_peers_reach() {
    let all_ready = vec![Ready; 4];
    let table: Vec<(&str, Vec<PeerRow>, Vec<bool>, bool)> = vec![
        (
            "cut off while two peers reach everything",
            vec![(false, all_ready.clone()), (false, all_ready.clone())],
            vec![true; 4],
            true,
        ),
        (
            "whole-fleet outage: no peer reaches them either",
            vec![(false, vec![Failed; 4]), (false, vec![NotReady; 4])],
            vec![true; 4],
            false,
        ),
        (
            "half the workers unreachable here: below 0.8",
            vec![(false, all_ready.clone()), (false, all_ready.clone())],
            vec![true, true, false, false],
            false,
        ),
        (
            "two-node cluster: one witness cannot attribute a split",
            vec![(false, all_ready.clone())],
            vec![true; 4],
            false,
        ),
        (
            "a degraded peer is no witness",
            vec![(false, all_ready.clone()), (true, all_ready.clone())],
            vec![true; 4],
            false,
        ),
        (
            "one worker is not enough",
            vec![(false, vec![Ready]), (false, vec![Ready])],
            vec![true],
            false,
        ),
        (
            "only one of two witnesses reaches them: no majority",
            vec![(false, all_ready.clone()), (false, vec![Failed; 4])],
            vec![true; 4],
            false,
        ),
        (
            "two of three witnesses reach them: a majority",
            vec![
                (false, all_ready.clone()),
                (false, all_ready.clone()),
                (false, vec![Failed; 4]),
            ],
            vec![true; 4],
            true,
        ),
    ];
    for (case, peers, here, at_fault) in table {
        let a = assess_with(&peers, &here);
        assert_eq!(a.at_fault(0.8), at_fault, "{case}: {a:?}");
    }
    let a = assess_with(
        &[(false, all_ready.clone()), (false, all_ready)],
        &[true, true, true, false],
    );
    assert_eq!((a.witnesses, a.counted, a.failing.len()), (2, 4, 3));
    assert!(!a.at_fault(0.8), "3 of 4 is below 0.8");
    assert!(a.at_fault(0.75));
}

fn at_fault() -> Assessment {
    assess_with(
        &[(false, vec![Ready; 4]), (false, vec![Ready; 4])],
        &[true; 4],
    )
}

fn clear() -> Assessment {
    assess_with(
        &[(false, vec![Ready; 4]), (false, vec![Ready; 4])],
        &[false; 4],
    )
}

#[test]
fn the_fence_enters_after_the_wait_and_leaves_after_a_longer_one() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut f = Fence::default();
    assert_eq!(f.step(t0, 0.8, &at_fault(), false), None);
    assert_eq!(f.due(), Some(t0 + ENTER_AFTER));
    assert_eq!(f.step(t0 + s(4), 0.8, &at_fault(), false), None);
    let entered = f.step(t0 + ENTER_AFTER, 0.8, &at_fault(), false);
    assert!(matches!(
        entered,
        Some(Change::Entered(Cause::Unreachable(_)))
    ));
    let reason = f.degraded().unwrap().reason();
    assert!(reason.contains("fails 4 of the 4 workers"), "{reason}");
    // Clear for less than EXIT_AFTER, then at fault again: stays degraded.
    let t1 = t0 + s(10);
    assert_eq!(f.step(t1, 0.8, &clear(), false), None);
    assert_eq!(f.due(), Some(t1 + EXIT_AFTER));
    assert_eq!(f.step(t1 + s(20), 0.8, &at_fault(), false), None);
    assert!(f.degraded().is_some());
    // Clear for EXIT_AFTER: leaves.
    let t2 = t1 + s(21);
    assert_eq!(f.step(t2, 0.8, &clear(), false), None);
    assert_eq!(
        f.step(t2 + EXIT_AFTER, 0.8, &clear(), false),
        Some(Change::Left)
    );
    assert_eq!(f.degraded(), None);
    assert_eq!(f.due(), None);
}

#[test]
fn between_the_two_ratios_the_fence_keeps_its_state() {
    // 2 of 4 failing: below 0.8 (no entry) but not below 0.4 (no exit).
    let half = assess_with(
        &[(false, vec![Ready; 4]), (false, vec![Ready; 4])],
        &[true, true, false, false],
    );
    let t0 = Instant::now();
    let mut f = Fence::default();
    assert_eq!(f.step(t0, 0.8, &half, false), None);
    assert_eq!(f.due(), None, "not suspect");
    f.step(t0, 0.8, &at_fault(), false);
    f.step(t0 + ENTER_AFTER, 0.8, &at_fault(), false);
    assert!(f.degraded().is_some());
    for k in 1..20 {
        assert_eq!(
            f.step(t0 + ENTER_AFTER + EXIT_AFTER * k, 0.8, &half, false),
            None
        );
    }
    assert!(f.degraded().is_some(), "half failing never clears it");
}

#[test]
fn flapping_reachability_does_not_flap_the_fence() {
    let t0 = Instant::now();
    let mut f = Fence::default();
    let mut changes = 0;
    // Reachability flips every 10 s for 10 minutes.
    for k in 0..60u32 {
        let a = if k % 2 == 0 { at_fault() } else { clear() };
        for sub in 0..10u64 {
            let now = t0 + Duration::from_secs(u64::from(k) * 10 + sub);
            if f.step(now, 0.8, &a, false).is_some() {
                changes += 1;
            }
        }
    }
    assert_eq!(changes, 1, "entered once, never left while it flaps");
}

#[test]
fn local_faults_fence_at_once_and_release_at_once() {
    let t0 = Instant::now();
    let mut f = Fence::default();
    assert_eq!(
        f.step(t0, 0.8, &clear(), true),
        Some(Change::Entered(Cause::LocalResources))
    );
    assert_eq!(
        f.step(t0 + Duration::from_secs(1), 0.8, &clear(), true),
        None
    );
    assert_eq!(
        f.step(t0 + Duration::from_secs(2), 0.8, &clear(), false),
        Some(Change::Left)
    );
    // A single node (no witnesses) still fences on local faults (S13).
    let alone = assess_with(&[], &[true, true]);
    let mut f = Fence::default();
    assert!(f.step(t0, 0.8, &alone, true).is_some());
}

#[test]
fn a_ratio_of_zero_turns_fencing_off() {
    let t0 = Instant::now();
    let mut f = Fence::default();
    for k in 0..10 {
        assert_eq!(f.step(t0 + ENTER_AFTER * k, 0.0, &at_fault(), true), None);
    }
    assert_eq!(f.degraded(), None);
}
