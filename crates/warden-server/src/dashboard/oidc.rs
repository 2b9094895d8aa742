//! Signing in through the identity provider: the OpenID Connect authorization code flow
//! with PKCE (S256), for `[oidc]`.
//!
//! `GET /dashboard/sign-in/oidc` starts it: a random `state` and PKCE verifier are kept
//! here (ten minutes, bounded), bound to the browser by a random cookie (`SameSite=Lax`,
//! since the provider sends the browser back with a cross-site navigation), and the
//! browser goes to the provider's authorization endpoint. The provider sends it back to
//! `/dashboard/sign-in/oidc/callback` with a code; the flow is found by `state`, must
//! belong to this browser's cookie, is used once, and the code is exchanged (with the
//! verifier, and the client secret when configured) at the token endpoint. The access
//! token the provider issues for Warden must be a JWT that `[jwt]` accepts; from there on
//! it is a JWT sign-in like any other: authenticated, checked for the audit action
//! (recorded), and held by the session, which checks it again on every request.

use super::session::{cookie, random_hex, same_secret, set_cookie_same_site};
use crate::AppState;
use crate::jwks::{Form, post_form};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use warden_store::config::OidcConfig;
use zeroize::Zeroizing;

/// The cookie binding a flow to the browser that started it.
const FLOW_COOKIE: &str = "warden_oidc";
/// How long a started flow may take.
const FLOW_LIFETIME: Duration = Duration::from_secs(600);
/// Most flows under way at once (more are refused until some end or expire) ...
const MAX_FLOWS: usize = 10_000;
/// ... and from one address, so one client cannot take them all.
const MAX_FLOWS_PER_IP: usize = 16;
/// Longest `state` and `code` accepted from the provider's redirect.
const MAX_PARAM: usize = 4096;

/// The client side of the provider, and the flows under way.
pub struct OidcClient {
    cfg: OidcConfig,
    secret: Option<Zeroizing<String>>,
    authorization_endpoint: String,
    token_endpoint: String,
    ca: Option<PathBuf>,
    flows: Mutex<HashMap<String, Flow>>,
}

struct Flow {
    browser: String,
    ip: IpAddr,
    verifier: Zeroizing<String>,
    expires: Instant,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("client_id", &self.cfg.client_id)
            .field("authorization_endpoint", &self.authorization_endpoint)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
}

impl OidcClient {
    /// The client for `cfg`, the provider being `issuer` (`[jwt] issuer`): endpoints not
    /// configured are read from its discovery document; `secret` is the client secret.
    pub async fn connect(
        cfg: OidcConfig,
        issuer: &str,
        secret: Option<Zeroizing<String>>,
        ca: Option<PathBuf>,
    ) -> Result<Self, String> {
        if !cfg
            .redirect_uri
            .ends_with("/dashboard/sign-in/oidc/callback")
        {
            return Err(format!(
                "redirect_uri {:?} must end with /dashboard/sign-in/oidc/callback",
                cfg.redirect_uri
            ));
        }
        let (authorization_endpoint, token_endpoint) =
            match (&cfg.authorization_endpoint, &cfg.token_endpoint) {
                (Some(a), Some(t)) => (a.clone(), t.clone()),
                _ => {
                    let url = format!(
                        "{}/.well-known/openid-configuration",
                        issuer.trim_end_matches('/')
                    );
                    let doc = crate::jwks::fetch(&url, ca.as_deref()).await?;
                    let d: Discovery = serde_json::from_slice(&doc)
                        .map_err(|e| format!("{url}: not a discovery document: {e}"))?;
                    (
                        cfg.authorization_endpoint
                            .clone()
                            .unwrap_or(d.authorization_endpoint),
                        cfg.token_endpoint.clone().unwrap_or(d.token_endpoint),
                    )
                }
            };
        for e in [&authorization_endpoint, &token_endpoint] {
            if !crate::jwks::is_url(e) {
                return Err(format!("{e:?} is not an http(s) URL"));
            }
        }
        Ok(Self {
            cfg,
            secret,
            authorization_endpoint,
            token_endpoint,
            ca,
            flows: Mutex::default(),
        })
    }

