//! Acceptance 1: every role × action × lifecycle state (including revoked), expired
//! grants and missing MFA give the expected decision, and every decision is in the
//! ledger with user, model, version, IP and reason when decrypted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{Fixture, write_model};
use std::net::IpAddr;
use warden_policy::{Action, ROLES, VersionState};
use warden_registry::manifest::Provenance;
use warden_registry::{Caller, Registration, Selector};

/// The expected decision, written from the access-control requirements independently
/// of the policy text: role permissions, then the guards that override them.
fn expected(role: &str, a: Action, st: VersionState, validated: bool, mfa: bool) -> bool {
    use Action::*;
    use VersionState::*;
    if matches!(a, Deploy | Retire | Revoke) && !mfa {
        return false; // privileged actions need MFA
    }
    if st == Revoked && matches!(a, Load | Write | Deploy | Retire) {
        return false; // nothing uses a revoked version
    }
    if st == Retired && (a == Deploy || (a == Load && role != "admin")) {
        return false; // retired: only admins still load it
    }
    if a == Deploy && !validated {
        return false; // production needs a validation record
    }
    if a == Generate && !matches!(st, Validated | Production) {
        return false; // inference runs on validated or production versions only
    }
    if role == "service" && matches!(a, Load | Generate) && st != Production {
        return false;
    }
    match role {
        "admin" => true,
        "ml-engineer" => matches!(
            a,
            Read | Write | Register | Load | Deploy | Retire | Generate
        ),
        "data-scientist" => {
            a == Read || (matches!(a, Load | Generate) && matches!(st, Validated | Production))
        }
        "auditor" => matches!(a, Read | Audit),
        "security-officer" => matches!(a, Read | Audit | Retire | Revoke),
        _ => false, // service accounts: nothing without a grant
    }
}

struct Recorded {
    user: String,
    ip: String,
    version: String,
    action: Action,
    allowed: bool,
    reason: String,
}

fn caller(name: &str, ip: IpAddr, mfa: bool) -> Caller {
    Caller {
        principal: name.into(),
        ip,
        mfa,
        scopes: None,
        idp_roles: Vec::new(),
        user_agent: Some("matrix-test".into()),
        request_id: None,
        expires_at: None,
        credential: None,
    }
}

