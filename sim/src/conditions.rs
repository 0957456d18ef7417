//! Checking a scenario's [`Cond`] on the cluster: each condition is evaluated on every
//! running node it names (all running nodes by default) and reports, when it does not
//! hold, which nodes fail and what they show instead.

use crate::cluster::{Running, SimCluster, name};
use crate::scenario::Worker;
use crate::scenario::compile::MemberIs;
use crate::scenario::{Cond, Sel, WorkerStatus};
use probemesh_gossip::cluster::MemberState;

/// `Ok` when the condition holds, else what fails where.
pub fn check(cluster: &SimCluster, cond: &Cond) -> Result<(), String> {
    match cond {
        Cond::All(all) => {
            let failing: Vec<String> = all.iter().filter_map(|c| check(cluster, c).err()).collect();
            if failing.is_empty() {
                Ok(())
            } else {
                Err(failing.join("; "))
            }
        }
        Cond::Agree(sel) => agree(cluster, sel),
        Cond::NoResurrection => no_resurrection(cluster),
        other => per_node(cluster, other),
    }
}

/// A short description of `cond`, for traces and failures.
pub fn describe(cond: &Cond) -> String {
    let on = |s: &Sel| match s {
        Sel::All => "all".to_string(),
        Sel::Nodes(v) => format!("{v:?}"),
    };
    match cond {
        Cond::Status(w, s, sel) => {
            let s = match s {
                WorkerStatus::Is(s) => s.as_str().to_string(),
                WorkerStatus::Known => "known".into(),
                WorkerStatus::Gone => "gone".into(),
            };
            format!("{w} {s} on {}", on(sel))
        }
        Cond::MembersAlive(k, sel) => format!("{k} members alive on {}", on(sel)),
        Cond::Count(s, k, sel) => format!("{k} workers {s:?} on {}", on(sel)),
        Cond::Member(n, is, sel) => format!("{} {is:?} on {}", name(*n), on(sel)),
        Cond::Tombstone(w, g, sel) => format!("tombstone {w} (>= {g:?}) on {}", on(sel)),
        Cond::Advertised(w, by, label, sel) => format!(
            "{w} advertised by {}{} on {}",
            name(*by),
            label
                .as_ref()
                .map_or(String::new(), |(k, v)| format!(" with {k}={v}")),
            on(sel)
        ),
        Cond::Verdict(w, of, s, sel) => {
            format!("{}'s verdict on {w} {s} on {}", name(*of), on(sel))
        }
        Cond::Owner(w, n, sel) => format!("{w} owned by {} on {}", name(*n), on(sel)),
        Cond::Label(w, k, v, sel) => format!("{w} label {k}={v} on {}", on(sel)),
        Cond::Generation(w, g, sel) => format!("{w} generation {g} on {}", on(sel)),
        Cond::Verdicts(w, k, sel) => format!("{k} peer verdicts on {w} on {}", on(sel)),
        Cond::Agree(sel) => format!("views agree on {}", on(sel)),
        Cond::Degraded(n, sel) => format!("{} degraded on {}", name(*n), on(sel)),
        Cond::NoResurrection => "no tombstoned generation alive".into(),
        Cond::Not(inner) => format!("not ({})", describe(inner)),
        Cond::All(all) => all.iter().map(describe).collect::<Vec<_>>().join(" and "),
    }
}

fn selected<'a>(cluster: &'a SimCluster, sel: &Sel) -> Vec<(usize, &'a Running)> {
    cluster
        .running()
        .filter(|(i, _, _)| match sel {
            Sel::All => true,
            Sel::Nodes(v) => v.contains(i),
        })
        .map(|(i, _, r)| (i, r))
        .collect()
}

fn sel_of(cond: &Cond) -> &Sel {
    match cond {
        Cond::Status(_, _, s)
        | Cond::MembersAlive(_, s)
        | Cond::Count(_, _, s)
        | Cond::Member(_, _, s)
        | Cond::Tombstone(_, _, s)
        | Cond::Advertised(_, _, _, s)
        | Cond::Verdict(_, _, _, s)
        | Cond::Owner(_, _, s)
        | Cond::Label(_, _, _, s)
        | Cond::Generation(_, _, s)
        | Cond::Verdicts(_, _, s)
        | Cond::Degraded(_, s)
        | Cond::Agree(s) => s,
        Cond::Not(inner) => sel_of(inner),
        Cond::All(_) | Cond::NoResurrection => &Sel::All,
    }
}

fn per_node(cluster: &SimCluster, cond: &Cond) -> Result<(), String> {
    let mut failing = Vec::new();
    for (i, r) in selected(cluster, sel_of(cond)) {
        if let Err(saw) = on_node(r, cond) {
            failing.push(format!("{} ({saw})", name(i)));
        }
    }
    if failing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: fails on {}",
            describe(cond),
            failing.join(", ")
        ))
    }
}

fn status_text(r: &Running, w: &Worker) -> String {
    r.node.registry().get(&w.id).map_or("gone".into(), |e| {
        format!("{}#{}", e.status, e.reg.generation)
    })
}

