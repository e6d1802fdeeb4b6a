//! Where responses go (RFC 3261 §18.2.1, §18.2.2, RFC 3581): the server stamps `received` on the
//! top Via when the sent-by host is not the packet's source, fills `rport`, and sends UDP responses
//! to the source address and either the source port (rport) or the sent-by port.

use std::net::SocketAddr;

use crate::sip::{Host, ReplyHeaders, Via, split_list};

/// The UDP destination for responses to a request whose top Via is `via`, received from `source`.
pub fn udp_destination(via: Option<&Via>, source: SocketAddr) -> SocketAddr {
    match via {
        Some(via) if via.params.rport.is_none() => {
            SocketAddr::new(source.ip(), via.sent_by_port.unwrap_or(5060))
        }
        _ => source,
    }
}

/// Where a response goes over a new TCP connection when the request's one is gone (§18.2.2):
/// the `received` address (the packet's source, which we always stamp) and the sent-by port,
/// or 5060.
pub fn stream_destination(via: Option<&Via>, source: SocketAddr) -> SocketAddr {
    let port = via.and_then(|v| v.sent_by_port).unwrap_or(5060);
    SocketAddr::new(source.ip(), port)
}

/// The top Via value as it must appear in responses: `received` added when the sent-by host is not
/// the source address (§18.2.1), `rport` filled with the source port when the client asked (RFC 3581).
pub fn stamp_top_via(raw: &str, via: Option<&Via>, source: SocketAddr) -> String {
    let Some(via) = via else {
        return raw.to_owned();
    };
    let mut out = String::with_capacity(raw.len() + 32);
    let host_is_source = match &via.sent_by_host {
        Host::Ipv4(ip) => std::net::IpAddr::V4(*ip) == source.ip(),
        Host::Ipv6(ip) => std::net::IpAddr::V6(*ip) == source.ip(),
        Host::Domain(_) => false,
    };
    let asks_rport = matches!(via.params.rport, Some(None));
    if asks_rport {
        // Replace the bare `rport` flag with `rport=<port>`, keeping every other byte.
        let mut replaced = false;
        for (i, part) in raw.split(';').enumerate() {
            if i > 0 {
                out.push(';');
            }
            if !replaced && i > 0 && part.trim().eq_ignore_ascii_case("rport") {
                out.push_str(&format!("rport={}", source.port()));
                replaced = true;
            } else {
                out.push_str(part);
            }
        }
    } else {
        out.push_str(raw);
    }
    if (!host_is_source || asks_rport) && via.params.received.is_none() {
        out.push_str(";received=");
        out.push_str(&source.ip().to_string());
    }
    out
}

/// The top Via of a request's reply headers, parsed; `None` when it does not parse.
pub fn top_via(reply: &ReplyHeaders) -> Option<Via> {
    let line = reply.vias.first()?;
    let first = split_list(line).into_iter().next()?;
    Via::parse(first).ok()
}

/// The reply headers with the top Via stamped for `source` (see `stamp_top_via`).
pub fn stamped(reply: &ReplyHeaders, source: SocketAddr) -> ReplyHeaders {
    let mut out = reply.clone();
    let Some(line) = reply.vias.first() else {
        return out;
    };
    let values = split_list(line);
    let Some(first) = values.first() else {
        return out;
    };
    let via = Via::parse(first).ok();
    let mut stamped = stamp_top_via(first, via.as_ref(), source);
    for rest in &values[1..] {
        stamped.push_str(", ");
        stamped.push_str(rest);
    }
    out.vias[0] = stamped;
    out
}

/// The sent-by of a Via as `host[:port]`, the transaction-matching form (§17.2.3).
pub fn sent_by(via: &Via) -> String {
    match via.sent_by_port {
        Some(port) => format!("{}:{port}", host_text(&via.sent_by_host)),
        None => host_text(&via.sent_by_host),
    }
}

pub fn host_text(host: &Host) -> String {
    match host {
        Host::Domain(d) => d.to_ascii_lowercase(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => format!("[{ip}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(s: &str) -> Via {
        Via::parse(s).unwrap()
    }

    #[test]
    fn a_new_stream_connection_goes_to_the_source_address_and_sent_by_port() {
        let source: SocketAddr = "192.0.2.9:40123".parse().unwrap();
        let v = via("SIP/2.0/TCP carrier.example:5070;branch=z9hG4bKa");
        assert_eq!(
            stream_destination(Some(&v), source),
            "192.0.2.9:5070".parse().unwrap()
        );
        let v = via("SIP/2.0/TCP carrier.example;branch=z9hG4bKa");
        assert_eq!(
            stream_destination(Some(&v), source),
            "192.0.2.9:5060".parse().unwrap()
        );
    }

    #[test]
    fn rport_is_filled_and_received_added() {
        let raw = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport";
        let out = stamp_top_via(raw, Some(&via(raw)), "198.51.100.7:40000".parse().unwrap());
        assert_eq!(
            out,
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport=40000;received=198.51.100.7"
        );
    }

    #[test]
    fn matching_host_without_rport_is_left_alone() {
        let raw = "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKa";
        let src: SocketAddr = "192.0.2.1:5062".parse().unwrap();
        assert_eq!(stamp_top_via(raw, Some(&via(raw)), src), raw);
        assert_eq!(udp_destination(Some(&via(raw)), src), src);
    }

    #[test]
    fn domain_sent_by_gets_received_and_default_port() {
        let raw = "SIP/2.0/UDP carrier.example;branch=z9hG4bKa";
        let src: SocketAddr = "192.0.2.9:41000".parse().unwrap();
        assert!(stamp_top_via(raw, Some(&via(raw)), src).ends_with(";received=192.0.2.9"));
        assert_eq!(
            udp_destination(Some(&via(raw)), src),
            "192.0.2.9:5060".parse().unwrap()
        );
    }

    #[test]
    fn with_rport_responses_go_back_to_the_source_port() {
        let raw = "SIP/2.0/UDP carrier.example:5060;rport;branch=z9hG4bKa";
        let src: SocketAddr = "192.0.2.9:41000".parse().unwrap();
        assert_eq!(udp_destination(Some(&via(raw)), src), src);
    }
}
