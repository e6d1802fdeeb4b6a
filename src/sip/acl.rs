//! The trunk ACL: which source addresses are carrier signalling hosts. Checked on the packet's
//! source address before any parsing, so a scanner costs us one lookup.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct Acl {
    allow: Vec<IpNet>,
}

impl Acl {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    pub fn allows(&self, source: IpAddr) -> bool {
        // An IPv4 carrier reaching a dual-stack socket shows up as ::ffff:a.b.c.d.
        let source = match source {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(source, IpAddr::V4),
            v4 => v4,
        };
        self.allow.iter().any(|net| net.contains(&source))
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
    fn ipv4_mapped_source_matches_ipv4_rule() {
        assert!(acl(&["192.0.2.0/24"]).allows("::ffff:192.0.2.7".parse().unwrap()));
    }
}
