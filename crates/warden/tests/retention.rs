//! Segments and retention with an injected clock: the ledger rolls over by UTC day,
//! `jq` reads each segment, proofs span segments, retention removes only the sealed
//! segments past it, what remains verifies, and the removal is in the ledger. Removing
//! a segment any other way is detected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;
use warden_core::merkle::{leaf_hash, verify_inclusion};
use warden_core::time::Timestamp;
use warden_core::verify::VerifyConfig;
use warden_store::keys;
use warden_store::ledger::{Clock as _, ManualClock};
use warden_store::segments::{SegmentRecord, load_index, segment_path};

const HOUR: u64 = 3_600_000_000;
const DAY: u64 = 24 * HOUR;
const DAYS: u64 = 40;
const KEEP_DAYS: u64 = 30;

fn vcfg(fx: &Fixture) -> VerifyConfig {
    VerifyConfig {
        root: keys::read_root_public(&fx.root_pub).unwrap(),
        max_epoch_micros: HOUR,
        auditor: None,
    }
}

fn ts(micros: u64) -> Timestamp {
    Timestamp::from_micros(micros).unwrap()
}

/// A ledger written over `DAYS` days of injected time, one access entry an hour
/// (each hour also rotates the keys), still open at the end, with its clock.
fn forty_days() -> (Fixture, warden_store::ledger::Ledger, ManualClock) {
    let fx = build(0, 3600, 1);
    let clock = ManualClock::new(T0 + 1_000_000);
    let ledger = open_with(
        &fx.root_key,
        &fx.dir.path().join("aud.key.pub"),
        &fx.log,
        3600,
        clock.clone(),
        false,
        RecordingEntropy::default(),
    );
    for i in 0..DAYS * 24 {
        ledger.append("model.access", &event(i)).unwrap();
        clock.advance(HOUR);
    }
    (fx, ledger, clock)
}

