//! Compliance reports on a generated workload with known ground truth: every count is
//! exact, a tampered entry is listed with its index, an over-long epoch is a rotation
//! violation, and the detached signature holds only for the bytes that were signed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use warden_core::entry::Event;
use warden_core::time::Timestamp;
use warden_store::ledger::ManualClock;

/// One minute of injected time per entry.
const STEP: u64 = 60_000_000;
const DAY: u64 = 86_400_000_000;
const SEVERITIES: [&str; 3] = ["CRITICAL", "HIGH", "LOW"];

/// The `i`-th entry of the workload.
fn workload(i: u64) -> (&'static str, Event) {
    let mut ev = Event {
        user: Some(format!("user{}", i % 7)),
        ip: Some(format!("192.0.2.{}", i % 250)),
        model: Some(format!("model-{}", i % 5)),
        request_id: Some(format!("req-{i}")),
        ..Event::default()
    };
    let kind = match i % 10 {
        0..=5 => {
            ev.decision = Some("allow".into());
            "model.access"
        }
        6 | 7 => {
            ev.decision = Some("deny".into());
            "model.denied"
        }
        8 => {
            ev.details =
                Some(json!({"severity": SEVERITIES[(i / 10 % 3) as usize], "type": "extraction"}));
            "incident"
        }
        _ if i % 20 == 9 => "verification.run",
        _ => "registry.register",
    };
    (kind, ev)
}

/// Writes `n` workload entries, one a minute from T0, with `interval_secs` rotation.
fn ledger(n: u64, interval_secs: u64) -> Fixture {
    let fx = build(0, interval_secs, 1);
    let clock = ManualClock::new(T0);
    let ledger = open_with(
        &fx.root_key,
        &fx.dir.path().join("aud.key.pub"),
        &fx.log,
        interval_secs,
        clock.clone(),
        false,
        RecordingEntropy::default(),
    );
    for i in 0..n {
        let (kind, ev) = workload(i);
        ledger.append(kind, &ev).unwrap();
        clock.advance(STEP);
    }
    ledger.close();
    fx
}

fn ts(micros: u64) -> String {
    Timestamp::from_micros(micros).unwrap().to_string()
}

/// `warden report` over the fixture's ledger for `[from, to)`, with its auditor key.
fn report_cmd(fx: &Fixture, from: u64, to: u64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.env_remove("WARDEN_DATA_DIR")
        .env("WARDEN_PASSPHRASE", "")
        .args(["report", "--log"])
        .arg(&fx.log)
        .arg("--root-pub")
        .arg(&fx.root_pub)
        .arg("--root-key")
        .arg(&fx.root_key)
        .arg("--auditor-key")
        .arg(&fx.auditor)
        .args(["--from", &ts(from), "--to", &ts(to)]);
    c
}

fn report(fx: &Fixture, from: u64, to: u64, max_epoch: u64, out: &Path) -> Value {
    let st = report_cmd(fx, from, to)
        .args(["--max-epoch", &max_epoch.to_string()])
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success());
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

fn verify_report(fx: &Fixture, file: &Path) -> i32 {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .env_remove("WARDEN_DATA_DIR")
        .args(["report", "verify"])
        .arg(file)
        .arg("--root-pub")
        .arg(&fx.root_pub)
        .output()
        .unwrap()
        .status
        .code()
        .unwrap()
}

