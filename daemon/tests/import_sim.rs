//! The import rules (SPEC S2, S5, S6, S10 allowlist) on 20 nodes in one process over an
//! in-memory transport.

mod sim;

use probemesh::probe::check::ProbeResult;
use probemesh::registry::Origin;
use probemesh_gossip::model::Status;
use sim::{Sim, SimOptions, spec};
use std::time::Duration;

const N: usize = 20;
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_import_as_pending_and_only_local_probes_promote() {
    let allow_only_10: ipnet::IpNet = "10.0.0.0/8".parse().unwrap();
    let sim = Sim::start(N, |i| SimOptions {
        allow: if i == N - 1 {
            vec![allow_only_10]
        } else {
            vec![]
        },
        ..Default::default()
    })
    .await;
    sim.until_all(PATIENCE, "membership", |n| {
        n.node.cluster().live_node_ids().count() == N
    })
    .await;

    let (w, _) = sim.nodes[0]
        .node
        .register(spec("http://10.1.0.1:8000"))
        .await
        .unwrap();
    let id = w.reg.id.clone();
    sim.until_all(PATIENCE, "import", |n| n.status(&id).is_some())
        .await;
    for n in &sim.nodes[1..] {
        let e = n.node.registry().get(&id).unwrap();
        assert_eq!(
            e.status,
            Status::Pending,
            "{} imported as {:?}",
            n.name,
            e.status
        );
        assert_eq!(e.origin, Origin::Peer);
        assert_eq!(e.reg.owner, "node-00");
    }

    // The owner verifies the worker; every other node sees that verdict, and stays pending.
    sim.nodes[0].probe(&id, ProbeResult::Ok(200), 2);
    assert_eq!(sim.nodes[0].status(&id), Some(Status::Ready));
    sim.until_all(PATIENCE, "owner verdict visible", |n| {
        n.name == "node-00"
            || n.node
                .cluster()
                .verdicts_on(&id)
                .get("node-00")
                .is_some_and(|v| v.status == Status::Ready)
    })
    .await;
    for n in &sim.nodes[1..] {
        assert_eq!(
            n.status(&id),
            Some(Status::Pending),
            "{} took a peer's verdict",
            n.name
        );
    }

    // Only node 7's own probes make it ready there.
    sim.nodes[7].probe(&id, ProbeResult::Ok(200), 1);
    assert_eq!(sim.nodes[7].status(&id), Some(Status::Pending));
    sim.nodes[7].probe(&id, ProbeResult::Ok(200), 1);
    assert_eq!(sim.nodes[7].status(&id), Some(Status::Ready));
    let ready: Vec<&str> = sim
        .nodes
        .iter()
        .filter(|n| n.status(&id) == Some(Status::Ready))
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(ready, vec!["node-00", "node-07"]);

    // A worker outside node 19's allowlist never enters its view, elsewhere it does.
    let (outside, _) = sim.nodes[3]
        .node
        .register(spec("http://192.168.7.7:8000"))
        .await
        .unwrap();
    let oid = outside.reg.id.clone();
    sim.until_all(PATIENCE, "import of the second worker", |n| {
        n.name == "node-19" || n.status(&oid).is_some()
    })
    .await;
    assert!(sim.nodes[N - 1].status(&oid).is_none());
    assert!(
        sim.nodes[N - 1].status(&id).is_some(),
        "allowed worker is imported"
    );
    assert!(
        sim.nodes[N - 1]
            .node
            .register(spec("http://192.168.7.8:8000"))
            .await
            .is_err(),
        "and refused locally"
    );

    // A DELETE at any node removes the worker everywhere, also where it was ready.
    sim.nodes[11].node.delete(&id).await.unwrap();
    sim.until_all(PATIENCE, "tombstone applied", |n| n.status(&id).is_none())
        .await;
    sim.stop().await;
}
