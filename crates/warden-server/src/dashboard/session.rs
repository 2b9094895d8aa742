//! Dashboard sessions: a random cookie naming a session held in the server's memory.
//!
//! A session keeps the Warden token it was opened with (zeroized when it ends) and
//! authenticates it again on every request, so a revoked token, a suspended principal
//! or an expired token ends the session at once. The cookie is `HttpOnly`,
//! `SameSite=Strict`, scoped to `/dashboard`, and `Secure` unless the browser is on
//! loopback. Every state-changing request carries the session's CSRF token, compared in
//! constant time. Sessions are found by the SHA-256 of the cookie, never the cookie
//! itself, and end after [`LIFETIME`] or when their token expires, whichever is first.

use axum::http::{HeaderMap, HeaderValue, header};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "warden_session";
/// The sign-in form's cookie (double-submitted against login CSRF).
pub(crate) const SIGNIN_COOKIE: &str = "warden_signin";
/// Longest a session lasts.
pub(crate) const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Most sessions held at once; the oldest is ended to make room.
const MAX_SESSIONS: usize = 10_000;

/// What a request learns from its session.
#[derive(Clone)]
pub(crate) struct Open {
    pub token: Zeroizing<String>,
    pub csrf: String,
}

struct Session {
    token: Zeroizing<String>,
    csrf: String,
    expires: Instant,
}

/// Every open session.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// 32 random bytes, hex.
pub(crate) fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).ok()?;
    Some(warden_core::hex::encode(&b))
}

fn key(cookie: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cookie.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

/// Whether two secrets are equal, in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session for `token`, to last at most `until` from now. Returns the
    /// cookie's value, or `None` when no randomness was available.
    pub(crate) fn open(&self, token: Zeroizing<String>, until: Duration) -> Option<String> {
        let cookie = random_hex()?;
        let csrf = random_hex()?;
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            key(&cookie),
            Session {
                token,
                csrf,
                expires: now + until.min(LIFETIME),
            },
        );
        Some(cookie)
    }

    /// The session `cookie` names, unless it ended.
    pub(crate) fn get(&self, cookie: &str) -> Option<Open> {
        let k = key(cookie);
        let mut map = self.lock();
        match map.get(&k) {
            Some(s) if s.expires > Instant::now() => Some(Open {
                token: s.token.clone(),
                csrf: s.csrf.clone(),
            }),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends the session `cookie` names.
    pub(crate) fn end(&self, cookie: &str) {
        self.lock().remove(&key(cookie));
    }
}

/// The value of cookie `name` in the request, if it is there once and well formed.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut found = None;
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            let Some((n, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if n == name {
                if found.is_some() {
                    // Two cookies of one name (one planted by a sibling domain): neither.
                    return None;
                }
                found = Some(value);
            }
        }
    }
    found.filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A `Set-Cookie` value: `name=value` for the dashboard's paths, for `max_age`.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    set_cookie_same_site(name, value, max_age, secure, "Strict")
}

/// [`set_cookie`] with another `SameSite` (`Lax` for a cookie that must come back on a
/// cross-site navigation, such as the identity provider's redirect).
pub(crate) fn set_cookie_same_site(
    name: &str,
    value: &str,
    max_age: Duration,
    secure: bool,
    same_site: &'static str,
) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/dashboard; HttpOnly; SameSite={same_site}; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("warden_session=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_ends() {
        let s = Sessions::default();
        let c = s
            .open(Zeroizing::new("tok".into()), Duration::from_secs(60))
            .unwrap();
        assert_eq!(s.get(&c).unwrap().token.as_str(), "tok");
        assert!(s.get(&random_hex().unwrap()).is_none());
        s.end(&c);
        assert!(s.get(&c).is_none());
        let gone = s.open(Zeroizing::new("t".into()), Duration::ZERO).unwrap();
        assert!(s.get(&gone).is_none(), "expired");
    }

    #[test]
    fn a_cookie_named_twice_is_not_taken() {
        let v = "a".repeat(64);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={v}")).unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE), Some(v.as_str()));
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}={v}")).unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE), None);
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd"));
    }
}