fn jq_indices(path: &std::path::Path) -> Vec<u64> {
    let out = Command::new("jq").arg(".index").arg(path).output().unwrap();
    assert!(out.status.success(), "jq reads {}", path.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn retention_removes_only_sealed_segments_past_it_and_the_rest_verifies() {
    let (fx, ledger, clock) = forty_days();
    let before = all_lines(&fx.log);
    let index = load_index(&fx.log).unwrap();
    // Daily segments: one per UTC day touched, each holding one day, read by jq alone.
    assert!(index.len() as u64 >= DAYS - 1, "{} segments", index.len());
    let mut next = 0;
    for rec in &index {
        let (a, b) = (&rec.first_time[..10], &rec.last_time[..10]);
        assert_eq!(a, b, "segment {} holds one UTC day", rec.file);
        let got = jq_indices(&segment_path(&fx.log, rec));
        let want: Vec<u64> = (rec.first..rec.end).collect();
        assert_eq!(got, want, "jq reads segment {} on its own", rec.file);
        assert_eq!(rec.first, next);
        next = rec.end;
    }
    assert_eq!(jq_indices(&fx.log).first().copied(), Some(next));

    // A dry run removes nothing.
    let now = clock.now().as_micros();
    let (plan, receipt) = ledger
        .apply_retention(KEEP_DAYS * 86_400, None, vcfg(&fx), true)
        .unwrap()
        .unwrap();
    assert!(receipt.is_none());
    assert!(segment_path(&fx.log, &plan.segments[0]).exists());

    // For real: exactly the sealed segments whose last entry is older than 30 days.
    let (plan, receipt) = ledger
        .apply_retention(KEEP_DAYS * 86_400, None, vcfg(&fx), false)
        .unwrap()
        .unwrap();
    let receipt = receipt.unwrap();
    let cutoff = now - KEEP_DAYS * DAY;
    let expired: Vec<&SegmentRecord> = index
        .iter()
        .filter(|r| {
            Timestamp::parse(r.last_time.as_bytes())
                .unwrap()
                .as_micros()
                < cutoff
        })
        .collect();
    assert!(expired.len() >= 9, "{} expired", expired.len());
    assert_eq!(
        plan.segments.iter().map(|s| &s.file).collect::<Vec<_>>(),
        expired.iter().map(|s| &s.file).collect::<Vec<_>>()
    );
    for rec in &index {
        let gone = plan.segments.iter().any(|s| s.segment == rec.segment);
        assert_eq!(
            !segment_path(&fx.log, rec).exists(),
            gone,
            "segment {} removed iff past retention",
            rec.file
        );
    }
    assert!(fx.log.exists());
    assert!(fx.cps.exists(), "checkpoints are kept");
    // Nothing more to remove now; later entries still append.
    assert!(
        ledger
            .apply_retention(KEEP_DAYS * 86_400, None, vcfg(&fx), false)
            .unwrap()
            .is_none()
    );
    clock.advance(HOUR);
    ledger.append("model.access", &event(99_999)).unwrap();
    ledger.close();

    // What remains verifies (with decryption), from the removal's saved state.
    let v = verify(&fx, 3600, &["--auditor-key", fx.auditor.to_str().unwrap()]);
    assert_eq!(v.code, 0, "{:?}", v.findings());
    assert_eq!(v.json["removed_by_retention"], plan.end);

    trusted_checkpoints_older_than_the_removed_prefix_are_checked_by_the_kept_leaves(&fx, plan.end);

    // The removal is in the ledger: what went, and the signed root at its end.
    let sk = keys::read_recipient_secret(&fx.auditor).unwrap();
    let (found, _) = warden_store::audit::read_entries(
        &fx.log,
        Some(&sk),
        &warden_store::audit::EntryFilter {
            kind: Some("retention.delete".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].index, receipt.index);
    let d = &found[0].event.as_ref().unwrap()["details"];
    assert_eq!(d["tree_size"], plan.end);
    assert_eq!(d["entries"], plan.end);
    let files: Vec<&str> = d["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        plan.segments
            .iter()
            .map(|s| s.file.as_str())
            .collect::<Vec<_>>()
    );

    // Proofs span segments, removed ones included (by the kept leaf hashes).
    for i in [0, plan.end - 1, plan.end, receipt.index] {
        let p = warden_store::audit::inclusion(&fx.log, i).unwrap();
        let cp = warden_core::checkpoint::Checkpoint::from_text(p.checkpoint.text()).unwrap();
        let leaf = leaf_hash(&before.get(i as usize).cloned().unwrap_or_else(|| {
            p.extra
                .clone()
                .expect("a present entry's proof carries its line")
        }));
        verify_inclusion(&leaf, i, cp.size, &p.hashes, &cp.root).unwrap();
        assert_eq!(p.extra.is_some(), i >= plan.end, "entry {i}'s line");
    }
}

#[test]
fn removing_a_segment_outside_retention_is_detected() {
    let (fx, ledger, clock) = forty_days();
    let recorded = ledger
        .apply_retention(KEEP_DAYS * 86_400, None, vcfg(&fx), false)
        .unwrap()
        .unwrap()
        .1
        .unwrap()
        .index;
    ledger.close();
    let _ = clock;
    let index = load_index(&fx.log).unwrap();
    let victim = index.iter().find(|r| r.removed.is_none()).unwrap().clone();

    // Deleting the next sealed segment: verification refuses.
    let path = segment_path(&fx.log, &victim);
    let saved = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["verify", "--log"])
        .arg(&fx.log)
        .arg("--root-pub")
        .arg(&fx.root_pub)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&victim.file), "names the segment: {err}");
    std::fs::write(&path, &saved).unwrap();
    assert_eq!(verify(&fx, 3600, &[]).code, 0, "restored, it verifies");

    // Marking it removed in the index (with a genuine verification state) without a
    // retention.delete entry recording it: reported.
    let resume = warden_store::retention::plan(
        &fx.log,
        0,
        ts(Timestamp::parse(victim.last_time.as_bytes())
            .unwrap()
            .as_micros()
            + 1),
        Some(victim.end),
        vcfg(&fx),
    )
    .unwrap()
    .unwrap()
    .resume
    .unwrap();
    let original = std::fs::read_to_string(warden_store::segments::index_path(&fx.log)).unwrap();
    let mark_removed = |entry: u64| {
        let mut out = String::new();
        for line in original.lines() {
            let mut v: Value = serde_json::from_str(line).unwrap();
            if v["segment"] == victim.segment {
                v["removed"] = serde_json::json!({
                    "at": "2025-08-01T00:00:00.000000Z", "entry": entry,
                    "resume": serde_json::to_value(&resume).unwrap(),
                });
            } else if v.get("removed").is_some() {
                v["removed"]["resume"] = Value::Null;
                v["removed"].as_object_mut().unwrap().remove("resume");
            }
            out.push_str(&v.to_string());
            out.push('\n');
        }
        std::fs::write(warden_store::segments::index_path(&fx.log), out).unwrap();
    };
    // Points at an access entry after it, not at a retention.delete entry.
    mark_removed(victim.end + 1);
    std::fs::remove_file(&path).unwrap();
    let v = verify(&fx, 3600, &[]);
    assert_eq!(v.code, 1);
    assert!(
        v.has_code("removal_not_recorded", victim.end),
        "{:?}",
        v.findings()
    );

    // A forged record: the earlier, genuine retention.delete entry, claimed to record
    // this removal too. Its kind and place pass; its details (read with an auditor
    // key) name another range and root.
    mark_removed(recorded);
    let v = verify(&fx, 3600, &[]);
    assert_eq!(
        v.code,
        0,
        "without an auditor key the details are unread: {:?}",
        v.findings()
    );
    let v = verify(&fx, 3600, &["--auditor-key", fx.auditor.to_str().unwrap()]);
    assert_eq!(v.code, 1);
    assert!(
        v.has_code("removal_not_recorded", recorded),
        "{:?}",
        v.findings()
    );
    let why = &v.findings()[0].3;
    assert!(
        why.contains(&format!("entries 0..{} were removed", victim.end)),
        "{why}"
    );
}

