//! The SIP edge's core: one place where a framed message meets the transaction table, the UAS
//! decision and the call recorder. Transports (udp.rs, tcp.rs for TCP and TLS) only move bytes
//! in and out of it.
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
use tracing::{debug, warn};

use crate::call::CallerInput;
use crate::ops::Occurrence;
use crate::ops::metrics::raise_to;
use crate::sip::limit::{self, Class, Limiter};
use crate::sip::scanner::Scanners;
use crate::sip::stats::{MethodLabel, SourceLabel, Stats, StreamLabel};
use crate::sip::transaction::{Claim, Key, MethodClass, Received, Transactions};
use crate::sip::uas::{self, Decision, Route, Routing};
use crate::sip::{
    FramingError, Message, Method, ParseError, ReplyHeaders, Request, Uri, frame_datagram, route,
};

/// Where a transaction's responses go.
#[derive(Clone)]
pub enum ReplyTo {
    Udp {
        socket: Arc<UdpSocket>,
        dest: SocketAddr,
    },
    /// The writer of the TCP or TLS connection the request came on, and for TCP where to open
    /// a new connection if that one is gone (RFC 3261 §18.2.2).
    Stream {
        sender: mpsc::Sender<Bytes>,
        redial: Option<SocketAddr>,
    },
}

/// Why a response could not be handed to its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undelivered {
    /// The connection's writer queue is full: the peer does not read.
    QueueFull,
    /// The connection is gone.
    Closed,
}

// `dest` is the peer's address: `Debug` names the transport only.
impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Udp { .. } => "ReplyTo::Udp { .. }",
            Self::Stream { .. } => "ReplyTo::Stream { .. }",
        })
    }
}

impl ReplyTo {
    /// Sends or queues `bytes`.
    async fn send(&self, bytes: Bytes) -> Result<(), Undelivered> {
        match self {
            Self::Udp { socket, dest } => {
                // A failed send is the same as a lost datagram: Timer G or the peer retries.
                let _ = socket.send_to(&bytes, dest).await;
                Ok(())
            }
            Self::Stream { sender, .. } => sender.try_send(bytes).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Undelivered::QueueFull,
                mpsc::error::TrySendError::Closed(_) => Undelivered::Closed,
            }),
        }
    }
}

/// Opens a new outbound TCP connection for a response whose connection closed (§18.2.2): the
/// stream shell provides it, so the edge needs no socket code.
pub trait Dial: Send + Sync {
    fn dial(&self, to: SocketAddr) -> futures::future::BoxFuture<'_, Option<mpsc::Sender<Bytes>>>;
}

/// A message's arrival context.
#[derive(Clone)]
pub struct Arrival {
    pub source: SocketAddr,
    /// Our address it came to: the Contact we give in dialog-creating responses.
    pub local: SocketAddr,
    /// For streams: the connection's writer. For UDP: the socket, destination decided from Via.
    pub transport: ArrivalTransport,
}

#[derive(Debug, Clone)]
pub enum ArrivalTransport {
    Udp(Arc<UdpSocket>),
    Stream {
        kind: StreamLabel,
        sender: mpsc::Sender<Bytes>,
    },
}

// The source is the peer's address: `Debug` names the transport only.
impl std::fmt::Debug for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arrival")
            .field("reliable", &self.reliable())
            .field("secure", &self.secure())
            .finish_non_exhaustive()
    }
}

impl Arrival {
    /// A reliable transport (§17.2: no retransmission timers).
    pub fn reliable(&self) -> bool {
        matches!(self.transport, ArrivalTransport::Stream { .. })
    }

    pub fn secure(&self) -> bool {
        matches!(
            self.transport,
            ArrivalTransport::Stream {
                kind: StreamLabel::Tls,
                ..
            }
        )
    }
}

/// When a 183 is sent reliably (RFC 3262).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReliableProvisional {
    /// Whenever the INVITE lists 100rel in Supported or Require.
    #[default]
    WhenSupported,
    /// Only when the INVITE requires it.
    WhenRequired,
}

