//! Via header values (RFC 3261 §20.42, §18.2.1, §25.1 via-parm; RFC 3581 rport; RFC 5118 §4.5
//! received with or without IPv6 brackets). Unknown transports are kept as tokens.

use std::fmt;
use std::net::IpAddr;

use super::error::SyntaxError;
use super::params::{Param, Params, is_token, parse_header_params};
use super::uri::{Host, parse_hostport, parse_ipv6};

/// `Debug` keeps protocol and transport and hides the sent-by address and parameter values.
#[derive(Clone, PartialEq, Eq)]
pub struct Via {
    /// `SIP/2.0` normally; kept so the message layer can judge the version.
    pub protocol: String,
    /// Upper-cased transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, anything else).
    pub transport: String,
    pub sent_by_host: Host,
    pub sent_by_port: Option<u16>,
    pub params: ViaParams,
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct ViaParams {
    pub branch: Option<String>,
    pub received: Option<IpAddr>,
    /// `None`: absent; `Some(None)`: requested (`;rport`); `Some(Some(p))`: filled in.
    pub rport: Option<Option<u16>>,
    pub maddr: Option<String>,
    pub ttl: Option<u8>,
    pub other: Params,
}

impl fmt::Debug for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Via")
            .field("protocol", &self.protocol)
            .field("transport", &self.transport)
            .field("sent_by_host", &self.sent_by_host)
            .field("sent_by_port", &self.sent_by_port.is_some())
            .field("params", &self.params)
            .finish()
    }
}

// Presence only: a branch is a transaction id, received/maddr are addresses.
impl fmt::Debug for ViaParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViaParams")
            .field("branch", &self.branch.is_some())
            .field("received", &self.received.is_some())
            .field("rport", &self.rport.map(|p| p.is_some()))
            .field("maddr", &self.maddr.is_some())
            .field("ttl", &self.ttl.is_some())
            .field("other", &self.other)
            .finish()
    }
}

impl Via {
    /// Parses one via-parm (one element of a possibly comma-separated Via line).
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let mut parts = s.splitn(3, '/');
        let (Some(name), Some(version), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SyntaxError::Protocol);
        };
        let (name, version) = (trim(name), trim(version));
        let rest = rest.trim_start_matches([' ', '\t']);
        let split = rest.find([' ', '\t']).ok_or(SyntaxError::Protocol)?;
        let transport = &rest[..split];
        if !is_token(name) || !is_token(version) || !is_token(transport) {
            return Err(SyntaxError::Protocol);
        }
        let rest = &rest[split..];
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // sent-by = host [ COLON port ] and COLON may carry SWS (§25.1).
        let sent_by: String = sent_by
            .chars()
            .filter(|c| *c != ' ' && *c != '\t')
            .collect();
        let (sent_by_host, sent_by_port) = parse_hostport(&sent_by)?;
        Ok(Self {
            protocol: format!("{name}/{version}"),
            transport: transport.to_ascii_uppercase(),
            sent_by_host,
            sent_by_port,
            params: via_params(parse_header_params(params)?)?,
        })
    }
}

fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

fn via_params(all: Params) -> Result<ViaParams, SyntaxError> {
    let mut out = ViaParams::default();
    for Param { name, value } in all.0 {
        match name.to_ascii_lowercase().as_str() {
            "branch" => out.branch = Some(value.ok_or(SyntaxError::Param)?),
            "received" => out.received = Some(received(&value.ok_or(SyntaxError::Param)?)?),
            "rport" => {
                out.rport = Some(match value {
                    None => None,
                    Some(v) => Some(v.parse().map_err(|_| SyntaxError::Param)?),
                });
            }
            "maddr" => out.maddr = Some(value.ok_or(SyntaxError::Param)?),
            "ttl" => {
                out.ttl = Some(
                    value
                        .ok_or(SyntaxError::Param)?
                        .parse()
                        .map_err(|_| SyntaxError::Param)?,
                );
            }
            _ => out.other.0.push(Param { name, value }),
        }
    }
    Ok(out)
}

fn received(v: &str) -> Result<IpAddr, SyntaxError> {
    if let Some(inner) = v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return parse_ipv6(inner).map(IpAddr::V6);
    }
    if v.contains(':') {
        return parse_ipv6(v).map(IpAddr::V6);
    }
    v.parse().map_err(|_| SyntaxError::Host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_via_with_rport_request() {
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.sent_by_port, Some(5060));
        assert_eq!(v.params.branch.as_deref(), Some("z9hG4bK776"));
        assert_eq!(v.params.rport, Some(None));
    }

    #[test]
    fn lws_around_slashes_and_params() {
        let v =
            Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert_eq!(v.protocol, "SIP/2.0");
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.sent_by_host, Host::Domain("spindle.example.com".into()));
        assert_eq!(v.params.branch.as_deref(), Some("z9hG4bK9ikj8"));
    }

    #[test]
    fn received_with_and_without_ipv6_brackets() {
        let a = Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255]").unwrap();
        let b = Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255").unwrap();
        assert_eq!(a.params.received, b.params.received);
        assert_eq!(a.params.received, Some("2001:db8::9:255".parse().unwrap()));
    }

    #[test]
    fn unknown_transport_is_accepted() {
        assert_eq!(
            Via::parse("SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKa")
                .unwrap()
                .transport,
            "UNKNOWN"
        );
    }

    #[test]
    fn rport_value_ttl_and_other_params() {
        let v =
            Via::parse("SIP/2.0/UDP [2001:db8::9:1]:6050;rport=5061;ttl=16;maddr=224.2.0.1;x=y")
                .unwrap();
        assert_eq!(v.params.rport, Some(Some(5061)));
        assert_eq!(v.params.ttl, Some(16));
        assert_eq!(v.params.other.value("x"), Some("y"));
        assert_eq!(v.sent_by_port, Some(6050));
    }

    #[test]
    fn malformed_vias_are_rejected() {
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert!(Via::parse("192.0.2.1").is_err());
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.1;received=nonsense").is_err());
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.1;ttl=300").is_err());
    }
}
