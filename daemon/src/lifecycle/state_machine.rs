//! The per-node, per-worker state machine of SPEC S3, as a pure function.

use probemesh_gossip::model::Status;

/// The thresholds that drive the state machine for one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive successes to become ready (from pending or not_ready).
    pub success: u32,
    /// Consecutive failures to leave ready. Also scales the pending cap
    /// (`10 ×`) and the not_ready give-up (`3 ×`).
    pub failure: u32,
}

impl Thresholds {
    /// Probes a worker may take while pending before it is declared failed.
    pub fn pending_cap(self) -> u32 {
        self.failure.saturating_mul(10)
    }

    /// Further consecutive failures that turn not_ready into failed.
    pub fn not_ready_cap(self) -> u32 {
        self.failure.saturating_mul(3)
    }
}

/// Counters carried between probes. Reset on every status change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successes since the last failure or status change.
    pub consecutive_successes: u32,
    /// Failures since the last success or status change.
    pub consecutive_failures: u32,
    /// Probes made while pending (successes count too).
    pub pending_probes: u32,
}

/// What one probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer within the timeout.
    Success,
    /// Anything else.
    Failure,
}

/// The state after one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Status after the probe.
    pub status: Status,
    /// Counters after the probe.
    pub counters: Counters,
    /// `Some((from, to))` when the status changed.
    pub transition: Option<(Status, Status)>,
}

/// The status a worker starts in on a node: `ready` when its health checks are
/// disabled, else `pending` (SPEC S1, S2).
pub fn initial_status(health_disabled: bool) -> Status {
    if health_disabled {
        Status::Ready
    } else {
        Status::Pending
    }
}

/// Applies one probe outcome. `failed` is terminal: it absorbs every outcome.
///
/// A threshold of 0 counts as 1: with 0, a worker whose probe just failed would still
/// have "0 consecutive successes >= 0" and go ready. Settings are validated long before
/// this, so that is a last wall, not a rule anyone relies on (SPEC S11).
pub fn apply(status: Status, counters: Counters, outcome: Outcome, t: Thresholds) -> Step {
    let t = Thresholds {
        success: t.success.max(1),
        failure: t.failure.max(1),
    };
    let mut c = counters;
    match outcome {
        Outcome::Success => {
            c.consecutive_successes = c.consecutive_successes.saturating_add(1);
            c.consecutive_failures = 0;
        }
        Outcome::Failure => {
            c.consecutive_failures = c.consecutive_failures.saturating_add(1);
            c.consecutive_successes = 0;
        }
    }
    let next = match status {
        Status::Pending => {
            c.pending_probes = c.pending_probes.saturating_add(1);
            // Promotion is checked first: a worker whose last allowed probe completes
            // the success run has proven itself.
            if c.consecutive_successes >= t.success {
                Status::Ready
            } else if c.pending_probes >= t.pending_cap() {
                Status::Failed
            } else {
                Status::Pending
            }
        }
        Status::Ready if c.consecutive_failures >= t.failure => Status::NotReady,
        Status::Ready => Status::Ready,
        Status::NotReady if c.consecutive_successes >= t.success => Status::Ready,
        Status::NotReady if c.consecutive_failures >= t.not_ready_cap() => Status::Failed,
        Status::NotReady => Status::NotReady,
        // Probes of a draining worker go on (their counters and results are shown)
        // but never change its status (SPEC S14).
        Status::Draining => Status::Draining,
        Status::Failed => {
            return Step {
                status,
                counters,
                transition: None,
            };
        }
    };
    if next == status {
        Step {
            status,
            counters: c,
            transition: None,
        }
    } else {
        Step {
            status: next,
            counters: Counters::default(),
            transition: Some((status, next)),
        }
    }
}

