//! Name rules the registry enforces: models, versions, aliases, principals, roles, and
//! the commit ids that pin a version.

use crate::error::RegistryError;

/// Names of models and versions: 1–128 of `A-Z a-z 0-9 . _ - /`, not starting with
/// `.`, `-` or `/`.
pub fn check_name(what: &'static str, s: &str) -> Result<(), RegistryError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && !s.starts_with(['.', '-', '/'])
        && !s.contains("..")
        && !s.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::invalid(
            what,
            format!("{s:?}: use 1-128 letters, digits, '.', '_', '-' or '/'"),
        ))
    }
}

/// Principal names: 1–64 of `A-Z a-z 0-9 . _ - @`.
pub fn check_principal_name(s: &str) -> Result<(), RegistryError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::invalid(
            "principal name",
            format!("{s:?}: use 1-64 letters, digits, '.', '_', '-' or '@'"),
        ))
    }
}

/// An operating-system user name (POSIX portable: 1-32 of letters, digits, '.', '_',
/// '-', not starting with '-'), or `uid:N` for a user without a name.
pub fn check_os_user(s: &str) -> Result<(), RegistryError> {
    let portable = !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let numeric = s
        .strip_prefix("uid:")
        .is_some_and(|n| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()));
    if portable || numeric {
        Ok(())
    } else {
        Err(RegistryError::invalid(
            "operating-system user",
            format!("{s:?}: use 1-32 letters, digits, '.', '_' or '-', or uid:N"),
        ))
    }
}

/// The commit id of a version (see [`VersionInfo::commit`]).
#[must_use]
pub fn commit_id(manifest: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, manifest.as_bytes());
    let mut hex = warden_core::hex::encode(d.as_ref());
    hex.truncate(40);
    hex
}

/// Whether `s` has the form of a commit id (40 lowercase hex digits).
#[must_use]
pub fn is_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether a version or alias name could be taken for a commit id: 40 hex digits in
/// either case. Such names are refused, so a pinned commit id always means one version.
#[must_use]
pub fn looks_like_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
