//! Where announcements may be sent: no reflection. An SDP offer names any address it likes, so
//! one INVITE with a spoofed source would otherwise make us stream up to two minutes of audio
//! at a victim. RTP goes only to addresses inside `[media] allowed_networks` (by default the
//! trunk ACL's networks: a carrier's media gateways sit beside its signalling hosts or are
//! listed), and no single address gets more than `max_streams_per_destination` streams at
//! once, which caps what we can be made to send to any one host.

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
}

/// The allowed networks and the streams running to each address.
#[derive(Debug)]
pub struct Destinations {
    allowed: Acl,
    max_per_destination: usize,
    streams: Mutex<HashMap<IpAddr, usize>>,
}

/// One running stream to an address; dropping it ends the claim.
#[derive(Debug)]
pub struct Claim {
    to: IpAddr,
    owner: Arc<Destinations>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut streams = self.owner.lock();
        if let Some(n) = streams.get_mut(&self.to) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.to);
            }
        }
    }
}

impl Destinations {
    pub fn new(allowed: Vec<IpNet>, max_per_destination: usize) -> Self {
        Self {
            allowed: Acl::new(allowed),
            max_per_destination,
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// Takes reloaded networks for calls that start from now on.
    pub fn replace(&self, allowed: Vec<IpNet>) {
        self.allowed.replace(allowed);
    }

    /// Claims one stream to `to`, or says why it may not have one.
    pub fn claim(self: &Arc<Self>, to: IpAddr) -> Result<Claim, Refused> {
        if !self.allowed.allows(to) {
            return Err(Refused::OutsideNetworks);
        }
        // IPv4-mapped and plain IPv4 are one host.
        let to = match to {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(to, IpAddr::V4),
            v4 => v4,
        };
        let mut streams = self.lock();
        let n = streams.entry(to).or_default();
        if *n >= self.max_per_destination {
            return Err(Refused::TooManyStreams);
        }
        *n += 1;
        drop(streams);
        Ok(Claim {
            to,
            owner: self.clone(),
        })
    }

    /// Streams running to `to`.
    pub fn streams_to(&self, to: IpAddr) -> usize {
        self.lock().get(&to).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn destinations(nets: &[&str], cap: usize) -> Arc<Destinations> {
        Arc::new(Destinations::new(
            nets.iter().map(|n| n.parse().unwrap()).collect(),
            cap,
        ))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_addresses_inside_the_networks_get_media() {
        let d = destinations(&["192.0.2.0/24"], 10);
        assert!(d.claim(ip("192.0.2.77")).is_ok());
        assert_eq!(
            d.claim(ip("198.51.100.1")).unwrap_err(),
            Refused::OutsideNetworks
        );
        assert!(d.claim(ip("::ffff:192.0.2.5")).is_ok(), "mapped IPv4");
        let none = destinations(&[], 10);
        assert_eq!(
            none.claim(ip("192.0.2.1")).unwrap_err(),
            Refused::OutsideNetworks
        );
    }

    #[test]
    fn streams_per_address_are_capped_and_released_on_drop() {
        let d = destinations(&["192.0.2.0/24"], 2);
        let a = ip("192.0.2.1");
        let first = d.claim(a).unwrap();
        let _second = d.claim(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(d.claim(a).unwrap_err(), Refused::TooManyStreams);
        assert!(d.claim(ip("192.0.2.2")).is_ok(), "another address");
        drop(first);
        assert_eq!(d.streams_to(a), 1);
        assert!(d.claim(a).is_ok());
    }

    #[test]
    fn replaced_networks_apply_to_new_claims() {
        let d = destinations(&["192.0.2.0/24"], 2);
        d.replace(vec!["198.51.100.0/24".parse().unwrap()]);
        assert!(d.claim(ip("192.0.2.1")).is_err());
        assert!(d.claim(ip("198.51.100.1")).is_ok());
    }
}