#[test]
fn sealing_interrupted_before_the_rename_is_finished_on_open() {
    let fx = build(0, 3600, 1);
    let clock = ManualClock::new(T0 + 1_000_000);
    let aud = fx.dir.path().join("aud.key.pub");
    let open = |c: &ManualClock| {
        open_with(
            &fx.root_key,
            &aud,
            &fx.log,
            3600,
            c.clone(),
            false,
            RecordingEntropy::default(),
        )
    };
    let ledger = open(&clock);
    for i in 0..30 {
        ledger.append("model.access", &event(i)).unwrap();
        clock.advance(HOUR);
    }
    ledger.close();
    let index = load_index(&fx.log).unwrap();
    assert_eq!(
        index.len(),
        1,
        "30 hours from 15:06 UTC cross one day boundary"
    );
    let last = index.last().unwrap().clone();
    // The files as they were when the writer died after writing the index naming the
    // last segment and before renaming the active file to it: the checkpoints end at
    // the segment's end and the active file is the segment.
    let seg = segment_path(&fx.log, &last);
    let cps = std::fs::read(&fx.cps).unwrap();
    std::fs::write(&fx.cps, &cps[..last.checkpoints_offset as usize]).unwrap();
    std::fs::remove_file(&fx.log).unwrap();
    std::fs::rename(&seg, &fx.log).unwrap();
    // Readers see the whole log meanwhile.
    assert_eq!(all_lines(&fx.log).len() as u64, last.end);
    assert_eq!(
        warden_store::ledger::read_leaves(&fx.log)
            .unwrap()
            .leaves
            .len() as u64,
        last.end
    );
    let ledger = open(&clock);
    assert!(seg.exists(), "opening finishes the rename");
    assert_eq!(jq_indices(&seg), (last.first..last.end).collect::<Vec<_>>());
    ledger.append("model.access", &event(1000)).unwrap();
    ledger.close();
    assert_eq!(verify(&fx, 3600, &[]).code, 0);
}

