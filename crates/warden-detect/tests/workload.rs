//! A generated workload: 200 principals over two weeks with daily patterns (over
//! 100 000 events, with reading bursts, typos at login, denials, and three principals
//! travelling to a network they never used), and scripted attacks. Benign traffic alone raises incidents for
//! fewer than 2 % of principals; every attack raises its incident with its severity,
//! on the event that crosses the threshold.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout
)]

mod generator;

use generator::{Ev, USERS, attacks, benign};
use std::collections::BTreeMap;
use warden_detect::{Config, Detector, Incident, Severity, Signal};

/// Runs the detector over `events` (sorted by time); returns each incident with the
/// attack of the event that raised it and the wall time `observe` took for it.
/// Each incident, the attack of the event that raised it, and the seconds `observe` took.
type Found = Vec<(Incident, Option<&'static str>, f64)>;

fn run(mut events: Vec<Ev>) -> (usize, Found) {
    events.sort_by_key(|e| e.time);
    let mut d = Detector::new(Config::default());
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let s = Signal {
            index: i as u64,
            time_micros: e.time,
            category: e.category,
            principal: e.principal.as_deref(),
            token: e.token.as_deref(),
            ip: Some(e.ip),
            model: Some(&e.model),
            version: Some(&e.version),
            file: Some(&e.file),
            reason: e.reason.as_deref(),
            count: 1,
            shape: None,
            bytes: None,
        };
        let t = std::time::Instant::now();
        let found = d.observe(&s);
        let took = t.elapsed().as_secs_f64();
        for inc in found {
            out.push((inc, e.attack, took));
        }
    }
    (events.len(), out)
}

#[test]
fn benign_traffic_raises_almost_nothing_and_every_attack_its_incident() {
    let benign = benign();
    let (n, found) = run(benign.clone());
    assert!(n >= 100_000, "{n} benign events");
    let flagged: std::collections::BTreeSet<String> = found
        .iter()
        .map(|(i, _, _)| i.principal.clone().or(i.ip.clone()).unwrap_or_default())
        .collect();
    let rate = flagged.len() as f64 / USERS as f64;
    println!(
        "benign: {n} events, {} incidents, {} of {USERS} principals flagged ({:.1} %): {:?}",
        found.len(),
        flagged.len(),
        rate * 100.0,
        found
            .iter()
            .map(|(i, _, _)| (&i.detector, &i.summary))
            .collect::<Vec<_>>()
    );
    assert!(rate < 0.02, "false-positive rate {rate}");
    // The only ones are the travellers: a new network looks like a stolen token.
    assert!(
        found.iter().all(|(i, _, _)| i.detector == "new_network"
            && i.ip.as_deref().is_some_and(|ip| ip.starts_with("100.64."))),
        "{found:?}"
    );

    let mut all = benign;
    all.extend(attacks());
    let (_, found) = run(all);
    let mut by_attack: BTreeMap<&str, Vec<&Incident>> = BTreeMap::new();
    for (inc, attack, took) in &found {
        if let Some(a) = attack {
            by_attack.entry(a).or_default().push(inc);
            assert!(*took < 1.0, "{a}: raised {took} s after its event");
        }
    }
    let expect = [
        ("credential_stuffing", "brute_force", Severity::High),
        ("enumeration", "enumeration", Severity::High),
        ("exfiltration", "exfiltration", Severity::High),
        // A new network alone is at most MEDIUM (travellers are normal).
        ("stolen_token", "new_network", Severity::Medium),
        ("tampered_artifact", "integrity", Severity::Critical),
    ];
    for (attack, detector, severity) in expect {
        let incs = by_attack.get(attack).map(Vec::as_slice).unwrap_or_default();
        let hit = incs
            .iter()
            .find(|i| i.detector == detector)
            .unwrap_or_else(|| panic!("{attack}: no {detector} incident; got {incs:?}"));
        assert_eq!(hit.severity, severity, "{attack}");
        assert!(!hit.evidence.is_empty(), "{attack}: evidence");
        match attack {
            // The playbook suspends the attacker's token, never the finder's.
            "stolen_token" | "enumeration" | "exfiltration" => {
                assert!(hit.token.is_some(), "{attack}: token to suspend");
            }
            "tampered_artifact" => {
                assert_eq!(hit.versions, vec![("m07".to_owned(), "2.0".to_owned())]);
                assert!(hit.token.is_none());
            }
            _ => {}
        }
        // One incident per attack, not one per request (cool-down).
        assert!(
            incs.iter().filter(|i| i.detector == detector).count() == 1,
            "{attack}: {incs:?}"
        );
    }
}
