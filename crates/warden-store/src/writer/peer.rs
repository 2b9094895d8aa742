//! Who is on the other end of a socket: the kernel's peer credentials, and the
//! operating-system user name they belong to.

use std::os::unix::net::UnixStream;

/// The caller of a connection, from `SO_PEERCRED` (set by the kernel at `connect`; a
/// client cannot choose it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    /// The user name of `uid` from `/etc/passwd`, or `uid:N` when it has none there.
    pub user: String,
}

impl Peer {
    /// The peer of `stream`.
    pub fn of(stream: &UnixStream) -> std::io::Result<Self> {
        let c = rustix::net::sockopt::socket_peercred(stream)?;
        let uid = c.uid.as_raw();
        Ok(Self {
            uid,
            gid: c.gid.as_raw(),
            pid: c.pid.as_raw_nonzero().get(),
            user: user_name(uid),
        })
    }
}

/// The user name of this process's real user id.
#[must_use]
pub fn current_user() -> String {
    user_name(rustix::process::getuid().as_raw())
}

/// The name of `uid` in `/etc/passwd`, or `uid:N`.
#[must_use]
pub fn user_name(uid: u32) -> String {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    name_in_passwd(&text, uid).unwrap_or_else(|| format!("uid:{uid}"))
}

/// The uid of `name` in `/etc/passwd`.
#[must_use]
pub fn user_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let n = f.next()?;
        let uid = f.nth(1)?.parse().ok()?;
        (n == name).then_some(uid)
    })
}

fn name_in_passwd(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let u: u32 = f.nth(1)?.parse().ok()?;
        (u == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_uid_field() {
        let t = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(name_in_passwd(t, 1000).as_deref(), Some("alice"));
        assert_eq!(name_in_passwd(t, 0).as_deref(), Some("root"));
        assert_eq!(name_in_passwd(t, 7), None);
    }
}
