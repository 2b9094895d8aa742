//! Training environment checks (Linux): each returns pass or fail with a reason.
//!
//! | check | passes when |
//! |---|---|
//! | `data_encrypted` | the data's mount is dm-crypt/LUKS (directly or under LVM), an encrypting file system (eCryptfs, gocryptfs, EncFS, CryFS), inside a configured encrypted mount, or the directory is fscrypt-encrypted (`lsattr` flag `E`) |
//! | `data_not_world_readable` | no file or directory under the data has the "other" read bit |
//! | `output_owner_only` | the output directory is owned by this user and writable by nobody else |
//! | `network_isolated` | (when required) the process's network namespace has no route except over loopback |

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub reason: String,
}

fn pass(name: &'static str, reason: String) -> Check {
    Check {
        name,
        ok: true,
        reason,
    }
}

fn fail(name: &'static str, reason: String) -> Check {
    Check {
        name,
        ok: false,
        reason,
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub dev: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// Parses mountinfo text (`man 5 proc`); octal escapes in paths are decoded.
#[must_use]
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let unescape = |s: &str| {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b.get(i).copied().unwrap_or(0);
            if c == b'\\'
                && let Some(oct) = s.get(i + 1..i + 4)
                && let Ok(v) = u8::from_str_radix(oct, 8)
            {
                out.push(v);
                i += 4;
                continue;
            }
            out.push(c);
            i += 1;
        }
        PathBuf::from(std::ffi::OsString::from(
            String::from_utf8_lossy(&out).into_owned(),
        ))
    };
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            Some(Mount {
                dev: (*f.get(2)?).to_owned(),
                mount_point: unescape(f.get(4)?),
                fs_type: (*p.first()?).to_owned(),
                source: (*p.get(1)?).to_owned(),
            })
        })
        .collect()
}

/// The mount holding `path` (canonical): the last mounted one with the longest prefix.
#[must_use]
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point)
            && best
                .is_none_or(|b| m.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len())
        {
            best = Some(m);
        }
    }
    best
}

const ENCRYPTING_FS: [&str; 5] = [
    "ecryptfs",
    "fuse.gocryptfs",
    "fuse.encfs",
    "fuse.cryfs",
    "fuse.securefs",
];

/// Whether block device `dev` (`major:minor`) is dm-crypt, or stacked on one.
fn dm_crypt(sys: &Path, dev: &str, depth: u32) -> bool {
    if depth > 8 {
        return false;
    }
    let base = sys.join("dev/block").join(dev);
    if std::fs::read_to_string(base.join("dm/uuid")).is_ok_and(|u| u.starts_with("CRYPT-")) {
        return true;
    }
    let Ok(slaves) = std::fs::read_dir(base.join("slaves")) else {
        return false;
    };
    slaves.flatten().any(|s| {
        std::fs::read_to_string(s.path().join("dev"))
            .is_ok_and(|d| dm_crypt(sys, d.trim(), depth + 1))
    })
}

/// Whether `path` is an fscrypt-encrypted directory (or in one), by `lsattr -d`.
fn fscrypt(path: &Path) -> bool {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
    };
    std::process::Command::new("lsattr")
        .arg("-d")
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().next().map(|f| f.contains('E')))
        .unwrap_or(false)
}

