//! The traffic generator shared by the detection tests: a benign multi-user workload
//! with daily patterns, and scripted attacks. Used by `warden-detect`'s engine test and
//! by `warden-server`'s test that drives the same traffic through the HTTP service.
#![allow(dead_code)]

use std::net::IpAddr;
use warden_detect::Category;

pub const HOUR: u64 = 3_600_000_000;
pub const DAY: u64 = 24 * HOUR;
/// Monday 2026-11-02 00:00 UTC.
pub const T0: u64 = 1_762_041_600_000_000;
pub const USERS: u64 = 200;

/// Deterministic PRNG (xorshift) so failures reproduce.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug)]
pub struct Ev {
    pub time: u64,
    pub category: Category,
    pub principal: Option<String>,
    pub token: Option<String>,
    pub ip: IpAddr,
    pub model: String,
    pub version: String,
    pub file: String,
    pub reason: Option<String>,
    /// Which scripted attack produced it (None: benign).
    pub attack: Option<&'static str>,
}

pub fn user(i: u64) -> String {
    format!("u{i:03}")
}

pub fn home_ip(i: u64, rng: &mut Rng) -> IpAddr {
    IpAddr::from([
        10,
        (i / 250) as u8,
        (i % 250) as u8,
        1 + rng.below(250) as u8,
    ])
}

pub fn office_ip(i: u64, rng: &mut Rng) -> IpAddr {
    IpAddr::from([172, 16, (i % 8) as u8, 1 + rng.below(250) as u8])
}

pub fn benign() -> Vec<Ev> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::new();
    for i in 0..USERS {
        let start_hour = 6 + i % 6;
        let two_networks = i % 4 == 0;
        let models: Vec<u64> = (0..3).map(|k| (i * 7 + k * 13) % 50).collect();
        for day in 0..14u64 {
            let weekend = day % 7 >= 5;
            if weekend && i % 10 != 0 {
                continue;
            }
            let n = if weekend { 5 } else { 40 + rng.below(25) };
            // Some days a principal's notebook re-reads everything in a burst.
            if !weekend && rng.below(20) == 0 {
                let at = T0 + day * DAY + start_hour * HOUR + rng.below(8 * HOUR);
                for k in 0..90u64 {
                    let m = models[(k % 3) as usize];
                    out.push(Ev {
                        time: at + k * 600_000,
                        category: Category::Read,
                        principal: Some(user(i)),
                        token: Some(format!("tok-{}", user(i))),
                        ip: home_ip(i, &mut rng),
                        model: format!("m{m:02}"),
                        version: "1.0".into(),
                        file: String::new(),
                        reason: None,
                        attack: None,
                    });
                }
            }
            for _ in 0..n {
                let time = T0 + day * DAY + start_hour * HOUR + rng.below(9 * HOUR);
                // Three principals travel for a day: a network they never used.
                let travelling = i % 67 == 5 && day == 8;
                let ip = if travelling {
                    IpAddr::from([100, 64, (i % 250) as u8, 9])
                } else if two_networks && rng.below(10) < 3 {
                    office_ip(i, &mut rng)
                } else {
                    home_ip(i, &mut rng)
                };
                let m = models[rng.below(3) as usize];
                let roll = rng.below(1000);
                let category = match roll {
                    0..=4 => Category::AuthFailure,
                    5..=19 => Category::Denied,
                    20..=399 => Category::Access,
                    _ => Category::Read,
                };
                let authed = category != Category::AuthFailure;
                out.push(Ev {
                    time,
                    category,
                    principal: authed.then(|| user(i)),
                    token: authed.then(|| format!("tok-{}", user(i))),
                    ip,
                    model: format!("m{m:02}"),
                    version: format!("{}.0", 1 + rng.below(2)),
                    file: ["config.json", "model.safetensors", "tokenizer.json"]
                        [rng.below(3) as usize]
                        .to_owned(),
                    reason: (category == Category::Denied).then(|| "default-deny".to_owned()),
                    attack: None,
                });
            }
        }
    }
    out
}

/// The scripted attacks, on day 10 (a Thursday), inside the victims' working hours.
pub fn attacks() -> Vec<Ev> {
    let mut out = Vec::new();
    let base = T0 + 10 * DAY + 12 * HOUR;
    let ev = |time, category, principal: Option<&str>, ip: IpAddr, attack| Ev {
        time,
        category,
        principal: principal.map(str::to_owned),
        token: principal.map(|p| format!("tok-{p}")),
        ip,
        model: String::new(),
        version: String::new(),
        file: String::new(),
        reason: None,
        attack: Some(attack),
    };
    // Credential stuffing: 60 failed logins from one address in 30 s.
    let stuffer = IpAddr::from([203, 0, 113, 50]);
    for k in 0..60 {
        out.push(ev(
            base + k * 500_000,
            Category::AuthFailure,
            None,
            stuffer,
            "credential_stuffing",
        ));
    }
    // Enumeration: u040's token walks every model, version and file in two minutes.
    let mut rng = Rng(7);
    for k in 0..120u64 {
        let mut e = ev(
            base + HOUR + k * 1_000_000,
            Category::Access,
            Some("u040"),
            home_ip(40, &mut rng),
            "enumeration",
        );
        e.model = format!("m{:02}", k % 50);
        e.version = format!("{}.0", 1 + k / 50);
        e.file = "model.safetensors".into();
        out.push(e);
    }
    // Exfiltration: u020's token takes 60 artifacts it never had, one every 50 s (too
    // slow for enumeration), far above the new artifacts of its busiest hour.
    for k in 0..60u64 {
        let mut e = ev(
            base + 2 * HOUR + k * 50_000_000,
            Category::Access,
            Some("u020"),
            home_ip(20, &mut rng),
            "exfiltration",
        );
        e.model = format!("m{:02}", k % 50);
        e.version = if k < 50 { "1.0" } else { "2.0" }.into();
        e.file = "tokenizer.json".into();
        out.push(e);
    }
    // A stolen token: u030's token used from an address it has never used.
    for k in 0..5u64 {
        let mut e = ev(
            base + 3 * HOUR + k * 10_000_000,
            Category::Access,
            Some("u030"),
            IpAddr::from([198, 51, 100, 7]),
            "stolen_token",
        );
        e.model = format!("m{:02}", (30 * 7) % 50);
        e.version = "1.0".into();
        e.file = "config.json".into();
        out.push(e);
    }
    // A tampered artifact found on download.
    let mut e = ev(
        base + 4 * HOUR,
        Category::IntegrityFailure,
        Some("u050"),
        home_ip(50, &mut rng),
        "tampered_artifact",
    );
    e.model = "m07".into();
    e.version = "2.0".into();
    e.file = "model.safetensors".into();
    out.push(e);
    out
}