/// How the edge presents itself.
pub struct EdgeSettings {
    /// Value of the Server header; empty sends none.
    pub server_header: String,
    /// Host for our Contact (a name or address the trunk can reach); the receiving socket's
    /// address when unset.
    pub advertise_host: Option<String>,
    pub reliable_provisional: ReliableProvisional,
    /// RFC 3261 T1, also the first retransmission interval of reliable provisionals.
    pub t1: Duration,
    /// How often a 183 is resent while its early dialog lasts (`[media] refresh_seconds`).
    pub progress_refresh: Duration,
    /// Per-source rate limits and scanner User-Agents (`[sip.limits]`).
    pub limits: limit::Settings,
}

mod invite;

use invite::Dialog;
pub use invite::{EarlyDialog, ServerInvite, Stopped};

/// The layer above the edge that takes an INVITE for a tracking number from the UAS decision to
/// its final response (`flow::Calls`). The edge runs the returned future as a tracked task, so
/// shutdown can wait for it and the transport keeps serving meanwhile.
pub trait Calls: Send + Sync {
    fn offer(
        self: Arc<Self>,
        invite: ServerInvite,
        route: Arc<Route>,
    ) -> futures::future::BoxFuture<'static, ()>;
}

/// An INVITE still waiting for its final response, kept so a CANCEL can answer it with 487.
/// The flow owns the final answer: CANCEL answers 200 and cancels the flow, which stops any
/// announcement and sends the 487 after the call's events are written.
struct Pending {
    to_tag: String,
    cancel: tokio_util::sync::CancellationToken,
}