/// Is the data at `path` on encrypted storage?
#[must_use]
pub fn data_encrypted(path: &Path, encrypted_mounts: &[PathBuf]) -> Check {
    const N: &str = "data_encrypted";
    let p = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) => return fail(N, format!("{}: {e}", path.display())),
    };
    for m in encrypted_mounts {
        if let Ok(m) = std::fs::canonicalize(m)
            && p.starts_with(&m)
        {
            return pass(
                N,
                format!("inside the configured encrypted mount {}", m.display()),
            );
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = parse_mountinfo(&info);
    let Some(m) = mount_of(&mounts, &p) else {
        return fail(N, "no mount found for the data".into());
    };
    let what = format!(
        "{} ({}) mounted at {}",
        m.source,
        m.fs_type,
        m.mount_point.display()
    );
    if ENCRYPTING_FS.contains(&m.fs_type.as_str()) {
        return pass(N, format!("on the encrypting file system {what}"));
    }
    if dm_crypt(Path::new("/sys"), &m.dev, 0) {
        return pass(N, format!("on dm-crypt: {what}"));
    }
    if fscrypt(&p) {
        return pass(N, format!("fscrypt-encrypted directory on {what}"));
    }
    fail(
        N,
        format!(
            "on {what}: not dm-crypt/LUKS, fscrypt, an encrypting file system or a configured encrypted mount"
        ),
    )
}

/// Is anything under `path` readable by other users?
#[must_use]
pub fn not_world_readable(path: &Path) -> Check {
    const N: &str = "data_not_world_readable";
    let mut bad: Vec<PathBuf> = Vec::new();
    let mut count = 0u64;
    let mut seen = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) => return fail(N, format!("{}: {e}", p.display())),
        };
        seen += 1;
        if meta.mode() & 0o004 != 0 && !meta.file_type().is_symlink() {
            count += 1;
            if bad.len() < 3 {
                bad.push(p.clone());
            }
        }
        if meta.is_dir() {
            match std::fs::read_dir(&p) {
                Ok(rd) => stack.extend(rd.flatten().map(|e| e.path())),
                Err(e) => return fail(N, format!("{}: {e}", p.display())),
            }
        }
    }
    if count == 0 {
        pass(
            N,
            format!("{seen} entries checked, none readable by other users"),
        )
    } else {
        let names: Vec<String> = bad.iter().map(|p| p.display().to_string()).collect();
        fail(
            N,
            format!(
                "{count} of {seen} entries are readable by other users (e.g. {}); chmod -R o-rwx",
                names.join(", ")
            ),
        )
    }
}

/// The effective user id of this process (the owner of `/proc/self`).
fn uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Is the output location owned by us and writable only by us?
#[must_use]
pub fn output_owner_only(path: &Path) -> Check {
    const N: &str = "output_owner_only";
    // A file that does not exist yet is judged by its directory.
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let meta = match std::fs::metadata(&dir) {
        Ok(m) => m,
        Err(e) => return fail(N, format!("{}: {e}", dir.display())),
    };
    let me = uid();
    if me != Some(meta.uid()) {
        return fail(
            N,
            format!(
                "{} is owned by uid {}, not by this user (uid {})",
                dir.display(),
                meta.uid(),
                me.map_or_else(|| "?".into(), |u| u.to_string())
            ),
        );
    }
    if meta.mode() & 0o022 != 0 {
        return fail(
            N,
            format!(
                "{} is writable by {} (mode {:o}); chmod go-w",
                dir.display(),
                if meta.mode() & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                meta.mode() & 0o7777
            ),
        );
    }
    pass(
        N,
        format!(
            "{} is owned by uid {} with mode {:o}",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ),
    )
}

/// Interfaces with routes, from `/proc/net/route` and `/proc/net/ipv6_route` text.
#[must_use]
pub fn routed_interfaces(v4: &str, v6: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let v4 = v4
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next());
    let v6 = v6.lines().filter_map(|l| l.split_whitespace().nth(9));
    for i in v4.chain(v6) {
        if i != "lo" && !out.iter().any(|o| o == i) {
            out.push(i.to_owned());
        }
    }
    out
}

/// Network isolation: when `required`, no route may leave over anything but loopback.
#[must_use]
pub fn network(required: bool) -> Check {
    const N: &str = "network_isolated";
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let ifs = routed_interfaces(&read("/proc/net/route"), &read("/proc/net/ipv6_route"));
    let ns = std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match (required, ifs.is_empty()) {
        (_, true) => pass(N, format!("no routes except loopback (namespace {ns})")),
        (false, false) => pass(
            N,
            format!(
                "not required ([training] require_network_isolation = false); routes over {}",
                ifs.join(", ")
            ),
        ),
        (true, false) => fail(
            N,
            format!(
                "isolation is required but namespace {ns} has routes over {}; run in a network namespace without them (e.g. unshare -n)",
                ifs.join(", ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mountinfo_parses_and_the_longest_mount_wins() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    30 25 253:1 / /srv/my\\040data rw - ext4 /dev/mapper/secure rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].mount_point, PathBuf::from("/srv/my data"));
        assert_eq!(
            mount_of(&m, Path::new("/srv/my data/x")).unwrap().dev,
            "253:1"
        );
        assert_eq!(mount_of(&m, Path::new("/srv/other")).unwrap().dev, "254:0");
    }

    #[test]
    fn routes_over_loopback_only_count_as_isolated() {
        let v4 = "Iface\tDestination\tGateway\n";
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
        assert!(routed_interfaces(v4, v6).is_empty());
        let v4 = "Iface\tDestination\neth0\t00000000\neth0\t000200C0\n";
        assert_eq!(routed_interfaces(v4, v6), vec!["eth0".to_owned()]);
    }
}
