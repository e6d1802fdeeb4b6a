//! What the UAS answers, sans-IO (RFC 3261 §8.2): the checks of §8.2.1–§8.2.3 in their order
//! (method, URI scheme, Require, content), then the routing decision for a tracking number.
//! The transaction layer has already absorbed retransmissions; ACK and CANCEL are matched to
//! transactions by the edge, so they never reach `decide` as a fresh question.

use std::collections::HashMap;
use std::sync::Arc;

use crate::call::{E164, Normalizer};
use crate::sip::{Method, Request, Uri};

/// Methods this UAS implements; sent in Allow (§20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, OPTIONS, BYE, INFO, PRACK";
/// Option tags we support (§20.37): reliable provisional responses (RFC 3262) and the media
/// security agreement IMS trunks require (3GPP TS 24.229 Annex H, "mediasec"). Any other tag in
/// Require gets 420 (§8.2.2.3).
pub const SUPPORTED: &str = "100rel, mediasec";
const SUPPORTED_TAGS: [&str; 2] = ["100rel", "mediasec"];

/// One tracking number's route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub campaign_id: String,
    /// The 302 Contact: a `sip:`, `sips:` or `tel:` URI.
    pub destination: String,
    pub tracking_number: E164,
    /// How callers are informed before the redirect.
    pub plan: Arc<crate::call::disclosure::Plan>,
}

/// The number pool, resolved at start-up (and reload) from config.
#[derive(Debug, Clone)]
pub struct Routing {
    routes: HashMap<String, Arc<Route>>,
    normalizer: Normalizer,
}

impl Routing {
    pub fn new(normalizer: Normalizer, routes: impl IntoIterator<Item = Route>) -> Self {
        let routes = routes
            .into_iter()
            .map(|r| (r.tracking_number.as_str().to_owned(), Arc::new(r)))
            .collect();
        Self { routes, normalizer }
    }

    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    fn lookup(&self, candidate: &str) -> Option<Arc<Route>> {
        let number = self.normalizer.normalize(candidate).ok()?;
        self.routes.get(number.as_str()).cloned()
    }

    /// The tracking number a request is addressed to: the Request-URI first (what the carrier
    /// routed on), then To (some trunks put a trunk-group id in the Request-URI user part).
    pub fn route_for(&self, req: &Request) -> Option<Arc<Route>> {
        dialled_digits(&req.uri)
            .and_then(|d| self.lookup(&d))
            .or_else(|| dialled_digits(&req.to().uri).and_then(|d| self.lookup(&d)))
    }
}

/// The number part of a `sip:`/`sips:` user or a `tel:` URI, without the parameters carriers put
/// into user parts (`;npdi`, `;rn=`, RFC 4694).
pub fn dialled_digits(uri: &Uri) -> Option<String> {
    let raw = match uri {
        Uri::Sip(sip) => String::from_utf8_lossy(&sip.user_unescaped()?).into_owned(),
        Uri::Tel(tel) => tel.number.clone(),
        Uri::Other { .. } => return None,
    };
    let number = raw.split(';').next().unwrap_or_default().trim();
    (!number.is_empty()).then(|| number.to_owned())
}

/// The answer to a new (non-ACK, non-CANCEL) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer with this status and these extra headers.
    Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
    },
    /// An INVITE for a tracking number: record the call, then redirect.
    Redirect(Arc<Route>),
}

impl Decision {
    fn reply(status: u16) -> Self {
        Self::Reply {
            status,
            headers: Vec::new(),
        }
    }

    fn reply_with(status: u16, headers: Vec<(&'static str, String)>) -> Self {
        Self::Reply { status, headers }
    }
}

/// The standard reason phrase for the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        482 => "Loop Detected",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Unknown",
    }
}

/// §8.2.1–§8.2.3 in order, then routing. ACK and CANCEL are the edge's business.
pub fn decide(req: &Request, routing: &Routing) -> Decision {
    let method = &req.method;
    // §8.2.1: method inspection.
    match method {
        Method::Invite | Method::Options | Method::Bye | Method::Info | Method::Prack => {}
        Method::Extension(_) => {
            return Decision::reply_with(501, vec![("Allow", ALLOW.to_owned())]);
        }
        _ => return Decision::reply_with(405, vec![("Allow", ALLOW.to_owned())]),
    }
    // §8.2.2.1: a Request-URI scheme we cannot serve.
    if let Uri::Other { .. } = &req.uri {
        return Decision::reply(416);
    }
    // §8.2.2.3: Require lists extensions we do not support.
    let unsupported: Vec<&str> = req
        .headers
        .get_all("Require")
        .into_iter()
        .filter(|tag| {
            !SUPPORTED_TAGS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(tag.trim()))
        })
        .collect();
    if !unsupported.is_empty() {
        return Decision::reply_with(420, vec![("Unsupported", unsupported.join(", "))]);
    }
    if matches!(method, Method::Bye | Method::Info | Method::Prack) {
        // A redirect server never establishes a dialog; INFO and PRACK for a call in its
        // announcement are taken by the edge before it asks here.
        return Decision::reply(481);
    }
    // §8.2.3: content processing. We understand SDP (for early media) and nothing else.
    if let Some(refusal) = content_refusal(req) {
        return refusal;
    }
    if *method == Method::Options {
        return Decision::reply_with(
            200,
            vec![
                ("Allow", ALLOW.to_owned()),
                ("Accept", crate::sip::body::ACCEPTED.to_owned()),
                ("Supported", SUPPORTED.to_owned()),
            ],
        );
    }
    // INVITE. A redirect server does not forward, but the brief for carriers is explicit: a
    // request that has run out of hops is a loop upstream, and a 483 makes it visible (§16.3 ¶3).
    if req.max_forwards() == Some(0) {
        return Decision::reply(483);
    }
    match routing.route_for(req) {
        Some(route) => Decision::Redirect(route),
        None => Decision::reply(404),
    }
}

fn content_refusal(req: &Request) -> Option<Decision> {
    let headers = &req.headers;
    if let Some(accept) = headers.get("Accept") {
        // §8.2.3 / RFC 4475 §3.3.11: the response we would send (with SDP) is not acceptable.
        let acceptable = accept.split(',').any(|t| {
            let t = media_type(t);
            t == "application/sdp" || t == "application/*" || t == "*/*"
        });
        if !acceptable && !accept.trim().is_empty() {
            return Some(Decision::reply_with(
                406,
                vec![("Accept", "application/sdp".to_owned())],
            ));
        }
    }
    if let Some(encoding) = headers.get("Content-Encoding")
        && !encoding.trim().eq_ignore_ascii_case("identity")
    {
        return Some(Decision::reply_with(
            415,
            vec![
                ("Accept-Encoding", "identity".to_owned()),
                ("Accept", "application/sdp".to_owned()),
            ],
        ));
    }
    match crate::sip::body::sdp(headers.get("Content-Type"), &req.body) {
        Ok(_) => None,
        Err(crate::sip::body::BodyError::Malformed) => Some(Decision::reply(400)),
        Err(crate::sip::body::BodyError::Unsupported) => Some(Decision::reply_with(
            415,
            vec![("Accept", crate::sip::body::ACCEPTED.to_owned())],
        )),
    }
}

fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests;
