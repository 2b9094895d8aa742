//! File-permission checks, as OpenSSH makes them: a secret others can read, or a data
//! directory others can write, is refused with the path, its mode and the `chmod` that
//! fixes it. Secrets are created 0600 and directories 0700 or 0755, so a looser mode
//! means someone changed it (or copied the file carelessly), and the key must be taken
//! as exposed until the operator says otherwise by fixing the mode.

use crate::error::StoreError;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Refuses a secret file (key material) that its group or others may read or write.
pub fn check_secret_file(path: &Path) -> Result<(), StoreError> {
    let mode = std::fs::metadata(path)
        .map_err(crate::error::io("read", path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::Permissions {
            path: path.to_path_buf(),
            detail: format!(
                "a secret key file accessible to others (mode {:04o}); it may have been read",
                mode & 0o7777
            ),
            fix: format!("chmod 600 {}", path.display()),
        });
    }
    Ok(())
}

/// Refuses a directory (the data directory, its `keys/`) that its group or others may
/// write: they could replace keys, policy or the ledger.
pub fn check_private_dir(path: &Path) -> Result<(), StoreError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        // A directory that does not exist yet is created by whoever needs it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(crate::error::io("read", path)(e)),
    };
    let mode = meta.permissions().mode();
    if meta.is_dir() && mode & 0o022 != 0 {
        return Err(StoreError::Permissions {
            path: path.to_path_buf(),
            detail: format!(
                "a directory others may write (mode {:04o}); they could replace keys, policy or the ledger",
                mode & 0o7777
            ),
            fix: format!("chmod go-w {}", path.display()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn loose_secret_files_and_writable_directories_are_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("root.key");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_secret_file(&f).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains(&format!("chmod 600 {}", f.display())));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_secret_file(&f).unwrap();

        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_private_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("chmod go-w"), "{e}");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        check_private_dir(d.path()).unwrap();
        check_private_dir(&d.path().join("absent")).unwrap();
    }
}
