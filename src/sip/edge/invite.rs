//! The server side of one INVITE for a tracking number, as the call flow above sees it: the
//! request, its CANCEL, the early dialog (183, RFC 3262 reliability, the 183 refresh, INFO
//! digits) and the one final response. The flow decides what to send; this handle knows how
//! (tags, Contact, Record-Route, RSeq, retransmissions) and keeps the transaction table right.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{Arrival, Edge, ReliableProvisional, lock};
use crate::call::CallerInput;
use crate::sip::reliable::{Due, Reliable};
use crate::sip::transaction::Key;
use crate::sip::{ReplyHeaders, Request};

/// An INVITE waiting for the flow's final response. Dropping it without `finish` (a flow that
/// panicked) still forgets the pending entry; the transaction then times out as any other.
pub struct ServerInvite {
    pub(super) edge: Arc<Edge>,
    pub(super) req: Request,
    pub(super) key: Key,
    pub(super) reply: ReplyHeaders,
    pub(super) arrival: Arrival,
    pub(super) to_tag: String,
    pub(super) at: DateTime<Utc>,
    /// The same moment on the monotonic clock, for the time-to-final histogram.
    pub(super) arrived: tokio::time::Instant,
    /// Cancelled by a CANCEL for this INVITE (§9.2), and in its early dialog by a stopping INFO
    /// or a PRACK timeout.
    pub(super) cancel: CancellationToken,
}

/// What made an early dialog's stop token fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// CANCEL (the caller hung up).
    Cancelled,
    /// An INFO in the dialog carried what its stop rule looks for (the objection key).
    Info,
    /// The reliable 183 was never acknowledged by PRACK (RFC 3262 §3).
    Unacknowledged,
}

/// Whether an in-dialog INFO body stops the dialog; the flow above owns the rule.
pub(super) type StopRule = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// An early dialog's state that in-dialog requests (INFO, PRACK) reach, by Call-ID.
pub(super) struct Dialog {
    pub(super) stop: CancellationToken,
    pub(super) stops: StopRule,
    pub(super) stopped_by_info: AtomicBool,
    /// Our To tag: in-dialog requests (PRACK, INFO) must carry it.
    pub(super) to_tag: String,
    /// The caller's From tag and the INVITE's CSeq: an INFO belongs to the early dialog only
    /// with the same From tag and a higher CSeq (RFC 3261 §12.2.2), so an objection cannot be
    /// forged by anyone who merely learnt the Call-ID.
    pub(super) from_tag: String,
    pub(super) invite_cseq: u32,
    /// Present when the 183 goes out reliably (RFC 3262).
    pub(super) reliable: Option<Mutex<Reliable>>,
    pub(super) prack_timed_out: AtomicBool,
}

/// The early dialog of a `ServerInvite` while it lasts; dropping it closes it.
pub struct EarlyDialog<'a> {
    invite: &'a ServerInvite,
    dialog: Arc<Dialog>,
}

impl ServerInvite {
    pub fn request(&self) -> &Request {
        &self.req
    }

    /// When the INVITE arrived (the call's time in its events).
    pub fn received_at(&self) -> DateTime<Utc> {
        self.at
    }

    /// Fired by CANCEL, and in the early dialog by a stopping INFO or a PRACK timeout.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The caller's identity inputs (never a display name).
    /// The address of the hop that sent the INVITE (the trunk peer, not the caller).
    pub fn source(&self) -> std::net::IpAddr {
        self.arrival.source.ip()
    }

    pub fn caller(&self) -> CallerInput {
        super::caller_input(&self.req)
    }

    /// The 3xx Contact for `uri`. A SIPS request is redirected to a SIPS target (RFC 5630
    /// §3.1.3): a `sip:` destination is upgraded; `tel:` has no secure form.
    pub fn contact_for(&self, uri: &str) -> String {
        match uri.strip_prefix("sip:") {
            Some(rest) if super::is_sips(&self.req) => format!("<sips:{rest}>"),
            _ => format!("<{uri}>"),
        }
    }

