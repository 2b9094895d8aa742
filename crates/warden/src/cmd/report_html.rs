//! The HTML form of a compliance report: one self-contained file (inline CSS and SVG,
//! no script, a Content-Security-Policy that forbids loading anything), readable on
//! screen and in print. Every value from the ledger is HTML-escaped: user names, model
//! names and messages are chosen by whoever made the requests.

use std::fmt::Write as _;
use warden_server::html::esc;
use warden_store::report::{ComplianceReport, Day, Outcomes};

const GRANTED: &str = "#2b8a3e";
const DENIED: &str = "#c92a2a";
const INCIDENT: &str = "#e67700";
/// Rows shown in the per-user and per-model tables (all are in the JSON form).
const TOP: usize = 50;

/// The smallest of 1, 2, 5 × 10^k at or above `v` (at least 1).
fn nice_max(v: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let c = step.saturating_mul(m);
            if c >= v {
                return c;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// One series of a chart: its name, colour, and value per day.
type Series<'a> = (&'a str, &'a str, fn(&Day) -> u64);

/// A bar chart with one bar (of stacked series) per day.
fn chart(id: &str, label: &str, days: &[Day], series: &[Series<'_>]) -> String {
    const W: u64 = 860;
    const H: u64 = 220;
    const LEFT: u64 = 56;
    const BOTTOM: u64 = 28;
    const TOP_PAD: u64 = 10;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" data-chart="{id}" viewBox="0 0 {W} {H}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(label)
    );
    let totals: Vec<u64> = days
        .iter()
        .map(|d| series.iter().map(|(_, _, f)| f(d)).sum())
        .collect();
    let max = nice_max(totals.iter().copied().max().unwrap_or(0));
    let plot_h = H - BOTTOM - TOP_PAD;
    let plot_w = W - LEFT - 10;
    // Grid and y labels at 0, 1/2 and the top (the half of an odd top is `n.5`).
    let half = if max.is_multiple_of(2) {
        (max / 2).to_string()
    } else {
        format!("{}.5", max / 2)
    };
    for (frac, val) in [(0u64, "0".to_owned()), (1, half), (2, max.to_string())] {
        let y = TOP_PAD + plot_h - plot_h * frac / 2;
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#d0d4d9" stroke-width="1"/><text x="{}" y="{}" text-anchor="end" class="axis">{val}</text>"##,
            W - 10,
            LEFT - 6,
            y + 4
        );
    }
    if days.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" class="empty">no entries in this period</text>"#,
            W / 2,
            H / 2
        );
    }
    let n = days.len().max(1) as u64;
    let slot = plot_w / n;
    let bar = (slot * 7 / 10).max(1);
    let label_every = (n / 14).max(1);
    for (i, d) in days.iter().enumerate() {
        let i = i as u64;
        let x = LEFT + i * slot + (slot - bar) / 2;
        let mut base = TOP_PAD + plot_h;
        for (name, color, f) in series {
            let v = f(d);
            if v == 0 {
                continue;
            }
            let h = (plot_h * v / max).max(1);
            base -= h;
            let _ = write!(
                s,
                r#"<rect x="{x}" y="{base}" width="{bar}" height="{h}" fill="{color}"><title>{} {name}: {v}</title></rect>"#,
                esc(&d.date)
            );
        }
        if i.is_multiple_of(label_every) {
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle" class="axis">{}</text>"#,
                x + bar / 2,
                H - 8,
                esc(d.date.get(5..).unwrap_or(&d.date))
            );
        }
    }
    s.push_str("</svg>");
    let _ = write!(s, r#"<p class="legend">"#);
    for (name, color, _) in series {
        let _ = write!(
            s,
            r#"<span><i style="background:{color}"></i>{}</span>"#,
            esc(name)
        );
    }
    s.push_str("</p>");
    s
}

fn outcome_table(
    title: &str,
    map: Option<&std::collections::BTreeMap<String, Outcomes>>,
) -> String {
    let Some(map) = map else {
        return format!(
            "<h3>{}</h3><p class=\"note\">Needs the auditor key (events are encrypted).</p>",
            esc(title)
        );
    };
    let mut rows: Vec<(&String, &Outcomes)> = map.iter().collect();
    rows.sort_by(|a, b| {
        (b.1.granted + b.1.denied)
            .cmp(&(a.1.granted + a.1.denied))
            .then(a.0.cmp(b.0))
    });
    let mut s = format!(
        "<h3>{}</h3><table><thead><tr><th>name</th><th class=\"n\">granted</th><th class=\"n\">denied</th></tr></thead><tbody>",
        esc(title)
    );
    for (k, o) in rows.iter().take(TOP) {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(k),
            o.granted,
            o.denied
        );
    }
    s.push_str("</tbody></table>");
    if rows.len() > TOP {
        let _ = write!(
            s,
            "<p class=\"note\">{} more in the JSON report.</p>",
            rows.len() - TOP
        );
    }
    s
}

