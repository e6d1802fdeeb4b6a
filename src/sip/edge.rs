//! The SIP edge's core: one place where a framed message meets the transaction table, the UAS
//! decision and the call recorder. Transports (udp.rs, tcp.rs) only move bytes in and out of it.
//!
//! Ordering rule (the brief's durability promise): a call's events are in the outbox file before
//! the final response that ends its INVITE transaction is sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use crate::call::{CallerInput, Recorder};
use crate::media::PortPool;
use crate::ops::metrics::MethodLabel;
use crate::ops::{Metrics, Occurrence};
use crate::outbox::Outbox;
use crate::sip::transaction::{Key, MethodClass, Received, Transactions};
use crate::sip::uas::{self, Decision, Routing};
use crate::sip::{
    FramingError, Message, Method, ParseError, ReplyHeaders, Request, Uri, frame_datagram, route,
};

/// Where a transaction's responses go.
#[derive(Debug, Clone)]
pub enum ReplyTo {
    Udp {
        socket: Arc<UdpSocket>,
        dest: SocketAddr,
    },
    Tcp {
        sender: mpsc::Sender<Bytes>,
    },
}

impl ReplyTo {
    async fn send(&self, bytes: Bytes) {
        match self {
            Self::Udp { socket, dest } => {
                // A failed send is the same as a lost datagram: Timer G or the peer retries.
                let _ = socket.send_to(&bytes, dest).await;
            }
            Self::Tcp { sender } => {
                let _ = sender.try_send(bytes);
            }
        }
    }
}

/// A message's arrival context.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub source: SocketAddr,
    pub reliable: bool,
    /// For TCP: the connection's writer. For UDP: the socket, destination decided from Via.
    pub transport: ArrivalTransport,
}

#[derive(Debug, Clone)]
pub enum ArrivalTransport {
    Udp(Arc<UdpSocket>),
    Tcp(mpsc::Sender<Bytes>),
}

mod redirect;

use redirect::{Control, Invite};

/// An INVITE still waiting for its final response, kept so a CANCEL can answer it with 487.
/// The flow owns the final answer: CANCEL answers 200 and cancels the flow, which stops any
/// announcement and sends the 487 after the call's events are written.
struct Pending {
    to_tag: String,
    cancel: tokio_util::sync::CancellationToken,
}

/// Early-media resources.
pub struct MediaSettings {
    pub address: std::net::IpAddr,
    pub ports: PortPool,
    pub refresh: Duration,
}

pub struct Edge {
    table: Mutex<Transactions<ReplyTo>>,
    pending: Mutex<HashMap<Key, Pending>>,
    /// Calls with an announcement playing, by Call-ID: where INFO digits go.
    calls: Mutex<HashMap<String, Arc<Control>>>,
    /// Call flows in progress, so shutdown can let them finish (bounded).
    flows: tokio_util::task::TaskTracker,
    media: MediaSettings,
    /// The number pool and campaigns; replaced whole on a config reload.
    routing: std::sync::RwLock<Arc<Routing>>,
    recorder: Arc<Recorder>,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    server_header: String,
    outbox_full: Occurrence,
    outbox_error: Occurrence,
    acl_denied: Occurrence,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the table half-updated in a way that matters
    // more than refusing service forever would.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Edge {
    pub fn new(
        table: Transactions<ReplyTo>,
        routing: Routing,
        recorder: Arc<Recorder>,
        outbox: Outbox,
        metrics: Arc<Metrics>,
        server_header: String,
        media: MediaSettings,
    ) -> Self {
        Self {
            table: Mutex::new(table),
            pending: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            flows: tokio_util::task::TaskTracker::new(),
            media,
            routing: std::sync::RwLock::new(Arc::new(routing)),
            recorder,
            outbox,
            metrics,
            server_header,
            outbox_full: Occurrence::new(Duration::from_secs(10)),
            outbox_error: Occurrence::new(Duration::from_secs(10)),
            acl_denied: Occurrence::new(Duration::from_secs(60)),
        }
    }