/// The status change a spec change causes (SPEC S9: a PATCH keeps the status), if
/// any: disabling health checks makes a worker `ready` (the operator vouches for it);
/// re-enabling them makes it `pending`, since it was ready only because checks were
/// off and this node has verified nothing yet. Returns the new status and the reason.
pub fn on_spec_change(
    status: Status,
    was_disabled: bool,
    now_disabled: bool,
) -> Option<(Status, &'static str)> {
    if now_disabled && status != Status::Ready {
        Some((Status::Ready, "health_disabled"))
    } else if was_disabled && !now_disabled {
        Some((Status::Pending, "health_enabled"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::{Failure as F, Success as S};
    use Status::*;

    const T: Thresholds = Thresholds {
        success: 2,
        failure: 3,
    };

    /// Runs `outcomes` from `start` and returns every status seen after each probe.
    fn run(start: Status, outcomes: &[Outcome], t: Thresholds) -> Vec<Status> {
        let mut status = start;
        let mut c = Counters::default();
        outcomes
            .iter()
            .map(|&o| {
                let step = apply(status, c, o, t);
                status = step.status;
                c = step.counters;
                status
            })
            .collect()
    }

    fn last(start: Status, outcomes: &[Outcome]) -> Status {
        *run(start, outcomes, T).last().unwrap()
    }

    #[test]
    fn transition_table() {
        // (start, probe outcomes, final status)
        let table: &[(Status, &[Outcome], Status)] = &[
            (Pending, &[S], Pending),
            (Pending, &[S, S], Ready),
            (Pending, &[F, S, S], Ready),
            (Pending, &[S, F, S], Pending),
            (Pending, &[F, F, F], Pending),
            (Ready, &[F], Ready),
            (Ready, &[F, F], Ready),
            (Ready, &[F, F, F], NotReady),
            (Ready, &[F, F, S, F, F], Ready),
            (Ready, &[S, S, S], Ready),
            (NotReady, &[S], NotReady),
            (NotReady, &[S, S], Ready),
            (NotReady, &[F; 8], NotReady),
            (NotReady, &[F; 9], Failed),
            (NotReady, &[F, F, F, F, S, F, F, F, F, F, F, F, F], NotReady),
            (Failed, &[S, S, S, S], Failed),
            (Failed, &[F], Failed),
        ];
        for (start, outcomes, want) in table {
            assert_eq!(last(*start, outcomes), *want, "{start:?} then {outcomes:?}");
        }
    }

    #[test]
    fn full_lifecycle_with_default_thresholds() {
        // pending -> ready after 2, ready -> not_ready after 3, not_ready -> failed after 9 more.
        let mut outcomes = vec![S, S];
        outcomes.extend([F; 3]);
        outcomes.extend([F; 9]);
        let seen = run(Pending, &outcomes, T);
        assert_eq!(seen[0], Pending);
        assert_eq!(seen[1], Ready);
        assert_eq!(seen[3], Ready);
        assert_eq!(seen[4], NotReady);
        assert_eq!(seen[12], NotReady);
        assert_eq!(seen[13], Failed);
    }

    #[test]
    fn pending_cap_counts_successes_so_flapping_fails_after_30_and_is_never_ready() {
        let flapping: Vec<Outcome> = (0..40).map(|i| if i % 2 == 0 { S } else { F }).collect();
        let seen = run(Pending, &flapping, T);
        assert!(!seen.contains(&Ready));
        assert_eq!(seen[28], Pending, "29th probe still pending");
        assert_eq!(seen[29], Failed, "30th probe fails it");
        assert!(seen[29..].iter().all(|s| *s == Failed));
    }

    #[test]
    fn pending_cap_scales_with_failure_threshold() {
        let t = Thresholds {
            success: 2,
            failure: 1,
        };
        let seen = run(Pending, &[F; 10], t);
        assert_eq!(seen[8], Pending);
        assert_eq!(seen[9], Failed);
    }

    #[test]
    fn promotion_on_the_last_allowed_probe_wins_over_the_cap() {
        let mut outcomes = vec![F; 28];
        outcomes.extend([S, S]);
        assert_eq!(last(Pending, &outcomes), Ready);
    }

    #[test]
    fn transitions_report_from_to_and_reset_counters() {
        let c = Counters {
            consecutive_successes: 1,
            consecutive_failures: 0,
            pending_probes: 5,
        };
        let step = apply(Pending, c, S, T);
        assert_eq!(step.transition, Some((Pending, Ready)));
        assert_eq!(step.counters, Counters::default());

        let step = apply(Ready, Counters::default(), F, T);
        assert_eq!(step.transition, None);
        assert_eq!(step.counters.consecutive_failures, 1);
        assert_eq!(
            step.counters.pending_probes, 0,
            "only pending counts pending probes"
        );
    }

    #[test]
    fn threshold_of_one_promotes_and_demotes_at_once() {
        let t = Thresholds {
            success: 1,
            failure: 1,
        };
        assert_eq!(run(Pending, &[S], t), vec![Ready]);
        assert_eq!(run(Ready, &[F], t), vec![NotReady]);
        assert_eq!(
            run(NotReady, &[F, F, F], t),
            vec![NotReady, NotReady, Failed]
        );
    }

    #[test]
    fn zero_thresholds_never_make_a_failing_worker_ready() {
        let zero = Thresholds {
            success: 0,
            failure: 0,
        };
        let after = run(Status::Pending, &[Outcome::Failure; 5], zero);
        assert!(!after.contains(&Status::Ready), "{after:?}");
        assert_eq!(after.last(), Some(&Status::Pending));
        let s = apply(Status::Pending, Counters::default(), Outcome::Success, zero);
        assert_eq!(
            s.status,
            Status::Ready,
            "one real success is needed, and enough"
        );
    }

    #[test]
    fn disabled_health_checks_start_ready() {
        assert_eq!(initial_status(true), Ready);
        assert_eq!(initial_status(false), Pending);
    }

    #[test]
    fn failed_keeps_counters_untouched() {
        let c = Counters {
            consecutive_successes: 0,
            consecutive_failures: 9,
            pending_probes: 0,
        };
        assert_eq!(apply(Failed, c, S, T).counters, c);
    }

    #[test]
    fn disabling_checks_makes_ready_and_enabling_them_makes_pending() {
        use Status::*;
        assert_eq!(
            on_spec_change(Pending, false, true),
            Some((Ready, "health_disabled"))
        );
        assert_eq!(
            on_spec_change(Failed, false, true),
            Some((Ready, "health_disabled"))
        );
        assert_eq!(on_spec_change(Ready, false, true), None);
        assert_eq!(
            on_spec_change(Ready, true, false),
            Some((Pending, "health_enabled"))
        );
        assert_eq!(on_spec_change(NotReady, false, false), None);
        assert_eq!(on_spec_change(Ready, true, true), None);
    }
}