#[test]
fn weekly_report_counts_are_exact_and_name_tampering_and_long_epochs() {
    let n = 4000;
    let fx = ledger(n, 3600);
    // The period: the second day of the workload.
    let (from, to) = (T0 + DAY, T0 + 2 * DAY);
    let in_period = |i: u64| {
        let t = T0 + i * STEP;
        t >= from && t < to
    };

    // Ground truth from the generator.
    let mut granted = 0u64;
    let mut denied = 0u64;
    let mut incidents: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_user: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut by_model: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut runs = 0u64;
    for i in (0..n).filter(|&i| in_period(i)) {
        let (kind, ev) = workload(i);
        *kinds.entry(kind.into()).or_default() += 1;
        let (g, d) = match kind {
            "model.access" => (1, 0),
            "model.denied" => (0, 1),
            "incident" => {
                let sev = ev.details.as_ref().unwrap()["severity"].as_str().unwrap();
                *incidents.entry(sev.into()).or_default() += 1;
                (0, 0)
            }
            "verification.run" => {
                runs += 1;
                (0, 0)
            }
            _ => (0, 0),
        };
        if g + d > 0 {
            granted += g;
            denied += d;
            for (map, key) in [
                (&mut by_user, ev.user.unwrap()),
                (&mut by_model, ev.model.unwrap()),
            ] {
                let e = map.entry(key).or_default();
                e.0 += g;
                e.1 += d;
            }
        }
    }
    // Rotations, read from the raw lines (times in this fixed form sort as text).
    let (from_s, to_s) = (ts(from), ts(to));
    let lines: Vec<Value> = all_lines(&fx.log)
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert!(
        segment_files(&fx.log).len() >= 3,
        "three days of entries span daily segments"
    );
    let in_text = |v: &Value| {
        let t = v["time"].as_str().unwrap();
        t >= from_s.as_str() && t < to_s.as_str()
    };
    let rotations = lines
        .iter()
        .filter(|v| v["kind"] == "key.rotation" && in_text(v))
        .count() as u64;
    kinds.insert("key.rotation".into(), rotations);
    let total: u64 = kinds.values().sum();

    let out = fx.dir.path().join("reports/week.json");
    let r = report(&fx, from, to, 3600, &out);
    assert_eq!(r["format"], "warden.compliance/v1");
    assert_eq!(r["period"]["from"], from_s);
    assert_eq!(r["entries"]["total"], total);
    assert_eq!(r["entries"]["by_kind"], json!(kinds));
    assert_eq!(r["accesses"]["total"], granted + denied);
    assert_eq!(r["accesses"]["granted"], granted);
    assert_eq!(r["accesses"]["denied"], denied);
    assert_eq!(r["accesses"]["unique_users"], by_user.len());
    assert_eq!(r["accesses"]["unique_models"], by_model.len());
    for (k, (g, d)) in &by_user {
        assert_eq!(
            r["accesses"]["by_user"][k],
            json!({"granted": g, "denied": d}),
            "{k}"
        );
    }
    for (k, (g, d)) in &by_model {
        assert_eq!(
            r["accesses"]["by_model"][k],
            json!({"granted": g, "denied": d}),
            "{k}"
        );
    }
    assert_eq!(r["incidents"]["total"], incidents.values().sum::<u64>());
    assert_eq!(r["incidents"]["by_severity"], json!(incidents));
    assert_eq!(r["verification_runs"], runs);
    assert_eq!(r["key_rotation"]["events"], rotations);
    let days: u64 = r["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["granted"].as_u64().unwrap() + d["denied"].as_u64().unwrap())
        .sum();
    assert_eq!(days, granted + denied, "the daily series adds up");
    assert_eq!(r["integrity"]["clean"], true);
    assert_eq!(r["integrity"]["invalid"], json!([]));
    // Epochs are used for 59 minutes of the 60 allowed: no violation.
    assert_eq!(r["key_rotation"]["violations"], json!([]));
    assert_eq!(r["key_rotation"]["longest_epoch_secs"], 3540.0);

    // The signature holds for these bytes only.
    assert_eq!(verify_report(&fx, &out), 0);
    let mut bytes = std::fs::read(&out).unwrap();
    let pos = bytes.iter().position(|&b| b == b'7').unwrap();
    bytes[pos] = b'8';
    let forged = fx.dir.path().join("reports/forged.json");
    std::fs::write(&forged, &bytes).unwrap();
    std::fs::copy(
        fx.dir.path().join("reports/week.json.sig"),
        fx.dir.path().join("reports/forged.json.sig"),
    )
    .unwrap();
    assert_eq!(verify_report(&fx, &forged), 1, "an altered report fails");

    // A policy allowing 30 minutes per epoch: every epoch in the period is over-long.
    let strict = report(
        &fx,
        from,
        to,
        1800,
        &fx.dir.path().join("reports/strict.json"),
    );
    let v = strict["key_rotation"]["violations"].as_array().unwrap();
    let epochs = strict["key_rotation"]["epochs"].as_array().unwrap();
    assert!(!epochs.is_empty());
    let over: BTreeSet<u64> = epochs
        .iter()
        .filter(|e| e["length_secs"].as_f64().unwrap() > 1800.0)
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    let flagged: BTreeSet<u64> = v
        .iter()
        .filter(|x| x["reason"].as_str().unwrap().contains("was used for"))
        .map(|x| x["epoch"].as_u64().unwrap())
        .collect();
    assert!(!over.is_empty());
    assert_eq!(flagged, over, "each over-long epoch is a violation");

    // Tamper with one access entry of the period: it is listed by index.
    let target = lines
        .iter()
        .position(|v| {
            v["kind"] == "model.access" && in_text(v) && v["index"].as_u64().unwrap() > 2000
        })
        .unwrap();
    edit_entry(&fx.log, target as u64, |line| {
        let text = String::from_utf8_lossy(line);
        let at = text.find("\"encrypted\":\"").unwrap() + 20;
        line[at] = if line[at] == b'0' { b'1' } else { b'0' };
    });
    let t = report(
        &fx,
        from,
        to,
        3600,
        &fx.dir.path().join("reports/tampered.json"),
    );
    assert_eq!(t["integrity"]["clean"], false);
    let invalid = t["integrity"]["invalid"].as_array().unwrap();
    assert!(
        invalid
            .iter()
            .any(|i| i["location"] == "entry" && i["index"] == target as u64),
        "the tampered entry {target} is listed: {invalid:?}"
    );
    // Nothing else in the period is blamed.
    assert!(
        invalid
            .iter()
            .filter(|i| i["location"] == "entry")
            .all(|i| i["index"] == target as u64),
        "{invalid:?}"
    );
}

/// Headless Chromium (Debian's `chromium`, installed by `scripts/install-browser`).
fn chromium() -> std::path::PathBuf {
    for c in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {c}"))
            .output()
            && out.status.success()
        {
            return std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        }
    }
    panic!("chromium is not installed: run scripts/install-browser");
}

