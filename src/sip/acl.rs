//! The trunk ACL: which source addresses are carrier signalling hosts. Checked on the packet's
//! source address before any parsing, so a scanner costs us one lookup.

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use ipnet::IpNet;

/// Shared by every listener; SIGHUP replaces its networks in place, so a carrier's new
/// signalling address is let in without restarting (and without dropping calls).
#[derive(Debug, Default)]
pub struct Acl {
    allow: RwLock<Arc<Vec<IpNet>>>,
}

impl Acl {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow: RwLock::new(Arc::new(allow)),
        }
    }

    /// Takes a reloaded allow list for every packet from now on.
    pub fn replace(&self, allow: Vec<IpNet>) {
        *self.allow.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(allow);
    }

    pub fn allows(&self, source: IpAddr) -> bool {
        // An IPv4 carrier reaching a dual-stack socket shows up as ::ffff:a.b.c.d.
        let source = source.to_canonical();
        self.allow
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|net| net.contains(&source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(nets: &[&str]) -> Acl {
        Acl::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn empty_acl_refuses_everyone() {
        assert!(!acl(&[]).allows("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn carrier_range_is_allowed_and_others_are_not() {
        let a = acl(&["192.0.2.0/28", "2001:db8::/64"]);
        assert!(a.allows("192.0.2.14".parse().unwrap()));
        assert!(!a.allows("192.0.2.16".parse().unwrap()));
        assert!(a.allows("2001:db8::5".parse().unwrap()));
        assert!(!a.allows("2001:db9::5".parse().unwrap()));
    }

    #[test]
    fn a_replaced_list_applies_at_once() {
        let a = acl(&["192.0.2.0/28"]);
        a.replace(vec!["198.51.100.0/24".parse().unwrap()]);
        assert!(!a.allows("192.0.2.1".parse().unwrap()));
        assert!(a.allows("198.51.100.9".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_source_matches_ipv4_rule() {
        assert!(acl(&["192.0.2.0/24"]).allows("::ffff:192.0.2.7".parse().unwrap()));
    }
}