    /// Starts a flow for a browser at `ip`: its cookie and the authorization URL, or
    /// why not.
    fn start(&self, ip: IpAddr) -> Result<(String, String), &'static str> {
        let no_randomness = "No randomness for the sign-in. Try again.";
        let (Some(state), Some(browser), Some(verifier)) =
            (random_hex(), random_hex(), random_hex())
        else {
            return Err(no_randomness);
        };
        let verifier = Zeroizing::new(verifier);
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(warden_core::merkle::sha256(verifier.as_bytes()));
        {
            let mut flows = self
                .flows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            flows.retain(|_, f| f.expires > now);
            if flows.len() >= MAX_FLOWS {
                return Err("Too many sign-ins are under way. Try again in a few minutes.");
            }
            if flows.values().filter(|f| f.ip == ip).count() >= MAX_FLOWS_PER_IP {
                return Err(
                    "Too many sign-ins are under way from this address. Finish one, or try \
                     again in a few minutes.",
                );
            }
            flows.insert(
                state.clone(),
                Flow {
                    browser: browser.clone(),
                    ip,
                    verifier,
                    expires: now + FLOW_LIFETIME,
                },
            );
        }
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", &self.cfg.redirect_uri)
            .append_pair("scope", &self.cfg.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(r) = &self.cfg.resource {
            q.append_pair("resource", r);
        }
        let sep = if self.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok((
            browser,
            format!("{}{sep}{}", self.authorization_endpoint, q.finish()),
        ))
    }

    /// Ends the flow `state` if it is this browser's and still fresh; its verifier.
    fn finish(&self, state: &str, browser: Option<&str>) -> Option<Zeroizing<String>> {
        let mut flows = self
            .flows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let f = flows.remove(state)?;
        let ours = browser.is_some_and(|b| same_secret(&f.browser, b));
        (ours && f.expires > Instant::now()).then_some(f.verifier)
    }

    /// Exchanges `code` for the provider's access token.
    async fn token(&self, code: &str, verifier: &str) -> Result<Zeroizing<String>, String> {
        // (The serializer is not `Send`: it is done with before the request.)
        let form = {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &self.cfg.redirect_uri)
                .append_pair("client_id", &self.cfg.client_id)
                .append_pair("code_verifier", verifier);
            if let Some(r) = &self.cfg.resource {
                q.append_pair("resource", r);
            }
            q.finish()
        };
        let authorization = self.secret.as_ref().map(|s| {
            let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            let pair = Zeroizing::new(format!("{}:{}", enc(&self.cfg.client_id), enc(s)));
            Zeroizing::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
            ))
        });
        let body = Zeroizing::new(
            post_form(
                &self.token_endpoint,
                self.ca.as_deref(),
                Form {
                    body: form,
                    authorization,
                },
            )
            .await?,
        );
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
        }
        let a: Answer = serde_json::from_slice(&body)
            .map_err(|_| "the token endpoint's answer holds no access token".to_owned())?;
        let token = Zeroizing::new(a.access_token);
        if !crate::jwt::looks_like_jwt(&token) {
            return Err(
                "the provider's access token is not a JWT: configure it to issue JWT \
                        access tokens for [jwt] audience"
                    .into(),
            );
        }
        Ok(token)
    }
}

/// Whether the sign-in page offers the provider.
pub(crate) fn offered(s: &AppState) -> bool {
    s.dashboard.oidc.is_some()
}

/// `GET /dashboard/sign-in/oidc`: to the provider.
pub(crate) async fn start(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
) -> Response {
    let Some(c) = &s.dashboard.oidc else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (browser, url) = match c.start(addr.ip()) {
        Ok(v) => v,
        Err(why) => {
            return super::sign_in_form_for(
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(why),
                super::loopback(addr.ip()),
            );
        }
    };
    let mut r = Redirect::to(&url).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        flow_cookie(&browser, FLOW_LIFETIME, !super::loopback(addr.ip())),
    );
    r
}

/// The flow cookie: `Lax`, since the provider sends the browser back cross-site.
fn flow_cookie(value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    set_cookie_same_site(FLOW_COOKIE, value, max_age, secure, "Lax")
}