pub struct Edge {
    table: Mutex<Transactions<ReplyTo>>,
    pending: Mutex<HashMap<Key, Pending>>,
    /// Early dialogs (calls with an announcement playing), by Call-ID: where INFO and PRACK go.
    dialogs: Mutex<HashMap<String, Arc<Dialog>>>,
    /// Call flows in progress, so shutdown can let them finish (bounded).
    flows: tokio_util::task::TaskTracker,
    /// The layer that runs a routed call's flow.
    calls: Arc<dyn Calls>,
    /// Our Contact's host when the socket is bound to a wildcard address and no
    /// `advertise_host` is set: the `[media] address`, the very lock the media settings hold,
    /// so a reload moves both at once.
    contact_address: Arc<std::sync::RwLock<std::net::IpAddr>>,
    /// The number pool and campaigns; replaced whole on a config reload.
    routing: std::sync::RwLock<Arc<Routing>>,
    metrics: Arc<Stats>,
    settings: EdgeSettings,
    acl_denied: Occurrence,
    write_failed: Occurrence,
    limiter: Mutex<Limiter>,
    scanners: Scanners,
    rate_limited: Occurrence,
    scanner_dropped: Occurrence,
    /// `sip_rate_limited` by class, taken once: a flood is counted without a family lookup.
    limited: [prometheus_client::metrics::counter::Counter; 2],
    dialer: std::sync::OnceLock<Arc<dyn Dial>>,
    /// Connections opened for §18.2.2, by destination.
    redials: Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>,
    /// Shutdown has begun: new calls get 503 while calls in progress finish.
    draining: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the table half-updated in a way that matters
    // more than refusing service forever would.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Edge {
    fn contact_address(&self) -> std::net::IpAddr {
        *self
            .contact_address
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn new(
        table: Transactions<ReplyTo>,
        routing: Routing,
        calls: Arc<dyn Calls>,
        metrics: Arc<Stats>,
        settings: EdgeSettings,
        contact_address: Arc<std::sync::RwLock<std::net::IpAddr>>,
    ) -> Self {
        let limited = [
            metrics.rate_limited(SourceLabel::Trusted),
            metrics.rate_limited(SourceLabel::Untrusted),
        ];
        Self {
            limiter: Mutex::new(Limiter::new(&settings.limits)),
            scanners: Scanners::new(&settings.limits.scanner_user_agents),
            rate_limited: Occurrence::default(),
            scanner_dropped: Occurrence::new(Duration::from_secs(60)),
            limited,
            table: Mutex::new(table),
            pending: Mutex::new(HashMap::new()),
            dialogs: Mutex::new(HashMap::new()),
            flows: tokio_util::task::TaskTracker::new(),
            calls,
            contact_address,
            routing: std::sync::RwLock::new(Arc::new(routing)),
            metrics,
            settings,
            acl_denied: Occurrence::new(Duration::from_secs(60)),
            write_failed: Occurrence::default(),
            dialer: std::sync::OnceLock::new(),
            redials: Mutex::new(HashMap::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The per-source rate limit, before any parsing: whether a message or connection from
    /// `source` (inside the trunk ACL when `trusted`) may go on. A refusal is counted.
    pub fn admit(&self, source: std::net::IpAddr, trusted: bool) -> bool {
        let class = if trusted {
            Class::Trusted
        } else {
            Class::Untrusted
        };
        let admitted = lock(&self.limiter).admit(class, source, Instant::now());
        if let Err(why) = admitted {
            let counter = &self.limited[usize::from(!trusted)];
            if let Some(suppressed) = self.rate_limited.record(counter) {
                debug!(
                    suppressed,
                    trusted,
                    reason = match why {
                        limit::Refusal::OverRate => "over rate",
                        limit::Refusal::TableFull => "source table full",
                    },
                    "Messages dropped by the per-source rate limit."
                );
            }
            return false;
        }
        true
    }

    /// A known scanner's message: counted and dropped unanswered.
    fn is_scanner(&self, frame: &[u8]) -> bool {
        if !self.scanners.matches(frame) {
            return false;
        }
        if let Some(suppressed) = self
            .scanner_dropped
            .record(&self.metrics.sip_scanners_dropped)
        {
            debug!(suppressed, "Message from a known SIP scanner dropped.");
        }
        true
    }

    /// Takes a new number pool and campaigns (config reload); calls in progress keep theirs.
    pub fn set_routing(&self, routing: Routing) {
        *self.routing.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(routing);
    }

    pub fn metrics(&self) -> &Stats {
        &self.metrics
    }

    /// Calls for tracking numbers whose flow has not ended yet.
    pub fn calls_in_flight(&self) -> usize {
        self.flows.len()
    }

    /// Calls with an announcement playing.
    pub fn calls_announcing(&self) -> usize {
        lock(&self.dialogs).len()
    }

    /// Live server transactions.
    pub fn transactions(&self) -> usize {
        lock(&self.table).len()
    }

    /// Shutdown: from now on a new INVITE for a tracking number gets 503 with Retry-After (the
    /// carrier tries its next route), while everything else is still answered.
    pub fn stop_taking_calls(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (at most `limit`) for call flows in progress, e.g. announcements, to send their
    /// final responses and write their events, then (within the same bound) for those finals'
    /// ACKs, so the transports must still run. Returns how many flows were still running.
    pub async fn drain(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        self.flows.close();
        let _ = tokio::time::timeout_at(deadline, self.flows.wait()).await;
        while lock(&self.table).awaiting_ack() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.flows.len()
    }

    /// Fires due timers (Timer G retransmissions, expiry) and returns when to call again.
    pub async fn tick(&self, now: Instant) -> Option<Instant> {
        let (sends, next, stats, live) = {
            let mut table = lock(&self.table);
            let sends = table.poll(now);
            (sends, table.next_deadline(), table.stats(), table.len())
        };
        let m = &self.metrics;
        raise_to(&m.sip_finals_retransmitted, stats.finals_retransmitted);
        raise_to(&m.sip_ack_timeouts, stats.ack_timeouts);
        raise_to(
            &m.sip_retransmissions_absorbed,
            stats.retransmissions_absorbed,
        );
        raise_to(&m.sip_proceeding_timeouts, stats.proceeding_timeouts);
        raise_to(&m.sip_transaction_budget_refusals, stats.budget_refusals());
        m.sip_transactions
            .set(i64::try_from(live).unwrap_or(i64::MAX));
        for (to, bytes) in sends {
            self.deliver(&to, bytes).await;
        }
        next
    }

    /// Handles one framed message.
    pub async fn on_frame(self: &Arc<Self>, frame: Bytes, arrival: &Arrival) {
        if self.is_scanner(&frame) {
            return;
        }
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
        self.deliver(&to, bytes).await;
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
        if !reject || !self.admit(arrival.source.ip(), false) {
            return;
        }
        let Ok(frame) = frame_datagram(datagram, usize::MAX) else {
            return;
        };
        if self.is_scanner(&frame) {
            return;
        }
        // Stateless: one 403 per request and never a retransmission, so a spoofed source can
        // make us send at most what it sends (and the untrusted rate limit bounds even that).
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
            let to = self.reply_to(req.reply_headers(), arrival);
            self.deliver(&to, bytes).await;
        }
    }

    async fn on_request(self: &Arc<Self>, req: Request, arrival: &Arrival) {
        let arrived = Instant::now();
        self.metrics.request(method_label(&req.method));
        let key = transaction_key(&req);
        let now = arrived;
        match &req.method {
            Method::Ack => {
                let _ = lock(&self.table).on_ack(&key, now);
                return;
            }
            Method::Cancel => return self.on_cancel(req, key, arrival, now).await,
            _ => {}
        }
        let mut reply = req.reply_headers().clone();
        if let Some(answer) = crate::sip::mediasec::answer(&req.headers) {
            reply.echo.push(("Security-Server", answer));
        }
        let to = self.reply_to(&reply, arrival);
        let received =
            lock(&self.table).on_request(key.clone(), to.clone(), arrival.reliable(), now);
        match received {
            Received::New => {}
            Received::Retransmission(resend) => {
                if let Some((to, bytes)) = resend {
                    self.deliver(&to, bytes).await;
                }
                return;
            }
            Received::Overloaded | Received::OverBudget => {
                if matches!(received, Received::Overloaded) {
                    self.metrics.sip_overloaded.inc();
                }
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
                self.deliver(&to, bytes).await;
                return;
            }
            Received::Ack | Received::StrayAck => return,
        }
        let to_tag = crate::sip::generate_tag();
        if req.to().tag().is_none() && self.merged(&req, &key) {
            // §8.2.2.2: the same request by another path (a forking proxy upstream): no second
            // flow, no second set of events.
            self.metrics.sip_merged_requests.inc();
            let bytes = self.build(&reply, arrival, 482, &to_tag, &[], None);
            return self.respond(&key, 482, bytes).await;
        }
        let invite = req.method == Method::Invite;
        if invite {
            // §17.2.1: 100 Trying at once, so the carrier stops retransmitting the INVITE.
            let trying = self.build(&reply, arrival, 100, &to_tag, &[], None);
            self.respond(&key, 100, trying).await;
        }
        let answered = match req.method {
            Method::Info => self.on_info(&req),
            Method::Prack => self.on_prack(&req),
            _ => None,
        };
        if let Some(status) = answered {
            let bytes = self.build(&reply, arrival, status, &to_tag, &[], None);
            return self.respond(&key, status, bytes).await;
        }
        let decision = if insecure_sips(&req, arrival) {
            // RFC 5630 §3.1.3: a SIPS request promises TLS on every hop; this one was not.
            Decision::Reply {
                status: 416,
                headers: Vec::new(),
            }
        } else {
            let routing = self
                .routing
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            uas::decide(&req, &routing)
        };
        match decision {
            Decision::Reply { status, headers } => {
                let bytes = self.build(&reply, arrival, status, &to_tag, &headers, None);
                self.respond(&key, status, bytes).await;
                if invite {
                    self.metrics.final_after(status, arrived.elapsed());
                }
            }
            Decision::Redirect(_) if self.is_draining() => {
                let headers = [("Retry-After", "30".to_owned())];
                let bytes = self.build(&reply, arrival, 503, &to_tag, &headers, None);
                self.respond(&key, 503, bytes).await;
                self.metrics.final_after(503, arrived.elapsed());
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
                let invite = ServerInvite {
                    edge: self.clone(),
                    req,
                    key,
                    reply,
                    arrival: arrival.clone(),
                    to_tag,
                    at: chrono::Utc::now(),
                    arrived,
                    cancel,
                };
                self.flows.spawn(self.calls.clone().offer(invite, route));
            }
        }
    }

    /// §9.2: a CANCEL is its own transaction; it ends a pending INVITE with 487.
    async fn on_cancel(&self, req: Request, key: Key, arrival: &Arrival, now: Instant) {
        let reply = req.reply_headers();
        let to = self.reply_to(reply, arrival);
        let received = lock(&self.table).on_request(key.clone(), to, arrival.reliable(), now);
        match received {
            Received::New => {}
            Received::Retransmission(Some((to, bytes))) => {
                self.deliver(&to, bytes).await;
                return;
            }
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

    /// Whether a request without To tag repeats a live transaction's From tag, Call-ID and CSeq
    /// under another transaction key (RFC 3261 §8.2.2.2); otherwise it claims them.
    fn merged(&self, req: &Request, key: &Key) -> bool {
        let cseq = req.cseq();
        let mut table = lock(&self.table);
        let origin = table.origin(
            req.from().tag().unwrap_or_default(),
            req.call_id(),
            cseq.seq,
            req.method.as_str(),
        );
        table.claim_origin(key, origin) == Claim::Merged
    }

    /// SIP INFO in an early dialog (the objection key as `application/dtmf-relay`, for
    /// carriers that do not pass RFC 4733 events): the dialog's stop rule decides whether it
    /// stops the announcement. `None` defers to the UAS.
    fn on_info(&self, req: &Request) -> Option<u16> {
        let control = lock(&self.dialogs).get(req.call_id()).cloned()?;
        let in_dialog = req.to().tag() == Some(control.to_tag.as_str())
            && req.from().tag().unwrap_or_default() == control.from_tag
            && req.cseq().seq > control.invite_cseq;
        if !in_dialog {
            self.metrics.info_outside_dialog.inc();
            return Some(481);
        }
        if (control.stops)(&req.body) {
            control
                .stopped_by_info
                .store(true, std::sync::atomic::Ordering::Relaxed);
            control.stop.cancel();
        }
        Some(200)
    }

    /// PRACK (RFC 3262 §7.2) for a call in its announcement: 200 when it acknowledges our
    /// reliable 183, 481 when it matches none. `None` (no such call) defers to the UAS (481).
    fn on_prack(&self, req: &Request) -> Option<u16> {
        let control = lock(&self.dialogs).get(req.call_id()).cloned()?;
        let reliable = control.reliable.as_ref()?;
        // The PRACK belongs to our early dialog only if it carries our To tag.
        if req.to().tag() != Some(control.to_tag.as_str()) {
            return Some(481);
        }
        let Some(rack) = req
            .headers
            .get("RAck")
            .and_then(crate::sip::reliable::RAck::parse)
        else {
            return Some(400);
        };
        match lock(reliable).on_prack(&rack) {
            crate::sip::reliable::Prack::Acknowledged => Some(200),
            crate::sip::reliable::Prack::Unknown => Some(481),
        }
    }

    async fn respond(&self, key: &Key, status: u16, bytes: Bytes) {
        let sent = lock(&self.table).respond(key, status, bytes, Instant::now());
        if let Ok((to, bytes)) = sent {
            self.metrics.response(status);
            self.deliver(&to, bytes).await;
        }
    }

    /// Every send goes through here, so a stream writer that cannot take more is counted.
    async fn deliver(&self, to: &ReplyTo, bytes: Bytes) {
        let failed = match to.send(bytes.clone()).await {
            Ok(()) => return,
            Err(why) => why,
        };
        if let (
            Undelivered::Closed,
            ReplyTo::Stream {
                redial: Some(dest), ..
            },
        ) = (failed, to)
            && self.redial(*dest, bytes).await
        {
            return;
        }
        if let Some(suppressed) = self.write_failed.record(&self.metrics.sip_write_queue_full) {
            warn!(
                suppressed,
                reason = if failed == Undelivered::QueueFull {
                    "writer queue full"
                } else {
                    "connection closed"
                },
                "Response not delivered on its stream connection."
            );
        }
    }

    /// §18.2.2: the connection the request came on is gone, so the response goes over a new one
    /// (kept per destination while it lasts, so a transaction's later responses reuse it).
    async fn redial(&self, dest: SocketAddr, bytes: Bytes) -> bool {
        let cached = lock(&self.redials)
            .get(&dest)
            .filter(|s| !s.is_closed())
            .cloned();
        let sender = match cached {
            Some(sender) => sender,
            None => {
                let Some(dialer) = self.dialer.get() else {
                    return false;
                };
                let Some(sender) = dialer.dial(dest).await else {
                    return false;
                };
                let mut redials = lock(&self.redials);
                redials.retain(|_, s| !s.is_closed());
                redials.insert(dest, sender.clone());
                sender
            }
        };
        let sent = sender.try_send(bytes).is_ok();
        if sent {
            self.metrics.sip_stream_redials.inc();
        }
        sent
    }

    /// The stream shell's dialer for §18.2.2 (set once, at start).
    pub fn set_dialer(&self, dialer: Arc<dyn Dial>) {
        let _ = self.dialer.set(dialer);
    }

    /// Our Contact for dialog-creating responses (§12.1.1): where in-dialog requests such as
    /// PRACK reach us, on the transport the request came on.
    fn contact(&self, arrival: &Arrival) -> String {
        let ip = if arrival.local.ip().is_unspecified() {
            self.contact_address()
        } else {
            arrival.local.ip()
        };
        let host = self
            .settings
            .advertise_host
            .clone()
            .unwrap_or_else(|| match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            });
        let port = arrival.local.port();
        match &arrival.transport {
            ArrivalTransport::Udp(_) => format!("<sip:{host}:{port}>"),
            ArrivalTransport::Stream {
                kind: StreamLabel::Tcp,
                ..
            } => format!("<sip:{host}:{port};transport=tcp>"),
            ArrivalTransport::Stream {
                kind: StreamLabel::Tls,
                ..
            } => format!("<sips:{host}:{port}>"),
        }
    }

    fn reply_to(&self, reply: &ReplyHeaders, arrival: &Arrival) -> ReplyTo {
        match &arrival.transport {
            ArrivalTransport::Stream { sender, kind } => ReplyTo::Stream {
                sender: sender.clone(),
                // §18.2.2: the `received` address (the source) and the sent-by port. TLS would
                // need a client identity and the peer's name to verify: not redialled.
                redial: (*kind == StreamLabel::Tcp).then(|| {
                    route::stream_destination(route::top_via(reply).as_ref(), arrival.source)
                }),
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
        if !self.settings.server_header.is_empty() {
            builder = builder.header("Server", &self.settings.server_header);
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
        Method::Info => MethodLabel::Info,
        Method::Prack => MethodLabel::Prack,
        _ => MethodLabel::Other,
    }
}

/// The request asks for SIPS (a `sips:` Request-URI, RFC 5630).
fn is_sips(req: &Request) -> bool {
    matches!(&req.uri, Uri::Sip(sip) if sip.secure)
}

/// A `sips:` Request-URI that did not come over TLS.
fn insecure_sips(req: &Request, arrival: &Arrival) -> bool {
    is_sips(req) && !arrival.secure()
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
    let identities = |name| {
        req.headers
            .get_all(name)
            .into_iter()
            .filter_map(|v| crate::sip::NameAddr::parse(v).ok())
            .collect::<Vec<_>>()
    };
    let first_user = |name| identities(name).iter().find_map(|na| user_of(&na.uri));
    // Remote-Party-ID without `party` names the calling party (draft-ietf-sip-privacy-04 §5).
    let calling_party = identities("Remote-Party-ID").into_iter().find(|na| {
        na.params
            .value("party")
            .is_none_or(|p| p.eq_ignore_ascii_case("calling"))
    });
    let from = req.from();
    CallerInput {
        p_asserted_user: first_user("P-Asserted-Identity"),
        p_preferred_user: first_user("P-Preferred-Identity"),
        remote_party_private: calling_party.as_ref().is_some_and(|na| {
            na.params
                .value("privacy")
                .is_some_and(crate::call::caller::remote_party_hides_number)
        }),
        remote_party_user: calling_party.as_ref().and_then(|na| user_of(&na.uri)),
        from_user: user_of(&from.uri),
        privacy: req
            .headers
            .get_all("Privacy")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        from_host: match &from.uri {
            Uri::Sip(sip) => Some(route::host_text(&sip.host)),
            _ => None,
        },
    }
}