    /// Opens the early dialog: from now on INFO and PRACK for it are answered, and an INFO
    /// whose body `stops` accepts fires the stop token.
    pub fn early_dialog(
        &self,
        stops: impl Fn(&[u8]) -> bool + Send + Sync + 'static,
    ) -> EarlyDialog<'_> {
        let edge = &self.edge;
        let reliable = self.wants_reliable().then(|| {
            Mutex::new(Reliable::new(
                edge.settings.t1,
                self.req.cseq().seq,
                Reliable::random_rseq(),
            ))
        });
        let dialog = Arc::new(Dialog {
            stop: self.cancel.clone(),
            stops: Box::new(stops),
            stopped_by_info: AtomicBool::new(false),
            to_tag: self.to_tag.clone(),
            from_tag: self.req.from().tag().unwrap_or_default().to_owned(),
            invite_cseq: self.req.cseq().seq,
            reliable,
            prack_timed_out: AtomicBool::new(false),
        });
        lock(&edge.dialogs).insert(self.req.call_id().to_owned(), dialog.clone());
        EarlyDialog {
            invite: self,
            dialog,
        }
    }

    /// Whether this INVITE's 183 goes out reliably (RFC 3262 §3).
    fn wants_reliable(&self) -> bool {
        let lists = |name| {
            self.req
                .headers
                .get_all(name)
                .iter()
                .any(|t| t.trim().eq_ignore_ascii_case("100rel"))
        };
        match self.edge.settings.reliable_provisional {
            ReliableProvisional::WhenSupported => lists("Require") || lists("Supported"),
            ReliableProvisional::WhenRequired => lists("Require"),
        }
    }

    /// Sends the final response that ends the INVITE transaction.
    pub async fn finish(self, status: u16, headers: &[(&'static str, String)]) {
        lock(&self.edge.pending).remove(&self.key);
        let bytes = self.build(status, headers, None);
        self.edge.respond(&self.key, status, bytes).await;
        self.edge
            .metrics
            .final_after(status, self.arrived.elapsed());
    }

    fn build(
        &self,
        status: u16,
        headers: &[(&'static str, String)],
        body: Option<(&str, Bytes)>,
    ) -> Bytes {
        self.edge.build(
            &self.reply,
            &self.arrival,
            status,
            &self.to_tag,
            headers,
            body,
        )
    }
}

impl Drop for ServerInvite {
    fn drop(&mut self) {
        lock(&self.edge.pending).remove(&self.key);
    }
}

impl EarlyDialog<'_> {
    /// Sends a 183 (with `sdp`, the answer, when given): reliably if the call uses RFC 3262,
    /// and then only when no earlier reliable 183 is still unacknowledged (§3). It creates the
    /// early dialog, so it carries our Contact and the request's Record-Route (§12.1.1).
    pub async fn progress(&self, sdp: Option<Bytes>) {
        let invite = self.invite;
        let mut headers: Vec<(&'static str, String)> = invite
            .req
            .headers
            .lines_of("Record-Route")
            .map(|rr| ("Record-Route", rr.to_owned()))
            .collect();
        headers.push(("Contact", invite.edge.contact(&invite.arrival)));
        headers.push(("Allow", crate::sip::uas::ALLOW.to_owned()));
        headers.push(("Supported", crate::sip::uas::SUPPORTED.to_owned()));
        let rseq = match &self.dialog.reliable {
            Some(reliable) => {
                let r = lock(reliable);
                if !r.can_send() {
                    return;
                }
                Some(r.next_rseq())
            }
            None => None,
        };
        if let Some(rseq) = rseq {
            headers.push(("Require", "100rel".to_owned()));
            headers.push(("RSeq", rseq.to_string()));
        }
        let body = sdp.map(|sdp| ("application/sdp", sdp));
        let bytes = invite.build(183, &headers, body);
        if let Some(reliable) = &self.dialog.reliable {
            lock(reliable).sent(bytes.clone(), tokio::time::Instant::now());
        }
        invite.edge.respond(&invite.key, 183, bytes).await;
    }

    /// Runs `work` (the announcement) while keeping the early dialog alive: the 183 is resent
    /// every `[media] refresh_seconds` (carriers' provisional timers) and, when reliable,
    /// retransmitted until PRACK (T1 doubling); after 64×T1 without PRACK the stop token fires.
    pub async fn hold<F: Future>(&self, work: F, sdp: Bytes) -> F::Output {
        let edge = &self.invite.edge;
        let reliable = self.dialog.reliable.as_ref();
        tokio::pin!(work);
        let every = edge.settings.progress_refresh;
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let due = reliable.and_then(|r| lock(r).next_deadline());
            tokio::select! {
                output = &mut work => return output,
                _ = refresh.tick() => {
                    // A reliable refresh repeats no SDP: a second answer would be a new offer
                    // (RFC 6337 §3.1); unreliable ones repeat the answer as before.
                    let body = reliable.is_none().then(|| sdp.clone());
                    self.progress(body).await;
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)),
                    if due.is_some() =>
                {
                    let Some(reliable) = reliable else { continue };
                    let step = lock(reliable).poll(tokio::time::Instant::now());
                    match step {
                        Due::Retransmit(bytes) => {
                            edge.metrics.reliable_provisionals_retransmitted.inc();
                            edge.respond(&self.invite.key, 183, bytes).await;
                        }
                        Due::TimedOut => {
                            self.dialog.prack_timed_out.store(true, Ordering::Relaxed);
                            self.dialog.stop.cancel();
                        }
                        Due::Idle => {}
                    }
                }
            }
        }
    }

    /// Why the stop token fired: it is shared by CANCEL, the stop digit by INFO and the PRACK
    /// timeout, so the flags set before it say which.
    pub fn stopped_by(&self) -> Stopped {
        if self.dialog.prack_timed_out.load(Ordering::Relaxed) {
            Stopped::Unacknowledged
        } else if self.dialog.stopped_by_info.load(Ordering::Relaxed) {
            Stopped::Info
        } else {
            Stopped::Cancelled
        }
    }
}

impl Drop for EarlyDialog<'_> {
    fn drop(&mut self) {
        lock(&self.invite.edge.dialogs).remove(self.invite.req.call_id());
        if let Some(reliable) = &self.dialog.reliable {
            lock(reliable).finish();
        }
    }
}
