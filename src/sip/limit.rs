//! Per-source rate limiting before parsing, sans-IO: one token bucket per source address (IPv6
//! by /64, so rotating through one prefix buys nothing), two classes with their own rate and
//! their own bounded table. The trunk's own signalling hosts (ACL-allowed) send hundreds of
//! calls a second from one address and get a high limit; everyone else only reaches the parser
//! when `on_deny = "reject"` and gets Kamailio pike's 16 requests per 2 s. A flood of new
//! untrusted sources can fill only the untrusted table, never lock a trunk out.
//!
//! Time comes in as `now`, so tests drive it with plain instants.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// `[sip.limits]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Messages (datagrams, stream messages, connections) per second from one ACL-allowed address.
    #[serde(default = "default_trusted_per_second")]
    pub trusted_per_second: f64,
    /// How many a trusted address may send at once above its rate.
    #[serde(default = "default_trusted_burst")]
    pub trusted_burst: f64,
    /// The same for addresses outside the ACL (answered only with `on_deny = "reject"`).
    #[serde(default = "default_untrusted_per_second")]
    pub untrusted_per_second: f64,
    #[serde(default = "default_untrusted_burst")]
    pub untrusted_burst: f64,
    /// Source addresses remembered per class; a full table refuses new sources of that class.
    #[serde(default = "default_max_sources")]
    pub max_sources: usize,
    /// Messages whose User-Agent contains one of these (ASCII case-insensitive) are dropped
    /// unanswered. An empty list turns the check off.
    #[serde(default = "default_scanner_agents")]
    pub scanner_user_agents: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            trusted_per_second: default_trusted_per_second(),
            trusted_burst: default_trusted_burst(),
            untrusted_per_second: default_untrusted_per_second(),
            untrusted_burst: default_untrusted_burst(),
            max_sources: default_max_sources(),
            scanner_user_agents: default_scanner_agents(),
        }
    }
}

// 2,000 calls/s from one trunk address is INVITE + ACK (+ CANCEL, PRACK, retransmissions):
// 10,000/s leaves that headroom twice over.
fn default_trusted_per_second() -> f64 {
    10_000.0
}
fn default_trusted_burst() -> f64 {
    20_000.0
}
// Kamailio pike's default: 16 requests per 2 s per address.
fn default_untrusted_per_second() -> f64 {
    8.0
}
fn default_untrusted_burst() -> f64 {
    16.0
}
fn default_max_sources() -> usize {
    65_536
}
/// Tool names from the User-Agent headers of SIP scanners seen in the wild (SIPVicious'
/// "friendly-scanner", sipcli, sip-scan, VaxSIPUserAgent, PPLSIP, sundayddr, iWar, SIVuS, smap,
/// …). Not sipsak: operators and Kamailio's own docs use it for OPTIONS monitoring pings. Short
/// fragments ("sipv", "gulp") are left out: as substrings they would catch real user agents.
fn default_scanner_agents() -> Vec<String> {
    [
        "friendly-scanner",
        "sipvicious",
        "sipcli",
        "sip-scan",
        "vaxsipuseragent",
        "pplsip",
        "sundayddr",
        "iwar",
        "sivus",
        "smap",
        "sipscan",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

impl Settings {
    /// Problems as (key relative to `[sip.limits]`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let positive = |v: f64| v.is_finite() && v > 0.0;
        for (key, value) in [
            ("trusted_per_second", self.trusted_per_second),
            ("untrusted_per_second", self.untrusted_per_second),
        ] {
            if !positive(value) {
                problems.push((key.to_owned(), "must be a number above 0".to_owned()));
            }
        }
        for (key, value) in [
            ("trusted_burst", self.trusted_burst),
            ("untrusted_burst", self.untrusted_burst),
        ] {
            if !(value.is_finite() && value >= 1.0) {
                problems.push((key.to_owned(), "must be at least 1".to_owned()));
            }
        }
        if self.max_sources == 0 {
            problems.push(("max_sources".to_owned(), "must be at least 1".to_owned()));
        }
        if self.scanner_user_agents.iter().any(String::is_empty) {
            problems.push((
                "scanner_user_agents".to_owned(),
                "an empty entry would match every User-Agent".to_owned(),
            ));
        }
        problems
    }
}

/// Which budget a source draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Inside the trunk ACL.
    Trusted,
    /// Outside it.
    Untrusted,
}