/// Pixels of `png` within `tol` of the colour `rgb`.
fn count_colour(png_path: &Path, rgb: [u8; 3], tol: u8) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected colour type {other:?}"),
    };
    buf[..info.buffer_size()]
        .chunks(step)
        .filter(|p| (0..3).all(|k| p[k].abs_diff(rgb[k]) <= tol))
        .count()
}

/// The HTML report renders in headless Chromium with no console message (it has no
/// script, and its policy forbids loading anything), and its three charts are drawn:
/// the screenshot holds the bar colours, and an empty period draws none.
#[test]
fn html_report_renders_in_chromium_with_its_charts() {
    let fx = ledger(4000, 3600);
    let shoot = |from: u64, to: u64, name: &str| -> (std::path::PathBuf, String) {
        let html = fx.dir.path().join(format!("{name}.html"));
        let st = report_cmd(&fx, from, to)
            .args(["--format", "html", "--out"])
            .arg(&html)
            .status()
            .unwrap();
        assert!(st.success());
        let png = fx.dir.path().join(format!("{name}.png"));
        let profile = fx.dir.path().join(format!("profile-{name}"));
        let out = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--window-size=1000,2400",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", html.display()))
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success() && png.exists(),
            "chromium failed: {log}"
        );
        (png, log)
    };
    let (png, log) = shoot(T0 + DAY / 2, T0 + 2 * DAY + DAY / 2, "busy");
    // WARDEN_TEST_KEEP=DIR keeps the page and its screenshot for a person to look at.
    if let Ok(keep) = std::env::var("WARDEN_TEST_KEEP") {
        std::fs::copy(&png, Path::new(&keep).join("report.png")).unwrap();
        std::fs::copy(
            png.with_extension("html"),
            Path::new(&keep).join("report.html"),
        )
        .unwrap();
    }
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    // Colours of the bars (GRANTED, DENIED, INCIDENT in report_html.rs).
    let granted = count_colour(&png, [0x2b, 0x8a, 0x3e], 6);
    let denied = count_colour(&png, [0xc9, 0x2a, 0x2a], 6);
    let incidents = count_colour(&png, [0xe6, 0x77, 0x00], 6);
    assert!(granted > 2000, "granted bars drawn: {granted} pixels");
    assert!(
        denied > 2000,
        "denied bars drawn (two charts): {denied} pixels"
    );
    assert!(incidents > 500, "incident bars drawn: {incidents} pixels");
    // A period with no entries draws no bars (only the legend swatches).
    let (empty, _) = shoot(T0 + 10 * DAY, T0 + 11 * DAY, "empty");
    assert!(count_colour(&empty, [0x2b, 0x8a, 0x3e], 6) < 200);
    assert!(count_colour(&empty, [0xe6, 0x77, 0x00], 6) < 200);
}