fn on_node(r: &Running, cond: &Cond) -> Result<(), String> {
    let node = &r.node;
    let ok = |b: bool, saw: String| if b { Ok(()) } else { Err(saw) };
    match cond {
        Cond::Status(w, want, _) => {
            let e = node.registry().get(&w.id);
            let holds = match want {
                WorkerStatus::Is(s) => e.as_ref().is_some_and(|e| e.status == *s),
                WorkerStatus::Known => e.is_some(),
                WorkerStatus::Gone => e.is_none(),
            };
            ok(holds, status_text(r, w))
        }
        Cond::Count(want, k, _) => {
            let view = node.registry().read();
            let n = match want {
                WorkerStatus::Is(s) => view.workers.values().filter(|e| e.status == *s).count(),
                WorkerStatus::Known | WorkerStatus::Gone => view.workers.len(),
            };
            ok(n == *k, format!("{n}"))
        }
        Cond::MembersAlive(k, _) => {
            let n = node.cluster().live_node_ids().count();
            ok(n == *k, format!("{n} alive"))
        }
        Cond::Member(m, is, _) => {
            let snap = node.cluster();
            let who = name(*m);
            let row = snap.members.iter().find(|x| x.node_id == who);
            let holds = match (is, row) {
                (MemberIs::Alive, Some(x)) => x.state == MemberState::Alive,
                (MemberIs::Dead, Some(x)) => x.state == MemberState::Dead,
                (MemberIs::Forgotten, None) => true,
                _ => false,
            };
            ok(
                holds,
                row.map_or("not listed".into(), |x| x.state.as_str().into()),
            )
        }
        Cond::Tombstone(w, g, _) => {
            let held = node.stored_tombstone_generation(&w.id);
            ok(
                held.is_some_and(|h| g.is_none_or(|g| h >= g)),
                format!("tombstone {held:?}"),
            )
        }
        Cond::Advertised(w, by, label, _) => {
            let snap = node.cluster();
            let adv = snap.registrations.get(&w.id);
            let by_now = adv.map(|a| a.by.as_str());
            let labelled = label
                .as_ref()
                .is_none_or(|(k, v)| adv.is_some_and(|a| a.reg.spec.labels.get(k) == Some(v)));
            ok(
                by_now == Some(name(*by).as_str()) && labelled,
                format!(
                    "advertised by {by_now:?}, labels {:?}",
                    adv.map(|a| &a.reg.spec.labels)
                ),
            )
        }
        Cond::Verdict(w, of, s, _) => {
            let snap = node.cluster();
            let v = snap
                .verdicts_on(&w.id)
                .get(name(*of).as_str())
                .map(|v| v.status);
            ok(v == Some(*s), format!("verdict {v:?}"))
        }
        Cond::Owner(w, n, _) => {
            let owner = node.registry().get(&w.id).map(|e| e.reg.owner);
            ok(
                owner.as_deref() == Some(name(*n).as_str()),
                format!("owner {owner:?}"),
            )
        }
        Cond::Label(w, k, v, _) => {
            let got = node
                .registry()
                .get(&w.id)
                .and_then(|e| e.reg.spec.labels.get(k).cloned());
            ok(got.as_deref() == Some(v.as_str()), format!("label {got:?}"))
        }
        Cond::Generation(w, g, _) => {
            let got = node.registry().get(&w.id).map(|e| e.reg.generation);
            ok(got == Some(*g), format!("generation {got:?}"))
        }
        Cond::Verdicts(w, k, _) => {
            let n = node.cluster().verdicts_on(&w.id).len();
            ok(n == *k, format!("{n} verdicts"))
        }
        Cond::Degraded(n, _) => {
            let who = name(*n);
            let degraded = if node.node_id() == who {
                node.degraded().is_some()
            } else {
                node.cluster()
                    .members
                    .iter()
                    .any(|m| m.node_id == who && m.degraded.is_some())
            };
            ok(degraded, "not degraded".into())
        }
        Cond::Not(inner) => match on_node(r, inner) {
            Ok(()) => Err("holds".into()),
            Err(_) => Ok(()),
        },
        Cond::All(_) | Cond::Agree(_) | Cond::NoResurrection => Ok(()),
    }
}

/// Every selected node holds the same (worker, generation) pairs.
fn agree(cluster: &SimCluster, sel: &Sel) -> Result<(), String> {
    let views: Vec<(usize, Vec<(String, u64)>)> = selected(cluster, sel)
        .into_iter()
        .map(|(i, r)| {
            let v = r
                .node
                .registry()
                .read()
                .workers
                .values()
                .map(|e| (e.reg.spec.url.to_string(), e.reg.generation))
                .collect();
            (i, v)
        })
        .collect();
    let Some((first, reference)) = views.first() else {
        return Ok(());
    };
    let differ: Vec<String> = views
        .iter()
        .filter(|(_, v)| v != reference)
        .map(|(i, v)| format!("{} holds {v:?}", name(*i)))
        .collect();
    if differ.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "views differ: {} holds {reference:?}; {}",
            name(*first),
            differ.join("; ")
        ))
    }
}

/// No running node holds a generation that some running node holds a tombstone for.
fn no_resurrection(cluster: &SimCluster) -> Result<(), String> {
    let mut bad = Vec::new();
    for (i, _, r) in cluster.running() {
        for e in r.node.registry().read().workers.values() {
            let dead = cluster
                .running()
                .filter_map(|(_, _, o)| o.node.stored_tombstone_generation(&e.reg.id))
                .max();
            if dead.is_some_and(|g| g >= e.reg.generation) {
                bad.push(format!(
                    "{} holds {}#{} (tombstoned up to {dead:?})",
                    name(i),
                    e.reg.spec.url,
                    e.reg.generation
                ));
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("resurrected: {}", bad.join(", ")))
    }
}
