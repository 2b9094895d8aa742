//! The writer: one process owns a data directory's ledger and appends for any number of
//! local clients over a Unix domain socket (see ARCHITECTURE.md, "The writer protocol").
//! [`proto`] is the wire format, [`server`] the writer side, [`client`] the client side
//! (a [`crate::journal::Journal`]), [`peer`] who is calling, [`autostart`] starting a
//! writer on demand.

pub mod autostart;
pub mod client;
pub mod peer;
pub mod proto;
pub mod server;

/// The socket of a data directory's writer: `WARDEN_WRITER_SOCKET` when set (for
/// clients that cannot read the data directory), else `[writer] socket`.
#[must_use]
pub fn socket_path(
    dir: &crate::config::DataDir,
    cfg: &crate::config::Config,
) -> std::path::PathBuf {
    match std::env::var_os("WARDEN_WRITER_SOCKET") {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p),
        _ => dir.resolve(&cfg.writer.socket),
    }
}
