//! Detectors over inference requests (`inference.request` entries):
//! - **extraction**: one principal sends many prompts in a window, most of them
//!   near-duplicates of one another (the systematic querying that copies a model:
//!   one template with a varying slot, or the same prompt again and again). Prompts are
//!   compared by a 64-bit SimHash of their word shingles ([`shape`]), recorded in the
//!   entry instead of the prompt itself. HIGH.
//! - **response_size**: an answer many times larger than the principal's usual ones,
//!   once it has a usual. MEDIUM.
//!
//! Windows are short (a minute by default) and are not part of the saved state: a
//! restart forgets at most one window.

use crate::{Category, Config, Signal};
use std::collections::{HashMap, VecDeque};

/// Shapes kept per principal (the most recent), each compared with the next prompt.
const MAX_SHAPES: usize = 256;
/// Principals tracked before idle ones are dropped.
const MAX_PRINCIPALS: usize = 100_000;
const SEC: u64 = 1_000_000;

/// The SimHash of `text`'s words: 64 bits, near for texts that share most of their
/// words (a template with one slot changed), far for unrelated texts.
#[must_use]
pub fn shape(text: &str) -> u64 {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut votes = [0i64; 64];
    let mut add = |parts: &[&str]| {
        let h = super::fnv(parts);
        for (bit, v) in votes.iter_mut().enumerate() {
            if (h >> bit) & 1 == 1 {
                *v += 1;
            } else {
                *v -= 1;
            }
        }
    };
    for w in &words {
        add(&[w]);
    }
    votes.iter().enumerate().fold(
        0u64,
        |acc, (bit, v)| if *v > 0 { acc | (1 << bit) } else { acc },
    )
}

#[derive(Debug, Default)]
struct Recent {
    /// (time, ledger index, shape, near an earlier one), oldest first.
    prompts: VecDeque<(u64, u64, u64, bool)>,
    similar: usize,
    /// Answers seen and their mean size, bytes.
    answers: u64,
    mean_bytes: f64,
    last: u64,
}

/// One detection: detector, severity, summary, evidence.
pub(crate) struct Found {
    pub detector: &'static str,
    pub severity: crate::Severity,
    pub summary: String,
    pub evidence: Vec<u64>,
}

/// The inference detectors' windows.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    by: HashMap<String, Recent>,
}

impl Watch {
    pub(crate) fn observe(&mut self, s: &Signal<'_>, cfg: &Config) -> Vec<Found> {
        let mut out = Vec::new();
        let (Category::Inference, Some(who)) = (s.category, s.principal) else {
            return out;
        };
        let t = s.time_micros;
        let width = cfg.extraction_window_secs * SEC;
        if self.by.len() > MAX_PRINCIPALS {
            self.by.retain(|_, r| r.last.saturating_add(width) >= t);
        }
        if !self.by.contains_key(who) {
            self.by.insert(who.to_owned(), Recent::default());
        }
        let Some(r) = self.by.get_mut(who) else {
            return out;
        };
        r.last = t;
        while r
            .prompts
            .front()
            .is_some_and(|p| p.0.saturating_add(width) < t)
        {
            if let Some((_, _, _, near)) = r.prompts.pop_front()
                && near
            {
                r.similar -= 1;
            }
        }
        if let Some(shape) = s.shape {
            let near = r
                .prompts
                .iter()
                .rev()
                .take(MAX_SHAPES)
                .any(|p| (p.2 ^ shape).count_ones() <= cfg.extraction_distance);
            r.prompts.push_back((t, s.index, shape, near));
            if near {
                r.similar += 1;
            }
            let n = r.prompts.len();
            if n >= cfg.extraction_prompts
                && r.similar * 100
                    >= n * usize::try_from(cfg.extraction_similar_percent).unwrap_or(100)
            {
                out.push(Found {
                    detector: "extraction",
                    severity: crate::Severity::High,
                    summary: format!(
                        "{who} sent {n} prompts in {} s, {} of them near-duplicates: systematic querying of {}",
                        cfg.extraction_window_secs,
                        r.similar,
                        s.model.unwrap_or("a model")
                    ),
                    evidence: r
                        .prompts
                        .iter()
                        .rev()
                        .take(crate::MAX_EVIDENCE)
                        .map(|p| p.1)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect(),
                });
            }
        }
        if let Some(bytes) = s.bytes {
            let b = bytes as f64;
            let learnt = r.answers >= cfg.learn_events;
            if learnt
                && bytes >= cfg.response_size_min_bytes
                && b > r.mean_bytes * cfg.response_size_factor as f64
            {
                out.push(Found {
                    detector: "response_size",
                    severity: crate::Severity::Medium,
                    summary: format!(
                        "{who} received {bytes} bytes from {}, {:.0}x its usual answer",
                        s.model.unwrap_or("a model"),
                        b / r.mean_bytes.max(1.0)
                    ),
                    evidence: vec![s.index],
                });
            }
            r.answers += 1;
            r.mean_bytes += (b - r.mean_bytes) / r.answers as f64;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_template_with_a_varying_slot_is_near_and_unrelated_prompts_are_not() {
        let a = shape("Translate the following sentence into French: the cat sleeps on the mat");
        let b = shape("Translate the following sentence into French: the dog sleeps on the mat");
        let c = shape("What were the main causes of the first world war in Europe?");
        assert!(
            (a ^ b).count_ones() <= Config::default().extraction_distance,
            "{}",
            (a ^ b).count_ones()
        );
        assert!((a ^ c).count_ones() > 20, "{}", (a ^ c).count_ones());
        assert_eq!(shape("Hello, World"), shape("hello world"));
    }
}
