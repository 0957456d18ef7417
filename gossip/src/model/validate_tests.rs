use super::cases::{Case, RawRegistration, cases, valid_registration};
use super::*;
use crate::codec;
use crate::model::{EvictionReason, Registration, Tombstone, WorkerUrl};

fn case_registration(c: &Case) -> Registration {
    let mut r = valid_registration();
    (c.apply)(&mut r);
    r
}

#[test]
fn every_case_is_accepted_or_refused_naming_its_field() {
    for c in cases().iter().filter(|c| c.raw_url.is_none()) {
        let got = registration(&case_registration(c)).map_err(|e| e.field());
        assert_eq!(got.err(), c.refused, "{}", c.name);
    }
}

#[test]
fn every_field_has_a_refused_case_and_every_rule_both_sides() {
    let all = cases();
    for field in Field::ALL {
        if field == Field::Writer || field == Field::DrainPeriod {
            continue; // tombstone and drain fields, tested below
        }
        assert!(
            all.iter().any(|c| c.refused == Some(field)),
            "no refused case for {field}"
        );
    }
    assert!(all.iter().filter(|c| c.refused.is_none()).count() >= 15);
}

#[test]
fn urls_that_the_model_cannot_hold_do_not_decode() {
    for c in cases().iter().filter(|c| c.raw_url.is_some()) {
        let raw = RawRegistration::new(&valid_registration(), c.raw_url.unwrap_or_default());
        let bytes = codec::encode(&raw).unwrap();
        assert!(
            codec::decode::<Registration>(&bytes).is_err(),
            "{}: decoded",
            c.name
        );
        assert_eq!(
            url(c.raw_url.unwrap_or_default()).unwrap_err().field(),
            Field::Url
        );
    }
    // The mirror type writes exactly what the model writes.
    let r = valid_registration();
    assert_eq!(
        codec::encode(&RawRegistration::new(&r, r.spec.url.as_str())).unwrap(),
        codec::encode(&r).unwrap()
    );
}

#[test]
fn messages_name_the_field_first_and_reasons_are_bounded_labels() {
    let mut r = valid_registration();
    r.spec.health.interval_ms = Some(99);
    let e = registration(&r).unwrap_err();
    assert_eq!(
        e.to_string(),
        "health.interval: 99ms is too short; the minimum is 100ms"
    );
    assert_eq!(e.reason(), "health_interval");
    let reasons: std::collections::HashSet<&str> = Field::ALL.iter().map(|f| f.reason()).collect();
    assert_eq!(reasons.len(), Field::ALL.len());
    for reason in reasons {
        assert!(
            reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{reason}"
        );
    }
}

#[test]
fn quoted_input_is_escaped_and_cut() {
    let hostile = format!("\u{1b}[31m{}", "x".repeat(10_000));
    let e = health_path(&hostile).unwrap_err();
    let msg = e.to_string();
    assert!(msg.len() < 300, "{} bytes", msg.len());
    assert!(!msg.contains('\u{1b}'), "{msg}");
    let e = node_id(Field::Owner, "a\nb").unwrap_err();
    assert!(!e.to_string().contains('\n'));
}

fn tomb() -> Tombstone {
    let url = WorkerUrl::parse("http://10.0.0.1:8000").unwrap();
    Tombstone {
        id: url.id(),
        url,
        generation: 1,
        reason: EvictionReason::Deleted,
        writer: "node-b".into(),
        deleted_at_ms: 1,
        expires_at_ms: 2,
    }
}

#[test]
fn tombstones_need_their_own_id_a_generation_and_a_valid_writer() {
    assert_eq!(tombstone(&tomb()), Ok(()));
    let mut t = tomb();
    t.id = WorkerUrl::parse("http://10.0.0.2:8000").unwrap().id();
    assert_eq!(tombstone(&t).unwrap_err().field(), Field::Id);
    let mut t = tomb();
    t.generation = 0;
    assert_eq!(tombstone(&t).unwrap_err().field(), Field::Generation);
    for bad in ["", "a b", &"w".repeat(MAX_NODE_ID_LEN + 1)] {
        let mut t = tomb();
        t.writer = bad.to_string();
        assert_eq!(tombstone(&t).unwrap_err().field(), Field::Writer, "{bad:?}");
    }
    let mut t = tomb();
    t.writer = "w".repeat(MAX_NODE_ID_LEN);
    assert_eq!(tombstone(&t), Ok(()));
}

#[test]
fn single_rules_on_both_sides_of_their_limits() {
    assert!(interval_ms(MIN_INTERVAL_MS).is_ok() && interval_ms(MIN_INTERVAL_MS - 1).is_err());
    assert!(interval_ms(MAX_INTERVAL_MS).is_ok() && interval_ms(MAX_INTERVAL_MS + 1).is_err());
    assert!(timeout_ms(MIN_TIMEOUT_MS).is_ok() && timeout_ms(MIN_TIMEOUT_MS - 1).is_err());
    assert!(timeout_ms(MAX_TIMEOUT_MS).is_ok() && timeout_ms(MAX_TIMEOUT_MS + 1).is_err());
    assert!(timeout_ms(u64::MAX).is_err() && interval_ms(u64::MAX).is_err());
    for f in [Field::HealthSuccessThreshold, Field::HealthFailureThreshold] {
        assert!(threshold(f, MIN_THRESHOLD).is_ok() && threshold(f, MIN_THRESHOLD - 1).is_err());
        assert!(threshold(f, MAX_THRESHOLD).is_ok() && threshold(f, MAX_THRESHOLD + 1).is_err());
        assert_eq!(threshold(f, 0).unwrap_err().field(), f);
    }
    assert!(cost(0.0).is_ok() && cost(f32::MAX).is_ok());
    assert!(cost(-f32::MIN_POSITIVE).is_err() && cost(f32::NEG_INFINITY).is_err());
    assert!(health_path("/").is_ok() && health_path("/health").is_ok());
    assert!(health_path("").is_err());
}

#[test]
fn drains_need_a_real_generation_a_writer_and_a_period_of_at_most_an_hour() {
    use crate::model::{Drain, MAX_DRAIN_MS};
    let r = valid_registration();
    let d = Drain {
        id: r.id.clone(),
        url: r.spec.url.clone(),
        generation: 1,
        writer: "node-a".into(),
        started_at_ms: 1_000,
        ends_at_ms: 1_000 + MAX_DRAIN_MS,
    };
    assert_eq!(super::drain(&d), Ok(()));
    let zero = Drain {
        ends_at_ms: 1_000,
        ..d.clone()
    };
    assert_eq!(super::drain(&zero), Ok(()));
    let field = |d: Drain| super::drain(&d).unwrap_err().field();
    assert_eq!(
        field(Drain {
            ends_at_ms: 1_001 + MAX_DRAIN_MS,
            ..d.clone()
        }),
        Field::DrainPeriod
    );
    assert_eq!(
        field(Drain {
            ends_at_ms: 999,
            ..d.clone()
        }),
        Field::DrainPeriod
    );
    assert_eq!(
        field(Drain {
            generation: 0,
            ..d.clone()
        }),
        Field::Generation
    );
    assert_eq!(
        field(Drain {
            writer: String::new(),
            ..d.clone()
        }),
        Field::Writer
    );
}
