#![doc = include_str!("../README.md")]

pub mod access;
pub mod checkpoint;
pub mod content;
pub mod cosign;
pub mod crypto;
pub mod entry;
pub mod epoch;
pub mod error;
mod findings;
pub mod hex;
pub mod manifest;
pub mod merkle;
pub mod note;
pub mod record;
pub mod tileproof;
pub mod tiles;
pub mod time;
pub mod verify;
pub mod witness;

/// A value that passed verification. Only this crate's verifiers construct it, so a
/// function taking `Verified<T>` cannot be handed something unchecked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    pub(crate) fn new(v: T) -> Self {
        Self(v)
    }

    /// The verified value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
