//! Where announcements may be sent: no reflection. An SDP offer names any address it likes, so
//! one INVITE with a spoofed source would otherwise make us stream up to two minutes of audio
//! at a victim. RTP goes only to addresses inside `[media] allowed_networks` (by default the
//! trunk ACL's networks: a carrier's media gateways sit beside its signalling hosts or are
//! listed), no single address gets more than `max_streams_per_destination` streams at once,
//! which caps what we can be made to send to any one host, and no single signalling source
//! holds more than `max_streams_per_source`, so one trunk peer (a burst, a loop, a compromised
//! host inside the ACL) cannot take every announcement port from the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;

use crate::sip::Acl;

/// Why no announcement goes to an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("media address outside the allowed networks")]
    OutsideNetworks,
    #[error("too many streams to one media address")]
    TooManyStreams,
    #[error("too many streams for one signalling source")]
    TooManyFromSource,
}

/// The most streams one address may hold on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub per_destination: usize,
    pub per_source: usize,
}

/// The allowed networks and the streams running, by media address and by signalling source.
#[derive(Debug)]
pub struct Destinations {
    allowed: Acl,
    caps: Caps,
    running: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    to: Tally,
    from: Tally,
}

/// Streams per address; an address with none is not kept.
#[derive(Debug, Default)]
struct Tally(HashMap<IpAddr, usize>);

impl Tally {
    fn get(&self, addr: IpAddr) -> usize {
        self.0.get(&addr).copied().unwrap_or(0)
    }

    fn add(&mut self, addr: IpAddr) {
        *self.0.entry(addr).or_default() += 1;
    }

    fn release(&mut self, addr: IpAddr) {
        if let Some(n) = self.0.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&addr);
            }
        }
    }
}

/// One running stream from a signalling source to a media address; dropping it ends the claim.
#[derive(Debug)]
pub struct Claim {
    to: IpAddr,
    from: IpAddr,
    owner: Arc<Destinations>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut running = self.owner.lock();
        running.to.release(self.to);
        running.from.release(self.from);
    }
}

impl Destinations {
    pub fn new(allowed: Vec<IpNet>, caps: Caps) -> Self {
        Self {
            allowed: Acl::new(allowed),
            caps,
            running: Mutex::new(Running::default()),
        }
    }

    /// Takes reloaded networks for calls that start from now on.
    pub fn replace(&self, allowed: Vec<IpNet>) {
        self.allowed.replace(allowed);
    }

    /// Claims one stream to `to` for a call signalled from `from`, or says why it may not have
    /// one.
    pub fn claim(self: &Arc<Self>, to: IpAddr, from: IpAddr) -> Result<Claim, Refused> {
        if !self.allowed.allows(to) {
            return Err(Refused::OutsideNetworks);
        }
        // IPv4-mapped and plain IPv4 are one host.
        let (to, from) = (to.to_canonical(), from.to_canonical());
        let mut running = self.lock();
        if running.to.get(to) >= self.caps.per_destination {
            return Err(Refused::TooManyStreams);
        }
        if running.from.get(from) >= self.caps.per_source {
            return Err(Refused::TooManyFromSource);
        }
        running.to.add(to);
        running.from.add(from);
        drop(running);
        Ok(Claim {
            to,
            from,
            owner: self.clone(),
        })
    }

    /// Streams running to `to`.
    pub fn streams_to(&self, to: IpAddr) -> usize {
        self.lock().to.get(to.to_canonical())
    }

    /// Streams running for calls signalled from `from`.
    pub fn streams_from(&self, from: IpAddr) -> usize {
        self.lock().from.get(from.to_canonical())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn destinations(nets: &[&str], per_destination: usize) -> Arc<Destinations> {
        with_caps(nets, per_destination, usize::MAX)
    }

    fn with_caps(nets: &[&str], per_destination: usize, per_source: usize) -> Arc<Destinations> {
        Arc::new(Destinations::new(
            nets.iter().map(|n| n.parse().unwrap()).collect(),
            Caps {
                per_destination,
                per_source,
            },
        ))
    }

    const TRUNK: &str = "198.51.100.7";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_addresses_inside_the_networks_get_media() {
        let d = destinations(&["192.0.2.0/24"], 10);
        assert!(d.claim(ip("192.0.2.77"), ip(TRUNK)).is_ok());
        assert_eq!(
            d.claim(ip("198.51.100.1"), ip(TRUNK)).unwrap_err(),
            Refused::OutsideNetworks
        );
        assert!(
            d.claim(ip("::ffff:192.0.2.5"), ip(TRUNK)).is_ok(),
            "mapped IPv4"
        );
        let none = destinations(&[], 10);
        assert_eq!(
            none.claim(ip("192.0.2.1"), ip(TRUNK)).unwrap_err(),
            Refused::OutsideNetworks
        );
    }

    #[test]
    fn streams_per_address_are_capped_and_released_on_drop() {
        let d = destinations(&["192.0.2.0/24"], 2);
        let a = ip("192.0.2.1");
        let first = d.claim(a, ip(TRUNK)).unwrap();
        let _second = d.claim(ip("::ffff:192.0.2.1"), ip(TRUNK)).unwrap();
        assert_eq!(d.claim(a, ip(TRUNK)).unwrap_err(), Refused::TooManyStreams);
        assert!(
            d.claim(ip("192.0.2.2"), ip(TRUNK)).is_ok(),
            "another address"
        );
        drop(first);
        assert_eq!(d.streams_to(a), 1);
        assert!(d.claim(a, ip(TRUNK)).is_ok());
    }

    #[test]
    fn replaced_networks_apply_to_new_claims() {
        let d = destinations(&["192.0.2.0/24"], 2);
        d.replace(vec!["198.51.100.0/24".parse().unwrap()]);
        assert!(d.claim(ip("192.0.2.1"), ip(TRUNK)).is_err());
        assert!(d.claim(ip("198.51.100.1"), ip(TRUNK)).is_ok());
    }

    #[test]
    fn streams_per_signalling_source_are_capped_and_released_on_drop() {
        let d = with_caps(&["192.0.2.0/24"], 10, 2);
        let (one, other) = (ip("203.0.113.1"), ip("203.0.113.2"));
        let first = d.claim(ip("192.0.2.1"), one).unwrap();
        let _second = d.claim(ip("192.0.2.2"), ip("::ffff:203.0.113.1")).unwrap();
        assert_eq!(
            d.claim(ip("192.0.2.3"), one).unwrap_err(),
            Refused::TooManyFromSource
        );
        assert!(d.claim(ip("192.0.2.3"), other).is_ok(), "another source");
        drop(first);
        assert_eq!(d.streams_from(one), 1);
        assert_eq!(d.streams_to(ip("192.0.2.1")), 0);
        assert!(d.claim(ip("192.0.2.3"), one).is_ok());
    }

    #[test]
    fn a_refused_claim_holds_nothing() {
        let d = with_caps(&["192.0.2.0/24"], 1, 1);
        let a = ip("192.0.2.1");
        let _held = d.claim(a, ip(TRUNK)).unwrap();
        assert_eq!(
            d.claim(a, ip("203.0.113.9")).unwrap_err(),
            Refused::TooManyStreams
        );
        assert_eq!(
            d.streams_from(ip("203.0.113.9")),
            0,
            "the refusal took no slot"
        );
        assert_eq!(
            d.claim(ip("192.0.2.2"), ip(TRUNK)).unwrap_err(),
            Refused::TooManyFromSource
        );
        assert_eq!(d.streams_to(ip("192.0.2.2")), 0, "the refusal took no slot");
    }
}
