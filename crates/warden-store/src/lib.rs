//! Durable storage for the Warden ledger: the group-committing sequencer with crash
//! recovery ([`ledger`]), key files ([`keys`]), the data directory ([`config`]), and the
//! file-reading verification driver ([`verify`]).

pub mod audit;
pub mod baselines;
mod clock;
pub mod config;
pub mod content;
pub mod durable;
pub mod error;
pub mod hashes;
pub mod journal;
pub mod keys;
mod layout;
pub mod ledger;
mod options;
pub mod perms;
pub mod pgurl;
mod recover;
pub mod report;
pub mod requests;
pub mod retention;
mod seal;
pub mod segments;
mod sequencer;
pub mod tally;
mod ticket;
mod treestate;
pub mod usage;
pub mod verify;
pub mod witness;
pub mod writer;