    /// Takes a new number pool and campaigns (config reload); calls in progress keep theirs.
    pub fn set_routing(&self, routing: Routing) {
        *self.routing.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(routing);
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Waits (at most `limit`) for call flows in progress, e.g. announcements, to send their
    /// final responses and write their events. Returns how many were still running.
    pub async fn drain(&self, limit: Duration) -> usize {
        self.flows.close();
        let _ = tokio::time::timeout(limit, self.flows.wait()).await;
        self.flows.len()
    }

    /// Fires due timers (Timer G retransmissions, expiry) and returns when to call again.
    pub async fn tick(&self, now: Instant) -> Option<Instant> {
        let (sends, next, stats, live) = {
            let mut table = lock(&self.table);
            let sends = table.poll(now);
            (sends, table.next_deadline(), table.stats(), table.len())
        };
        self.metrics
            .sip_finals_retransmitted
            .set_max(stats.finals_retransmitted);
        self.metrics.sip_ack_timeouts.set_max(stats.ack_timeouts);
        self.metrics
            .sip_retransmissions_absorbed
            .set_max(stats.retransmissions_absorbed);
        self.metrics.sip_transactions.set(live as u64);
        for (to, bytes) in sends {
            to.send(bytes).await;
        }
        next
    }

    /// Handles one framed message.
    pub async fn on_frame(self: &Arc<Self>, frame: Bytes, arrival: &Arrival) {
        match crate::sip::parse(frame) {
            Ok(Message::Request(req)) => self.on_request(req, arrival).await,
            // We run no client transactions, so every response is stray (§18.1.2 lets us drop).
            Ok(Message::Response(_)) => debug!("Stray response dropped."),
            Err(err) => self.on_parse_error(&err, arrival).await,
        }
    }

    /// Answers a message that failed to parse, if a response can be formed at all.
    pub async fn on_parse_error(&self, err: &ParseError, arrival: &Arrival) {
        self.metrics.sip_parse_errors.inc();
        let Some(reply) = err.reply.as_deref() else {
            self.metrics.sip_dropped_unanswerable.inc();
            debug!(reason = err.reason, "Unanswerable message dropped.");
            return;
        };
        debug!(
            status = err.status,
            reason = err.reason,
            "Malformed request answered."
        );
        let to = self.reply_to(reply, arrival);
        let bytes = self.build(
            reply,
            arrival,
            err.status,
            &crate::sip::generate_tag(),
            &[],
            None,
        );
        self.metrics.response(err.status);
        to.send(bytes).await;
    }

    /// A datagram or stream segment that could not be framed: answer 513 for oversize, 400 for a
    /// broken Content-Length, when the headers allow a response at all (RFC 3261 §18.1.1, §18.3).
    pub async fn on_framing_error(&self, err: FramingError, arrival: &Arrival) {
        let status = if matches!(err, FramingError::TooLarge { .. }) {
            self.metrics.sip_oversize.inc();
            513
        } else {
            400
        };
        let reply = err
            .frame()
            .and_then(|frame| match crate::sip::parse(frame.clone()) {
                Ok(Message::Request(req)) => Some(req.reply_headers().clone()),
                Ok(Message::Response(_)) => None,
                Err(e) => e.reply.map(|r| *r),
            });
        let error = ParseError {
            status,
            reason: "message framing failed",
            reply: reply.map(Box::new),
        };
        self.on_parse_error(&error, arrival).await;
    }

    /// A message from outside the trunk ACL: counted, then dropped or answered 403.
    pub async fn on_denied(&self, datagram: &[u8], arrival: &Arrival, reject: bool) {
        if let Some(suppressed) = self.acl_denied.record(&self.metrics.sip_acl_denied) {
            // No address: the operator finds the source with their firewall, not our logs.
            debug!(suppressed, "Message from outside the trunk ACL.");
        }
        if !reject {
            return;
        }
        let Ok(frame) = frame_datagram(datagram, usize::MAX) else {
            return;
        };
        if let Ok(Message::Request(req)) = crate::sip::parse(frame)
            && req.method != Method::Ack
        {
            let bytes = self.build(
                req.reply_headers(),
                arrival,
                403,
                &crate::sip::generate_tag(),
                &[],
                None,
            );
            self.metrics.response(403);
            self.reply_to(req.reply_headers(), arrival)
                .send(bytes)
                .await;
        }
    }

    async fn on_request(self: &Arc<Self>, req: Request, arrival: &Arrival) {
        self.metrics.request(method_label(&req.method));
        let key = transaction_key(&req);
        let now = Instant::now();
        match &req.method {
            Method::Ack => {
                let _ = lock(&self.table).on_ack(&key, now);
                return;
            }
            Method::Cancel => return self.on_cancel(req, key, arrival, now).await,
            _ => {}
        }
        let reply = req.reply_headers().clone();
        let to = self.reply_to(&reply, arrival);
        let received = lock(&self.table).on_request(key.clone(), to.clone(), arrival.reliable, now);
        match received {
            Received::New => {}
            Received::Retransmission(resend) => {
                if let Some((to, bytes)) = resend {
                    to.send(bytes).await;
                }
                return;
            }
            Received::Overloaded => {
                self.metrics.sip_overloaded.inc();
                let extra = [("Retry-After", "5".to_owned())];
                let bytes = self.build(
                    &reply,
                    arrival,
                    503,
                    &crate::sip::generate_tag(),
                    &extra,
                    None,
                );
                self.metrics.response(503);
                to.send(bytes).await;
                return;
            }
            Received::Ack | Received::StrayAck => return,
        }
        let to_tag = crate::sip::generate_tag();
        if req.method == Method::Invite {
            // §17.2.1: 100 Trying at once, so the carrier stops retransmitting the INVITE.
            let trying = self.build(&reply, arrival, 100, &to_tag, &[], None);
            self.respond(&key, 100, trying).await;
        }
        if req.method == Method::Info
            && let Some(status) = self.on_info(&req)
        {
            let bytes = self.build(&reply, arrival, status, &to_tag, &[], None);
            return self.respond(&key, status, bytes).await;
        }
        let routing = self
            .routing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match uas::decide(&req, &routing) {
            Decision::Reply { status, headers } => {
                let bytes = self.build(&reply, arrival, status, &to_tag, &headers, None);
                self.respond(&key, status, bytes).await;
            }
            Decision::Redirect(route) => {
                // The flow may play an announcement for a minute: it runs as its own task so
                // this transport keeps serving.
                // Registered before the flow starts, so a CANCEL right behind the INVITE finds it.
                let cancel = tokio_util::sync::CancellationToken::new();
                let flow = Pending {
                    to_tag: to_tag.clone(),
                    cancel: cancel.clone(),
                };
                lock(&self.pending).insert(key.clone(), flow);
                let invite = Invite {
                    req,
                    key,
                    reply,
                    arrival: arrival.clone(),
                    to_tag,
                    at: chrono::Utc::now(),
                    cancel,
                };
                self.flows.spawn(self.clone().redirect(invite, route));
            }
        }
    }

    /// §9.2: a CANCEL is its own transaction; it ends a pending INVITE with 487.
    async fn on_cancel(&self, req: Request, key: Key, arrival: &Arrival, now: Instant) {
        let reply = req.reply_headers();
        let to = self.reply_to(reply, arrival);
        let received = lock(&self.table).on_request(key.clone(), to, arrival.reliable, now);
        match received {
            Received::New => {}
            Received::Retransmission(Some((to, bytes))) => return to.send(bytes).await,
            _ => return,
        }
        let invite = key.invite_of_cancel();
        let (status, pending) = {
            let table = lock(&self.table);
            if table.is_proceeding(&invite) {
                let pending = lock(&self.pending);
                let flow = pending
                    .get(&invite)
                    .map(|p| (p.to_tag.clone(), p.cancel.clone()));
                (200, flow)
            } else if table.contains(&invite) {
                (200, None)
            } else {
                (481, None)
            }
        };
        let cancel_tag = pending
            .as_ref()
            .map_or_else(crate::sip::generate_tag, |(tag, _)| tag.clone());
        let bytes = self.build(reply, arrival, status, &cancel_tag, &[], None);
        self.respond(&key, status, bytes).await;
        if let Some((_, token)) = pending {
            token.cancel();
        }
    }

    /// SIP INFO with `application/dtmf-relay` during an announcement: the objection key by
    /// signalling, for carriers that do not pass RFC 4733 events. `None` defers to the UAS.
    fn on_info(&self, req: &Request) -> Option<u16> {
        let control = lock(&self.calls).get(req.call_id()).cloned()?;
        let digit = crate::media::dtmf::parse_info(&req.body);
        if digit == Some(control.objection_digit) {
            control
                .objected
                .store(true, std::sync::atomic::Ordering::Relaxed);
            control.cancel.cancel();
        }
        Some(200)
    }

    async fn respond(&self, key: &Key, status: u16, bytes: Bytes) {
        let sent = lock(&self.table).respond(key, status, bytes, Instant::now());
        if let Ok((to, bytes)) = sent {
            self.metrics.response(status);
            to.send(bytes).await;
        }
    }

    fn reply_to(&self, reply: &ReplyHeaders, arrival: &Arrival) -> ReplyTo {
        match &arrival.transport {
            ArrivalTransport::Tcp(sender) => ReplyTo::Tcp {
                sender: sender.clone(),
            },
            ArrivalTransport::Udp(socket) => ReplyTo::Udp {
                socket: socket.clone(),
                dest: route::udp_destination(route::top_via(reply).as_ref(), arrival.source),
            },
        }
    }

    fn build(
        &self,
        reply: &ReplyHeaders,
        arrival: &Arrival,
        status: u16,
        to_tag: &str,
        extra: &[(&'static str, String)],
        body: Option<(&str, Bytes)>,
    ) -> Bytes {
        let stamped = route::stamped(reply, arrival.source);
        let mut builder =
            crate::sip::build_response(&stamped, status, uas::reason(status)).to_tag(to_tag);
        for (name, value) in extra {
            builder = builder.header(name, value);
        }
        if !self.server_header.is_empty() {
            builder = builder.header("Server", &self.server_header);
        }
        if let Some((content_type, body)) = body {
            builder = builder.body(content_type, body);
        }
        builder.build()
    }
}

fn method_label(method: &Method) -> MethodLabel {
    match method {
        Method::Invite => MethodLabel::Invite,
        Method::Ack => MethodLabel::Ack,
        Method::Cancel => MethodLabel::Cancel,
        Method::Options => MethodLabel::Options,
        Method::Bye => MethodLabel::Bye,
        _ => MethodLabel::Other,
    }
}

/// §17.2.3 matching key.
pub fn transaction_key(req: &Request) -> Key {
    let class = match &req.method {
        Method::Invite | Method::Ack => MethodClass::Invite,
        Method::Cancel => MethodClass::Cancel,
        other => MethodClass::Other(other.as_str().to_owned()),
    };
    let top = req.vias().first();
    let branch = top.and_then(|v| v.params.branch.as_deref());
    match (
        top,
        branch.filter(|b| b.starts_with("z9hG4bK") && b.len() > 7),
    ) {
        (Some(via), Some(branch)) => Key::rfc3261(branch, &route::sent_by(via), class),
        _ => Key::rfc2543(
            req.call_id(),
            req.cseq().seq,
            req.from().tag().unwrap_or_default(),
            req.reply_headers()
                .vias
                .first()
                .map(String::as_str)
                .unwrap_or_default(),
            class,
        ),
    }
}

/// The identity inputs of a request; display names are never taken.
fn caller_input(req: &Request) -> CallerInput {
    let user_of = |uri: &Uri| uas::dialled_digits(uri);
    let pai = req
        .headers
        .get_all("P-Asserted-Identity")
        .into_iter()
        .filter_map(|v| crate::sip::NameAddr::parse(v).ok())
        .find_map(|na| user_of(&na.uri));
    let from = req.from();
    CallerInput {
        p_asserted_user: pai,
        from_user: user_of(&from.uri),
        privacy: req.headers.get("Privacy").map(str::to_owned),
        from_host: match &from.uri {
            Uri::Sip(sip) => Some(route::host_text(&sip.host)),
            _ => None,
        },
    }
}