/// Why a message was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source has used its tokens.
    OverRate,
    /// The class's table is full of sources that are all still drawing down their buckets.
    TableFull,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    /// The bucket refilled up to `now` (never above the burst).
    fn refill(self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }
}

/// A bounded table of token buckets.
#[derive(Debug)]
struct Table {
    rate: Rate,
    buckets: HashMap<IpAddr, Bucket>,
    capacity: usize,
    /// A full table is scanned for refilled buckets at most this often, so a flood of new
    /// sources cannot make every packet pay for a scan.
    next_prune: Option<Instant>,
}

/// How often a full table may be pruned.
const PRUNE_EVERY: Duration = Duration::from_millis(100);

impl Table {
    fn admit(&mut self, source: IpAddr, now: Instant) -> Result<(), Refusal> {
        let rate = self.rate;
        if let Some(bucket) = self.buckets.get_mut(&source) {
            let tokens = rate.refill(*bucket, now);
            *bucket = Bucket { tokens, at: now };
            if tokens < 1.0 {
                return Err(Refusal::OverRate);
            }
            bucket.tokens = tokens - 1.0;
            return Ok(());
        }
        if self.buckets.len() >= self.capacity {
            self.prune(now);
            if self.buckets.len() >= self.capacity {
                return Err(Refusal::TableFull);
            }
        }
        self.buckets.insert(
            source,
            Bucket {
                tokens: rate.burst - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    /// Forgets every source whose bucket has refilled: a full bucket is the same as none, so
    /// this loses nothing.
    fn prune(&mut self, now: Instant) {
        if self.next_prune.is_some_and(|at| at > now) {
            return;
        }
        self.next_prune = Some(now + PRUNE_EVERY);
        let rate = self.rate;
        self.buckets
            .retain(|_, bucket| rate.refill(*bucket, now) < rate.burst);
    }
}

/// The per-source limiter for every transport.
#[derive(Debug)]
pub struct Limiter {
    trusted: Table,
    untrusted: Table,
}

impl Limiter {
    pub fn new(settings: &Settings) -> Self {
        let table = |per_second, burst| Table {
            rate: Rate { per_second, burst },
            buckets: HashMap::new(),
            capacity: settings.max_sources,
            next_prune: None,
        };
        Self {
            trusted: table(settings.trusted_per_second, settings.trusted_burst),
            untrusted: table(settings.untrusted_per_second, settings.untrusted_burst),
        }
    }

    /// Takes one token from `source`'s bucket in `class`, or says why not.
    pub fn admit(&mut self, class: Class, source: IpAddr, now: Instant) -> Result<(), Refusal> {
        let table = match class {
            Class::Trusted => &mut self.trusted,
            Class::Untrusted => &mut self.untrusted,
        };
        table.admit(bucket_key(source), now)
    }

    /// Sources remembered, both classes together.
    pub fn sources(&self) -> usize {
        self.trusted.buckets.len() + self.untrusted.buckets.len()
    }
}

/// The address a bucket belongs to: IPv4 (also when mapped into IPv6) as is, IPv6 by its /64,
/// the smallest prefix a single customer is normally given.
fn bucket_key(source: IpAddr) -> IpAddr {
    match source.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn limiter(per_second: f64, burst: f64, max_sources: usize) -> Limiter {
        Limiter::new(&Settings {
            trusted_per_second: per_second * 100.0,
            trusted_burst: burst * 100.0,
            untrusted_per_second: per_second,
            untrusted_burst: burst,
            max_sources,
            scanner_user_agents: Vec::new(),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn admitted(l: &mut Limiter, class: Class, source: IpAddr, now: Instant, n: usize) -> usize {
        (0..n)
            .filter(|_| l.admit(class, source, now).is_ok())
            .count()
    }

    #[test]
    fn pike_default_lets_sixteen_through_then_eight_per_second() {
        let mut l = Limiter::new(&Settings::default());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(admitted(&mut l, Class::Untrusted, a, t0, 100), 16);
        assert_eq!(
            l.admit(Class::Untrusted, a, t0),
            Err(Refusal::OverRate),
            "burst used up"
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(admitted(&mut l, Class::Untrusted, a, t1, 100), 8);
        let t3 = t1 + Duration::from_secs(2);
        assert_eq!(admitted(&mut l, Class::Untrusted, a, t3, 100), 16);
    }

    #[test]
    fn default_trusted_rate_carries_a_trunk_at_2000_calls_per_second() {
        let mut l = Limiter::new(&Settings::default());
        let trunk = ip("192.0.2.10");
        let t0 = Instant::now();
        // INVITE and ACK of 2,000 calls/s, 1 ms at a time, for 30 s.
        let mut refused = 0;
        for ms in 0..30_000u64 {
            let now = t0 + Duration::from_millis(ms);
            refused += 4 - admitted(&mut l, Class::Trusted, trunk, now, 4);
        }
        assert_eq!(refused, 0);
    }

    #[test]
    fn one_source_over_its_rate_does_not_cost_another_anything() {
        let mut l = limiter(1.0, 4.0, 16);
        let now = Instant::now();
        assert_eq!(
            admitted(&mut l, Class::Untrusted, ip("192.0.2.1"), now, 50),
            4
        );
        assert_eq!(
            admitted(&mut l, Class::Untrusted, ip("192.0.2.2"), now, 4),
            4
        );
    }

    #[test]
    fn classes_have_their_own_budgets() {
        let mut l = limiter(1.0, 4.0, 16);
        let now = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(admitted(&mut l, Class::Untrusted, a, now, 10), 4);
        assert_eq!(admitted(&mut l, Class::Trusted, a, now, 1000), 400);
    }

    #[test]
    fn ipv6_sources_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4() {
        let mut l = limiter(1.0, 4.0, 16);
        let now = Instant::now();
        let used = (0..10)
            .filter(|i| {
                let a = ip(&format!("2001:db8:1:2::{i:x}"));
                l.admit(Class::Untrusted, a, now).is_ok()
            })
            .count();
        assert_eq!(used, 4);
        assert!(
            l.admit(Class::Untrusted, ip("2001:db8:1:3::1"), now)
                .is_ok()
        );
        assert_eq!(
            admitted(&mut l, Class::Untrusted, ip("192.0.2.9"), now, 2),
            2
        );
        assert_eq!(
            admitted(&mut l, Class::Untrusted, ip("::ffff:192.0.2.9"), now, 10),
            2
        );
    }

    #[test]
    fn table_stays_bounded_and_forgets_refilled_sources() {
        let mut l = limiter(1.0, 4.0, 8);
        let t0 = Instant::now();
        let refused = (0..100u8)
            .filter(|i| {
                let a = ip(&format!("198.51.100.{i}"));
                l.admit(Class::Untrusted, a, t0) == Err(Refusal::TableFull)
            })
            .count();
        assert_eq!(refused, 92);
        assert_eq!(l.sources(), 8);
        // Within the prune interval the full table is not scanned again.
        let soon = t0 + Duration::from_millis(10);
        assert_eq!(
            l.admit(Class::Untrusted, ip("203.0.113.1"), soon),
            Err(Refusal::TableFull)
        );
        // Four seconds refill every bucket: the next new source finds room.
        let later = t0 + Duration::from_secs(4);
        assert!(l.admit(Class::Untrusted, ip("203.0.113.1"), later).is_ok());
        assert_eq!(l.sources(), 1);
        // The trusted table was never touched by the untrusted flood.
        assert!(l.admit(Class::Trusted, ip("192.0.2.1"), t0).is_ok());
    }

    #[test]
    fn settings_refuse_zero_rates_and_empty_scanner_names() {
        let bad = Settings {
            trusted_per_second: 0.0,
            untrusted_burst: 0.5,
            max_sources: 0,
            scanner_user_agents: vec![String::new()],
            ..Settings::default()
        };
        let keys: Vec<String> = bad.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "trusted_per_second",
                "untrusted_burst",
                "max_sources",
                "scanner_user_agents"
            ]
        );
        assert!(Settings::default().validate().is_empty());
    }
}