/// Renders `r` as a self-contained HTML page.
pub fn render(r: &ComplianceReport) -> String {
    let mut s = String::with_capacity(64 * 1024);
    let title = format!(
        "Compliance report: {} ({} to {})",
        r.origin, r.period.from, r.period.to
    );
    let _ = write!(
        s,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title>
<style>
body{{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0 auto;max-width:960px;padding:24px}}
h1{{font-size:24px;margin:0 0 4px}}h2{{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d4d9;padding-bottom:4px}}h3{{font-size:15px;margin:16px 0 6px}}
.meta{{color:#59636e;margin:0}}.status{{display:inline-block;margin:12px 0 0;padding:6px 10px;border-radius:4px;font-weight:600}}
.ok{{background:#e6f4ea;color:#1e6e34}}.bad{{background:#fde8e8;color:#a61b1b}}
.cards{{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin-top:18px}}
.card{{border:1px solid #d0d4d9;border-radius:6px;padding:10px}}.card b{{display:block;font-size:22px}}.card span{{color:#59636e;font-size:12px}}
svg.chart{{width:100%;height:auto;display:block}}.axis{{font-size:11px;fill:#59636e}}.empty{{font-size:14px;fill:#59636e}}
.legend span{{margin-right:14px;font-size:12px}}.legend i{{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}}
table{{border-collapse:collapse;width:100%;font-size:13px}}th,td{{text-align:left;padding:4px 8px;border-bottom:1px solid #eaecef;vertical-align:top}}
th{{background:#f6f8fa}}.n{{text-align:right;font-variant-numeric:tabular-nums}}.note{{color:#59636e;font-size:12px}}
code{{font-size:12px}}footer{{margin-top:32px;color:#59636e;font-size:12px}}
@media print{{body{{max-width:none;padding:0}}section{{break-inside:avoid}}.card{{break-inside:avoid}}}}
</style></head><body>
<header><h1>Compliance report</h1>
<p class="meta">{} &middot; {} to {} &middot; generated {}</p>
"#,
        esc(&title),
        esc(&r.origin),
        esc(&r.period.from),
        esc(&r.period.to),
        esc(&r.generated)
    );
    let invalid = r.integrity.invalid.len();
    if r.integrity.clean {
        let _ = write!(
            s,
            r#"<p class="status ok">The ledger verifies: {} entries, no finding</p>"#,
            r.integrity.entries_verified
        );
    } else {
        let _ = write!(
            s,
            r#"<p class="status bad">Verification failed: {invalid} finding(s) in this period, {} elsewhere</p>"#,
            r.integrity.findings_outside_period
        );
    }
    s.push_str("</header>\n<section class=\"cards\">");
    let opt = |v: Option<u64>| v.map_or_else(|| "&ndash;".to_owned(), |n| n.to_string());
    let cards: [(&str, String); 10] = [
        ("accesses", r.accesses.total.to_string()),
        ("granted", r.accesses.granted.to_string()),
        ("denied", r.accesses.denied.to_string()),
        ("unique users", opt(r.accesses.unique_users)),
        ("unique models", opt(r.accesses.unique_models)),
        ("incidents", r.incidents.total.to_string()),
        ("invalid entries", invalid.to_string()),
        ("key rotations", r.key_rotation.events.to_string()),
        (
            "longest epoch",
            format!("{:.0} min", r.key_rotation.longest_epoch_secs / 60.0),
        ),
        ("verification runs", r.verification_runs.to_string()),
    ];
    for (k, v) in cards {
        let _ = write!(s, "<div class=\"card\"><b>{v}</b><span>{k}</span></div>");
    }
    s.push_str("</section>\n");
    let _ = writeln!(
        s,
        "<section><h2>Daily access volume</h2>{}</section>",
        chart(
            "volume",
            "accesses per day, granted and denied",
            &r.daily,
            &[
                ("granted", GRANTED, |d| d.granted),
                ("denied", DENIED, |d| d.denied)
            ]
        )
    );
    let _ = writeln!(
        s,
        "<section><h2>Denials</h2>{}</section>",
        chart(
            "denials",
            "denied accesses per day",
            &r.daily,
            &[("denied", DENIED, |d| d.denied)]
        )
    );
    let _ = write!(
        s,
        "<section><h2>Incidents</h2>{}",
        chart(
            "incidents",
            "incidents per day",
            &r.daily,
            &[("incidents", INCIDENT, |d| d.incidents)]
        )
    );
    if r.incidents.by_severity.is_empty() {
        s.push_str("<p class=\"note\">No incidents.</p>");
    } else {
        s.push_str(
            "<table><thead><tr><th>severity</th><th class=\"n\">incidents</th></tr></thead><tbody>",
        );
        for (k, n) in &r.incidents.by_severity {
            let _ = write!(s, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", esc(k));
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("</section>\n<section><h2>Integrity</h2>");
    if r.integrity.invalid.is_empty() {
        s.push_str("<p>No invalid or tampered entries in this period.</p>");
    } else {
        s.push_str("<table><thead><tr><th>where</th><th class=\"n\">index</th><th>finding</th><th>detail</th></tr></thead><tbody>");
        for i in &r.integrity.invalid {
            let _ = write!(
                s,
                "<tr><td>{}</td><td class=\"n\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&i.location),
                i.index,
                esc(&i.code),
                esc(&i.message)
            );
        }
        s.push_str("</tbody></table>");
    }
    let _ = write!(
        s,
        "</section>\n<section><h2>Key rotation</h2><p>{} rotation(s) in the period; {} epoch(s) in use; longest {:.0} s of the {:.0} s allowed.</p>",
        r.key_rotation.events,
        r.key_rotation.epochs.len(),
        r.key_rotation.longest_epoch_secs,
        r.key_rotation.max_epoch_secs
    );
    if r.key_rotation.violations.is_empty() {
        s.push_str("<p>No rotation violations.</p>");
    } else {
        s.push_str("<table><thead><tr><th class=\"n\">epoch</th><th class=\"n\">index</th><th>violation</th></tr></thead><tbody>");
        for v in &r.key_rotation.violations {
            let _ = write!(
                s,
                "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                v.epoch,
                v.index,
                esc(&v.reason)
            );
        }
        s.push_str("</tbody></table>");
    }
    let _ = writeln!(
        s,
        "</section>\n<section><h2>Models and users</h2>{}{}</section>",
        outcome_table("Models", r.accesses.by_model.as_ref()),
        outcome_table("Users", r.accesses.by_user.as_ref())
    );
    s.push_str("<section><h2>SIEM export</h2>");
    if r.siem.is_empty() {
        s.push_str("<p class=\"note\">No SIEM sinks.</p>");
    } else {
        s.push_str("<table><thead><tr><th>sink</th><th>format</th><th class=\"n\">coverage</th><th class=\"n\">lag</th></tr></thead><tbody>");
        for k in &r.siem {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{:.2} %</td><td class=\"n\">{}</td></tr>",
                esc(&k.sink),
                esc(&k.format),
                k.coverage * 100.0,
                k.lag
            );
        }
        s.push_str("</tbody></table>");
    }
    let _ = writeln!(
        s,
        "</section>\n<footer>{} verification run(s) and {} earlier report(s) recorded in the period. This file is signed with the log's root key; check it with <code>warden report verify</code>.</footer>\n</body></html>",
        r.verification_runs, r.reports_generated
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_ledger_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\n"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{fffd}"
        );
        let mut r = ComplianceReport::default();
        let mut users = std::collections::BTreeMap::new();
        users.insert(
            "<img src=x onerror=alert(1)>".to_owned(),
            Outcomes::default(),
        );
        r.accesses.by_user = Some(users);
        let html = render(&r);
        assert!(!html.contains("<img"), "no markup from the ledger");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(
            [0, 1, 3, 7, 10, 11, 99, 480].map(nice_max),
            [1, 1, 5, 10, 10, 20, 100, 500]
        );
    }

    /// Finding 17 of the review: an incidents chart whose top is 1 labelled its half
    /// tick "0", so the axis read 1, 0, 0.
    #[test]
    fn report_chart_half_tick_of_an_odd_top_is_not_rounded_to_zero() {
        let days = [Day {
            date: "2026-11-30".into(),
            incidents: 1,
            ..Day::default()
        }];
        let svg = chart(
            "incidents",
            "x",
            &days,
            &[("incidents", INCIDENT, |d| d.incidents)],
        );
        let labels: Vec<&str> = svg
            .split("class=\"axis\">")
            .skip(1)
            .filter_map(|t| t.split('<').next())
            .collect();
        assert_eq!(labels.get(..3), Some(&["0", "0.5", "1"][..]), "{svg}");
    }
}