#[derive(Deserialize)]
pub(crate) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /dashboard/sign-in/oidc/callback`: the provider's answer.
pub(crate) async fn callback(
    State(s): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<Callback>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let on_loopback = super::loopback(addr.ip());
    let refuse = |status, why: &str| super::sign_in_form_for(&s, status, Some(why), on_loopback);
    let Some(c) = &s.dashboard.oidc else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(Query(q)) = q else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The identity provider's answer was malformed.",
        );
    };
    if let Some(e) = q.error {
        let e: String = e.chars().filter(char::is_ascii_graphic).take(64).collect();
        return refuse(
            StatusCode::UNAUTHORIZED,
            &format!("The identity provider refused the sign-in ({e})."),
        );
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The identity provider's answer was incomplete.",
        );
    };
    if code.len() > MAX_PARAM || state.len() > MAX_PARAM {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The identity provider's answer was too long.",
        );
    }
    let Some(verifier) = c.finish(&state, cookie(&headers, FLOW_COOKIE)) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "This sign-in was not started from this browser, was used already, or expired. \
             Try again.",
        );
    };
    let token = match c.token(&code, &verifier).await {
        Ok(t) => t,
        Err(e) => {
            crate::log(&format!("dashboard: identity provider sign-in: {e}"));
            return refuse(
                StatusCode::BAD_GATEWAY,
                "The identity provider did not give a token Warden accepts.",
            );
        }
    };
    let mut r = match super::open_session(&s, &headers, addr.ip(), token, on_loopback).await {
        Ok(cookie) => {
            // A page of this origin takes the browser on, so the session cookie
            // (SameSite=Strict) goes with it: a redirect would still count as the
            // provider's cross-site navigation.
            let mut r = Html(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <meta http-equiv=\"refresh\" content=\"0;url=/dashboard\">\
                 <title>Signed in · Warden</title></head><body><main>\
                 <p><a href=\"/dashboard\">Continue to the dashboard</a></p></main></body></html>",
            )
            .into_response();
            r.headers_mut().append(header::SET_COOKIE, cookie);
            r
        }
        Err(r) => r,
    };
    r.headers_mut().append(
        header::SET_COOKIE,
        flow_cookie("", Duration::ZERO, !on_loopback),
    );
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn client() -> OidcClient {
        OidcClient {
            cfg: OidcConfig {
                client_id: "dash".into(),
                client_secret_env: None,
                redirect_uri: "https://w.example/dashboard/sign-in/oidc/callback".into(),
                scopes: vec!["openid".into()],
                resource: Some("https://w.example/api".into()),
                authorization_endpoint: None,
                token_endpoint: None,
            },
            secret: None,
            authorization_endpoint: "https://idp.example/auth?tenant=t".into(),
            token_endpoint: "https://idp.example/token".into(),
            ca: None,
            flows: Mutex::default(),
        }
    }

    fn param(url: &str, name: &str) -> String {
        let q = url.split_once('?').unwrap().1;
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn a_flow_ends_once_and_only_in_the_browser_that_started_it() {
        let c = client();
        let (browser, url) = c.start(IP).unwrap();
        assert!(url.starts_with("https://idp.example/auth?tenant=t&response_type=code&"));
        assert_eq!(param(&url, "code_challenge_method"), "S256");
        assert_eq!(param(&url, "resource"), "https://w.example/api");
        let state = param(&url, "state");
        // Another browser's cookie (or none) does not finish it, and spends it.
        assert!(c.finish(&state, Some(&"0".repeat(64))).is_none());
        let (browser2, url2) = c.start(IP).unwrap();
        let state2 = param(&url2, "state");
        assert!(c.finish(&state2, None).is_none());
        assert!(c.finish(&state2, Some(&browser2)).is_none());
        // The right browser finishes its flow once; the verifier matches the challenge.
        let (browser3, url3) = c.start(IP).unwrap();
        let state3 = param(&url3, "state");
        let verifier = c.finish(&state3, Some(&browser3)).unwrap();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(warden_core::merkle::sha256(verifier.as_bytes()));
        assert_eq!(param(&url3, "code_challenge"), challenge);
        assert!(c.finish(&state3, Some(&browser3)).is_none());
        assert!(c.finish(&state, Some(&browser)).is_none());
    }

    #[test]
    fn one_address_cannot_hold_every_pending_sign_in() {
        let c = client();
        for _ in 0..MAX_FLOWS_PER_IP {
            c.start(IP).unwrap();
        }
        assert!(c.start(IP).unwrap_err().contains("this address"));
        let other = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
        assert!(c.start(other).is_ok());
    }
}
