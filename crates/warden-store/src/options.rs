//! How a ledger is opened.

use crate::clock::{Clock, Entropy};
use crate::segments::SegmentPolicy;
use std::sync::Arc;
use std::time::Duration;
use warden_core::crypto::{RecipientPublicKey, SigAlg};

/// How to open a ledger.
#[derive(Debug)]
pub struct LedgerOptions {
    pub origin: String,
    pub alg: SigAlg,
    pub rotation_interval: Duration,
    pub strict: bool,
    pub recipients: Vec<RecipientPublicKey>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    /// When the active entries file is sealed into a segment.
    pub segments: SegmentPolicy,
}
