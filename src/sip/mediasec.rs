//! The media-plane security agreement of IMS trunks (3GPP TS 24.229 Annex H,
//! draft-dawes-sipcore-mediasec-parameter, on the RFC 3329 headers). A trunk that lists media
//! mechanisms in `Security-Client: sdes-srtp;mediasec` expects the peer to answer them in
//! `Security-Server`, and repeats the answer in `Security-Verify` on later requests; a peer that
//! ignores the agreement is refused by such trunks (German incumbent SIP trunks among them).
//!
//! We answer by echoing the offered `mediasec` mechanisms. The agreement only says which
//! mechanisms the SDP may then negotiate; the SDP answer decides. Ours is always RTP/AVP without
//! `a=crypto`, which "best effort" SRTP trunks accept as unencrypted media, and an offer that
//! allows only RTP/SAVP gets 488 from `media::sdp`. Real SRTP would need SDES keys
//! (RFC 4568) in the answer, AES-CM/HMAC-SHA1 protection of the announcement packets (RFC 3711)
//! and TLS for the signalling that carries the keys. `Security-Verify` is accepted without
//! being checked: it guards the next hop's choice of signalling security, which a TLS trunk
//! already has.

use super::header::Headers;
use super::params::parse_header_params;

/// The `Security-Server` value answering a request's media-plane `Security-Client`, if it has one.
pub fn answer(headers: &Headers) -> Option<String> {
    let offered: Vec<&str> = headers
        .get_all("Security-Client")
        .into_iter()
        .map(str::trim)
        .filter(|mechanism| is_media(mechanism))
        .collect();
    (!offered.is_empty()).then(|| offered.join(", "))
}

/// `mechanism-name *(;param)` with a `mediasec` parameter.
fn is_media(mechanism: &str) -> bool {
    let params = mechanism.find(';').map_or("", |i| &mechanism[i..]);
    parse_header_params(params).is_ok_and(|p| p.contains("mediasec"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(text: &str) -> Headers {
        Headers::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn media_mechanisms_are_echoed_and_signalling_ones_left_out() {
        let h = headers(
            "Security-Client: sdes-srtp;mediasec, msrp-tls;mediasec\r\nSecurity-Client: ipsec-3gpp;alg=hmac-sha-1-96;spi-c=1;spi-s=2;port-c=3;port-s=4\r\nSecurity-Client: dtls-srtp;q=0.5;mediasec\r\n",
        );
        assert_eq!(
            answer(&h).unwrap(),
            "sdes-srtp;mediasec, msrp-tls;mediasec, dtls-srtp;q=0.5;mediasec"
        );
    }

    #[test]
    fn no_media_offer_no_answer() {
        assert_eq!(answer(&headers("Security-Client: digest\r\n")), None);
        assert_eq!(
            answer(&headers("Security-Verify: sdes-srtp;mediasec\r\n")),
            None
        );
        assert_eq!(answer(&headers("Subject: x\r\n")), None);
    }
}
