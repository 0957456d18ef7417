//! A cluster member that publishes crafted records (SPEC S3, S11, issue 12): a rogue
//! gossip member, which has no `Node` behind it, writes registrations byte by byte
//! under its own keys, as a process holding a valid certificate could. The honest
//! nodes run real probes with an allowlist against local HTTP servers, so "never
//! probed" is checked on the sockets, not on the state machine.

mod sim;

use probemesh::registry::Origin;
use probemesh_gossip::keys;
use probemesh_gossip::model::validate::cases::RawRegistration;
use probemesh_gossip::model::{Registration, Status, WorkerId, WorkerSpec, WorkerUrl};
use sim::{Sim, SimNode, SimOptions, TestHttp};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

fn reg(url: &str, owner: &str, edit: impl FnOnce(&mut WorkerSpec)) -> Registration {
    let url = WorkerUrl::parse(url).unwrap();
    let mut spec = WorkerSpec::new(url.clone());
    edit(&mut spec);
    Registration {
        id: url.id(),
        generation: 1,
        owner: owner.into(),
        registered_at_ms: 1,
        revision: 1,
        spec,
    }
}

fn metric(n: &SimNode, line: &str) -> Option<f64> {
    let text = n.node.metrics().render(&n.node.registry().read());
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
}

fn rejected(n: &SimNode, reason: &str) -> Option<f64> {
    metric(
        n,
        &format!("probemesh_gossip_records_rejected_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_records_are_dropped_counted_once_and_never_probed() {
    // 127.0.0.2 is loopback too, but outside the allowlist: the "pwned" target.
    let pwned = TestHttp::start("127.0.0.2", 200).await;
    let always_503 = TestHttp::start("127.0.0.1", 503).await;
    let healthy = TestHttp::start("127.0.0.1", 200).await;
    let allow = vec![
        "10.0.0.0/8".parse().unwrap(),
        "127.0.0.1/32".parse().unwrap(),
    ];
    let sim = Sim::start(2, |_| SimOptions {
        allow: allow.clone(),
        real_probes: true,
        ..Default::default()
    })
    .await;
    let rogue = sim.rogue("rogue", 9).await;
    sim.until_all(PATIENCE, "membership", |n| {
        n.node.cluster().live_node_ids().count() == 3
    })
    .await;

    let p = pwned.addr.port();
    let w503 = always_503.addr.port();
    let ok = healthy.addr.port();
    // The smuggled path: under string concatenation this probed 127.0.0.2.
    let smuggled = reg("http://10.255.255.1:9", "rogue", |s| {
        s.health.path = Some(format!("@127.0.0.2:{p}/pwned"));
    });
    let zero_success = reg(&format!("http://127.0.0.1:{w503}/s0"), "rogue", |s| {
        s.health.success_threshold = Some(0);
    });
    let zero_interval = reg(&format!("http://127.0.0.1:{w503}/i0"), "rogue", |s| {
        s.health.interval_ms = Some(0);
    });
    let outside = reg(&format!("http://127.0.0.2:{p}"), "rogue", |_| {});
    let forged_owner = reg(&format!("http://127.0.0.1:{ok}/forged"), "node-00", |_| {});
    let control = reg(&format!("http://127.0.0.1:{ok}/control"), "rogue", |_| {});
    // A URL the model cannot hold (user information), written raw.
    let userinfo = reg(&format!("http://127.0.0.1:{ok}/ui"), "rogue", |_| {});
    let mut keys_out = Vec::new();
    for r in [
        &smuggled,
        &zero_success,
        &zero_interval,
        &outside,
        &forged_owner,
        &control,
    ] {
        keys_out.push((
            keys::reg_key(&r.id),
            Some(keys::encode_registration(r).unwrap()),
        ));
    }
    let raw = RawRegistration::new(&userinfo, &format!("http://u:p@127.0.0.2:{p}"));
    keys_out.push((
        keys::reg_key(&userinfo.id),
        Some(keys::encode_value(&raw).unwrap()),
    ));
    rogue.update_keys(keys_out).await;

    let dropped = [
        "health_path",
        "health_success_threshold",
        "health_interval",
        "decode",
    ];
    sim.until_all(
        PATIENCE,
        "valid rogue records imported, bad ones counted",
        |n| {
            n.status(&control.id).is_some()
                && n.status(&forged_owner.id).is_some()
                && dropped.iter().all(|r| rejected(n, r) == Some(1.0))
        },
    )
    .await;

    // Keep the rogue's state moving for a while: each change makes every honest node
    // decode its records again, and a record must still be counted (and logged) once.
    for i in 0..30 {
        rogue
            .update_keys(vec![("noise".into(), Some(i.to_string()))])
            .await;
        tokio::time::sleep(sim::INTERVAL).await;
    }
    sim.until_all(PATIENCE, "the control worker verified by own probes", |n| {
        n.status(&control.id) == Some(Status::Ready)
    })
    .await;

    let never: [(&str, &WorkerId); 5] = [
        ("smuggled path", &smuggled.id),
        ("success_threshold 0", &zero_success.id),
        ("interval 0", &zero_interval.id),
        ("outside the allowlist", &outside.id),
        ("user information", &userinfo.id),
    ];
    for n in sim.live() {
        for (what, id) in never {
            assert_eq!(n.status(id), None, "{}: {what} record in the view", n.name);
        }
        for reason in dropped {
            assert_eq!(rejected(n, reason), Some(1.0), "{}: {reason}", n.name);
        }
        let sync_rounds = n.node.metrics().sync_rounds();
        assert!(sync_rounds >= 10, "{}: only {sync_rounds} rounds", n.name);
        // The forged owner: imported as the advertiser's, never this node's own.
        let e = n.node.registry().get(&forged_owner.id).unwrap();
        assert_eq!(e.origin, Origin::Peer, "{}", n.name);
        if n.name == "node-00" {
            assert_eq!(e.reg.owner, "rogue");
            assert_eq!(
                metric(n, "probemesh_gossip_owner_claims_refused_total"),
                Some(1.0)
            );
        }
    }
    // node-00 advertises none of the rogue's records as its own.
    let own = sim.nodes[0].gossip.snapshot().await;
    let me = own.members.iter().find(|m| m.is_self).unwrap();
    assert_eq!(me.workers_owned, 0, "node-00 advertises {me:?}");

    assert_eq!(
        pwned.connections(),
        0,
        "a probe reached the smuggled target"
    );
    assert_eq!(always_503.requests_under("/s0"), 0);
    assert_eq!(always_503.requests_under("/i0"), 0);
    assert!(
        healthy.requests_under("/control") >= 4,
        "the honest probes ran"
    );
    rogue.abort();
    sim.stop().await;
}