#[test]
fn authorization_matrix_every_role_action_state_and_every_decision_in_the_ledger() {
    let mut fx = Fixture::new();
    fx.add("admin2", &["admin"], false, Some("admin"));
    let reg_key = fx.add("registrant", &["ml-engineer"], false, Some("admin"));
    for role in ROLES {
        fx.add(
            &format!("u-{role}"),
            &[role],
            role == "service",
            Some("admin"),
        );
    }
    fx.add("svc-granted", &["service"], true, Some("admin"));
    fx.add("svc-expired", &["service"], true, Some("admin"));
    let m = fx.m.take().unwrap();
    let rt = common::runtime();
    let admin2 = caller("admin2", "10.0.0.2".parse().unwrap(), true);
    // One version in each lifecycle state, registered by `registrant`.
    let states = [
        ("v-registered", VersionState::Registered, false),
        ("v-validated", VersionState::Validated, true),
        ("v-production", VersionState::Production, true),
        ("v-retired", VersionState::Retired, true),
        ("v-revoked", VersionState::Revoked, true),
    ];
    let file = fx.dir.path().join("model.bin");
    write_model(&file, 4096, 1);
    rt.block_on(async {
        for (v, st, _) in states {
            m.register(
                &Caller::local("registrant"),
                Registration {
                    model: "m",
                    version: v,
                    path: &file,
                    provenance: Provenance::default(),
                },
                &reg_key,
                &|_, _| {},
            )
            .await
            .unwrap();
            let sel = Selector::Version(v.into());
            if st != VersionState::Registered {
                m.promote(&admin2, "m", &sel, VersionState::Validated, None)
                    .await
                    .unwrap();
            }
            if matches!(st, VersionState::Production | VersionState::Retired) {
                m.promote(&admin2, "m", &sel, VersionState::Production, None)
                    .await
                    .unwrap();
            }
            if st == VersionState::Retired {
                m.retire(&admin2, "m", &sel).await.unwrap();
            }
            if st == VersionState::Revoked {
                m.revoke(&admin2, "m", &sel, "matrix").await.unwrap();
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        m.grant(&admin2, "svc-granted", "m", &[Action::Load], now + 3600)
            .await
            .unwrap();
        m.grant(&admin2, "svc-expired", "m", &[Action::Load], now - 10)
            .await
            .unwrap();
    });

    let mut recorded = Vec::new();
    let mut cases = 0;
    let mut check = |name: &str, ip: IpAddr, mfa: bool, a: Action, v: &str, want: bool| {
        let target = (a == Action::Deploy).then_some(VersionState::Production);
        let c = caller(name, ip, mfa);
        let d = rt
            .block_on(m.check(&c, a, "m", Some(&Selector::Version(v.into())), target))
            .unwrap();
        assert_eq!(
            d.allowed,
            want,
            "{name} {a} m@{v} mfa={mfa}: got {}",
            d.reason()
        );
        recorded.push(Recorded {
            user: name.into(),
            ip: ip.to_string(),
            version: v.into(),
            action: a,
            allowed: d.allowed,
            reason: d.reason(),
        });
        cases += 1;
    };
    for (i, role) in ROLES.iter().enumerate() {
        let ip: IpAddr = format!("198.51.100.{}", i + 1).parse().unwrap();
        for a in Action::ALL {
            for (v, st, validated) in states {
                for mfa in [true, false] {
                    let want = expected(role, a, st, validated, mfa);
                    check(&format!("u-{role}"), ip, mfa, a, v, want);
                }
            }
        }
    }
    // Grants: a live grant opens production only; an expired grant opens nothing.
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    check("svc-granted", ip, false, Action::Load, "v-production", true);
    check("svc-granted", ip, false, Action::Load, "v-validated", false);
    check("svc-granted", ip, false, Action::Load, "v-revoked", false);
    check(
        "svc-granted",
        ip,
        false,
        Action::Read,
        "v-production",
        false,
    );
    check(
        "svc-expired",
        ip,
        false,
        Action::Load,
        "v-production",
        false,
    );
    // An unknown principal is denied, not an error.
    check("mallory", ip, true, Action::Load, "v-production", false);
    assert_eq!(cases, ROLES.len() * Action::ALL.len() * 5 * 2 + 6);
    // Token scopes narrow what a role allows; a suspended principal is refused.
    let ip: IpAddr = "192.0.2.77".parse().unwrap();
    let scoped = |scopes: &[&str]| Caller {
        scopes: Some(scopes.iter().map(|s| (*s).to_owned()).collect()),
        ..caller("u-admin", ip, true)
    };
    let v = Selector::Version("v-production".into());
    let mut extra = vec![
        (
            scoped(&["model:read"]),
            Action::Load,
            false,
            "forbid:scope-model-load",
        ),
        (
            scoped(&["model:load"]),
            Action::Load,
            true,
            "permit:role-admin",
        ),
        (
            scoped(&["model:load"]),
            Action::Audit,
            false,
            "forbid:scope-audit-read",
        ),
        (scoped(&[]), Action::Read, false, "forbid:scope-model-read"),
        (
            scoped(&["model:read"]),
            Action::Revoke,
            false,
            "forbid:scope-model-admin",
        ),
    ];
    rt.block_on(m.set_active(&admin2, "u-ml-engineer", false))
        .unwrap();
    extra.push((
        caller("u-ml-engineer", ip, true),
        Action::Load,
        false,
        "forbid:inactive-principal",
    ));
    for (c, a, want, reason) in extra {
        let d = rt.block_on(m.check(&c, a, "m", Some(&v), None)).unwrap();
        assert_eq!(
            (d.allowed, d.reason().as_str()),
            (want, reason),
            "{} {a}",
            c.principal
        );
        recorded.push(Recorded {
            user: c.principal.clone(),
            ip: ip.to_string(),
            version: "v-production".into(),
            action: a,
            allowed: d.allowed,
            reason: d.reason(),
        });
    }
    let reasons: Vec<&str> = recorded.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons.contains(&"forbid:mfa-required"));
    assert!(reasons.iter().any(|r| r.contains("revoked-version")));
    assert!(reasons.contains(&"default-deny"));

    rt.block_on(m.close()).unwrap();
    // Every decision is in the ledger, in order, with who, what, where and why.
    let logged: Vec<_> = fx
        .events()
        .into_iter()
        .filter(|(k, _)| k == "model.decision" || k == "model.denied")
        .collect();
    assert_eq!(logged.len(), recorded.len());
    for (r, (kind, e)) in recorded.iter().zip(&logged) {
        assert_eq!(
            kind,
            if r.allowed {
                "model.decision"
            } else {
                "model.denied"
            }
        );
        assert_eq!(e.user.as_deref(), Some(r.user.as_str()));
        assert_eq!(e.ip.as_deref(), Some(r.ip.as_str()));
        assert_eq!(e.model.as_deref(), Some("m"));
        assert_eq!(e.version.as_deref(), Some(r.version.as_str()));
        assert_eq!(e.action.as_deref(), Some(r.action.as_str()));
        assert_eq!(
            e.decision.as_deref(),
            Some(if r.allowed { "allow" } else { "deny" })
        );
        assert_eq!(e.reason.as_deref(), Some(r.reason.as_str()));
    }
    assert_eq!(fx.verify(), Vec::<String>::new());
}