/// The command a user runs: `warden log retention` on a data directory, against the
/// system clock (the ledger's injected times are over a year old).
#[test]
fn log_retention_command_on_a_data_directory() {
    let (fx, ledger, _clock) = forty_days();
    ledger.close();
    // Lay the fixture out as a data directory.
    let d = fx.dir.path();
    std::fs::create_dir_all(d.join("keys")).unwrap();
    std::fs::create_dir_all(d.join("auditors")).unwrap();
    std::fs::copy(&fx.root_key, d.join("keys/root.key")).unwrap();
    std::fs::copy(&fx.root_pub, d.join("keys/root.pub")).unwrap();
    std::fs::copy(d.join("aud.key.pub"), d.join("auditors/aud.pub")).unwrap();
    std::fs::write(
        d.join("warden.toml"),
        format!("origin = \"{ORIGIN}\"\nrotation_interval_secs = 3600\n"),
    )
    .unwrap();
    let warden = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(args)
            .arg("--data-dir")
            .arg(d)
            .env("WARDEN_PASSPHRASE", "")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let sealed = load_index(&fx.log).unwrap();
    let dry = warden(&["log", "retention", "--dry-run", "--json"]);
    assert_eq!(dry["removed"], false);
    // Opening the ledger today sealed the last active file too: every segment is over
    // a year old.
    let all = load_index(&fx.log).unwrap();
    assert_eq!(all.len(), sealed.len() + 1);
    assert_eq!(
        dry["details"]["segments"].as_array().unwrap().len(),
        all.len()
    );
    assert!(all.iter().all(|r| segment_path(&fx.log, r).exists()));
    let done = warden(&["log", "retention", "--json"]);
    assert_eq!(done["removed"], true);
    let end = all.last().unwrap().end;
    assert_eq!(done["details"]["tree_size"], end);
    let segs = warden(&["log", "segments", "--json"]);
    let statuses: Vec<&str> = segs["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert!(statuses.iter().all(|s| *s == "removed"), "{statuses:?}");
    assert_eq!(segs["active"]["first"], end);
    assert!(all.iter().all(|r| !segment_path(&fx.log, r).exists()));
    let v = warden(&["verify", "--json"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["removed_by_retention"], end);
}

/// A SIEM holds a checkpoint from before the removal: its epoch's keys went with the
/// removed entries, so it is checked through the leaf hashes the checkpoints file keeps
/// (which must reproduce the removal's signed root): held as it was signed, it passes;
/// a different root is a consistency failure naming both; kept leaves that were
/// altered make it uncheckable, never a silent pass.
fn trusted_checkpoints_older_than_the_removed_prefix_are_checked_by_the_kept_leaves(
    fx: &Fixture,
    removed: u64,
) {
    use warden_core::record::CheckpointRecord;
    let cps = lines(&fx.cps);
    let (k, rec) = cps
        .iter()
        .enumerate()
        .map(|(k, l)| (k, CheckpointRecord::decode(l).unwrap()))
        .find(|(_, r)| r.size > 10 && r.size < removed / 2)
        .unwrap();
    let held = fx.dir.path().join("siem-held.note");
    std::fs::write(&held, &rec.note).unwrap();
    let h = held.to_str().unwrap();
    let v = verify(fx, 3600, &["--trusted-checkpoint", h]);
    assert_eq!(v.code, 0, "{:?}", v.findings());

    // The same checkpoint with another root.
    let mut text: Vec<String> = rec.note.lines().map(str::to_owned).collect();
    text[2] = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into();
    let other = fx.dir.path().join("other.note");
    std::fs::write(&other, text.join("\n") + "\n").unwrap();
    let v = verify(fx, 3600, &["--trusted-checkpoint", other.to_str().unwrap()]);
    assert_eq!(v.code, 1);
    assert!(
        v.has_code("trusted_checkpoint_mismatch", rec.size - 1),
        "{:?}",
        v.findings()
    );
    let why = v.findings()[0].3.clone();
    assert!(
        why.starts_with("consistency failure") && why.matches("root").count() == 2,
        "{why}"
    );

    // Kept leaf hashes altered in the removed prefix: the held checkpoint cannot be
    // checked, and says so.
    let mut altered = cps.clone();
    let mut r = CheckpointRecord::decode(&altered[k]).unwrap();
    r.leaves[0][0] ^= 1;
    altered[k] = r.encode().unwrap();
    write_lines(&fx.cps, &altered);
    let v = verify(fx, 3600, &["--trusted-checkpoint", h]);
    write_lines(&fx.cps, &cps);
    assert_eq!(v.code, 1);
    assert!(
        v.findings()[0].3.contains("cannot be checked"),
        "{:?}",
        v.findings()
    );
}
