//! Time and randomness, injected: the core never reads a clock or the system random
//! source; the store asks these.

use crate::error::StoreError;
use std::sync::Arc;
use warden_core::time::Timestamp;

/// Source of time. The core never reads a clock; the store asks this.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Timestamp::from_micros(micros)
            .unwrap_or(Timestamp::from_micros(0).unwrap_or_else(unreachable_ts))
    }
}

pub(crate) fn unreachable_ts() -> Timestamp {
    // from_micros(0) always succeeds; this keeps the no-panic lint satisfied.
    Timestamp::from_micros(0).unwrap_or_else(unreachable_ts)
}

/// Source of the epoch secrets (signing seeds, data keys, wrapping ephemerals).
/// Production uses [`SystemEntropy`]; tests may record what they are given so they can
/// play an attacker who stole an old epoch's key.
pub trait Entropy: Send + Sync + std::fmt::Debug {
    /// Fills `buf` with secret random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), StoreError>;
}

/// The operating system's CSPRNG through the crypto provider.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), StoreError> {
        aws_lc_rs::rand::fill(buf).map_err(|_| {
            StoreError::Crypto(warden_core::error::CryptoError::Provider {
                what: "random generation",
            })
        })
    }
}

/// A clock that moves only when told to. For tests and simulations.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<std::sync::atomic::AtomicU64>);

impl ManualClock {
    /// Starts at `micros` since the epoch.
    #[must_use]
    pub fn new(micros: u64) -> Self {
        Self(Arc::new(std::sync::atomic::AtomicU64::new(micros)))
    }
    /// Moves the clock forward by `micros`.
    pub fn advance(&self, micros: u64) {
        self.0
            .fetch_add(micros, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(std::sync::atomic::Ordering::SeqCst))
            .unwrap_or_else(|| SystemClock.now())
    }
}
