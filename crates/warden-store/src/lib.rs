//! Durable storage for the Warden ledger: the group-committing sequencer with crash
//! recovery ([`ledger`]), key files ([`keys`]), the data directory ([`config`]), and the
//! file-reading verification driver ([`verify`]).

pub mod audit;
pub mod config;
pub mod durable;
pub mod error;
pub mod keys;
pub mod ledger;
pub mod perms;
pub mod report;
pub mod retention;
pub mod segments;
pub mod verify;
