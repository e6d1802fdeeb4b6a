//! The INVITE-for-a-tracking-number flow: the disclosure hook (RFC 3960 early media with an
//! RFC 4733 objection key, an external announcer, or none), the call's events, then the 302.
//!
//! Durability rule: every event of the call is in the outbox before the final response (302,
//! 487, 503) is sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Arrival, Edge, MediaRefusalLabel, ReliableProvisional, lock};
use crate::call::disclosure::WithoutSdp;
use crate::call::{
    CallerIdentity, Consent, Disclosed, Disclosure, Hook, Observed, Outcome, Seconds, privacy,
};
use crate::media::{self, LocalMedia, PlayOutcome};
use crate::outbox;
use crate::sip::reliable::{Due, Reliable};
use crate::sip::transaction::Key;
use crate::sip::uas::Route;
use crate::sip::{ReplyHeaders, Request};

/// A call whose announcement is playing: what CANCEL, INFO and PRACK reach.
pub(super) struct Control {
    pub(super) cancel: CancellationToken,
    pub(super) objected: AtomicBool,
    pub(super) objection_digit: char,
    /// Our To tag: in-dialog requests (PRACK, INFO) must carry it.
    pub(super) to_tag: String,
    /// The caller's From tag and the INVITE's CSeq: an INFO belongs to the early dialog only
    /// with the same From tag and a higher CSeq (RFC 3261 §12.2.2), so an objection cannot be
    /// forged by anyone who merely learnt the Call-ID.
    pub(super) from_tag: String,
    pub(super) invite_cseq: u32,
    /// Present when the 183 goes out reliably (RFC 3262).
    pub(super) reliable: Option<Mutex<Reliable>>,
    /// Set when a reliable 183 was never acknowledged; the call then ends with 500.
    pub(super) prack_timed_out: AtomicBool,
}

/// How the flow ends.
enum Final {
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
    },
    /// The caller cancelled: 487 after the events.
    Terminated,
    /// The carrier never acknowledged our reliable 183 (RFC 3262 §3): a 5xx after the events.
    Unacknowledged,
}

/// Everything the flow needs from the INVITE, owned so the flow can run as its own task.
pub(super) struct Invite {
    pub(super) req: Request,
    pub(super) key: Key,
    pub(super) reply: ReplyHeaders,
    pub(super) arrival: Arrival,
    pub(super) to_tag: String,
    pub(super) at: DateTime<Utc>,
    /// The same moment on the monotonic clock, for the time-to-final histogram.
    pub(super) arrived: tokio::time::Instant,
    /// Cancelled by a CANCEL for this INVITE (§9.2).
    pub(super) cancel: CancellationToken,
}

/// Outbox room a call needs before it starts: more than one call's events (three lines of about
/// 600 bytes). `/ready` applies the same rule.
pub(crate) const CALL_RESERVE: u64 = 4096;

impl Edge {
    /// Runs the flow and sends the final response.
    pub(super) async fn redirect(self: Arc<Self>, invite: Invite, route: Arc<Route>) {
        self.metrics.calls_offered.inc();
        let outcome = self.disclose_and_record(&invite, &route).await;
        lock(&self.pending).remove(&invite.key);
        let (status, headers) = match outcome {
            Final::Respond { status, headers } => (status, headers),
            Final::Terminated => (487, Vec::new()),
            Final::Unacknowledged => {
                self.metrics.prack_timeouts.inc();
                (500, Vec::new())
            }
        };
        if status == 302 {
            self.metrics.calls_redirected.inc();
            debug!(campaign = %route.campaign_id, "Call redirected.");
        }
        let bytes = self.build(
            &invite.reply,
            &invite.arrival,
            status,
            &invite.to_tag,
            &headers,
            None,
        );
        self.respond(&invite.key, status, bytes).await;
        self.metrics.final_after(status, invite.arrived.elapsed());
    }

    /// The 302 Contact for `uri`. A SIPS request is redirected to a SIPS target (RFC 5630
    /// §3.1.3): a configured `sip:` destination is upgraded; `tel:` has no secure form.
    fn redirect_to(invite: &Invite, uri: &str) -> Final {
        let target = match uri.strip_prefix("sip:") {
            Some(rest) if super::is_sips(&invite.req) => format!("sips:{rest}"),
            _ => uri.to_owned(),
        };
        Final::Respond {
            status: 302,
            headers: vec![("Contact", format!("<{target}>"))],
        }
    }

    async fn disclose_and_record(&self, invite: &Invite, route: &Route) -> Final {
        let identity = self.recorder.identify(&super::caller_input(&invite.req));
        let plan = route.plan.clone();
        let redirect = |uri: &str| Self::redirect_to(invite, uri);
        if invite.cancel.is_cancelled() && plan.hook != Hook::EarlyMedia {
            // Cancelled before any notice or routing: the call ends here.
            let disclosure = if plan.hook == Hook::None {
                Disclosure::NotPlayed
            } else {
                Disclosure::Delegated
            };
            // Nobody told them anything yet: not informed, whatever the hook.
            let observed = self.observe(invite, &identity, route, disclosure, None, false);
            if let Ok(observed) = observed {
                let events = [
                    observed.offered(invite.at),
                    observed.abandoned(Utc::now(), Seconds::default()),
                ];
                let _ = self.append(&events).await;
            }
            return Final::Terminated;
        }
        match plan.hook {
            Hook::None => {
                let observed =
                    self.observe(invite, &identity, route, Disclosure::NotPlayed, None, false);
                self.record_routed(
                    observed,
                    &identity,
                    invite.at,
                    None,
                    redirect(&route.destination),
                )
                .await
            }
            Hook::External => {
                // The external announcer informs: the operator vouches for it by configuring it.
                let informed = privacy::informed(Disclosure::Delegated, Seconds::default(), None);
                let observed = self.observe(
                    invite,
                    &identity,
                    route,
                    Disclosure::Delegated,
                    None,
                    informed,
                );
                let uri = plan.external_uri.as_deref().unwrap_or(&route.destination);
                self.record_routed(observed, &identity, invite.at, None, redirect(uri))
                    .await
            }
            Hook::EarlyMedia => self.early_media(invite, route, &identity).await,
        }
    }

    async fn early_media(
        &self,
        invite: &Invite,
        route: &Route,
        identity: &CallerIdentity,
    ) -> Final {
        let plan = &route.plan;
        let cancel = invite.cancel.clone();
        let redirect = Self::redirect_to(invite, &route.destination);
        let Some(announcements) = plan.announcements.clone() else {
            return Final::Respond {
                status: 500,
                headers: Vec::new(),
            };
        };
        if let Some(refusal) = self.outbox_refusal() {
            return refusal;
        }
        if self.recorder.standing(identity).objected {
            // The caller objected on an earlier call: they are not asked again, and the call is
            // recorded without identifier (`consent: objected_earlier`).
            let observed = self.observe(invite, identity, route, Disclosure::Skipped, None, false);
            return self
                .record_routed(observed, identity, invite.at, None, redirect)
                .await;
        }
        // No SDP (or an offer that will not receive): no early media possible.
        // Read once: a reload between the SDP answer and the bind must not split the call.
        let media_address = self.media_address();
        let local = |port| LocalMedia {
            addr: media_address,
            port,
            session_id: rand::random::<u32>().into(),
        };
        // The UAS checks already refused bodies we cannot take; an error here is no offer.
        let offer = crate::sip::body::sdp(invite.req.content_type(), &invite.req.body)
            .ok()
            .flatten();
        let media = if offer.is_none() {
            None
        } else {
            match self.bind_media(media_address).await {
                Some(media) => Some(media),
                None => {
                    return Final::Respond {
                        status: 503,
                        headers: vec![("Retry-After", "5".to_owned())],
                    };
                }
            }
        };
        let negotiated = match media {
            None => None,
            Some((lease, socket)) => {
                let offer = offer.as_deref().unwrap_or_default();
                match media::negotiate(offer, local(lease.port())) {
                    Ok(answer) if answer.direction.sends() => self
                        .claim_destination(&answer)
                        .map(|claim| (answer, lease, socket, claim)),
                    Ok(_) => None,
                    Err(err) => {
                        debug!(error = %err, "SDP offer refused.");
                        let status = err.sip_status();
                        return Final::Respond {
                            status,
                            headers: vec![("Accept", "application/sdp".to_owned())],
                        };
                    }
                }
            }
        };
        let Some((answer, lease, socket, claim)) = negotiated else {
            let observed = self.observe(invite, identity, route, Disclosure::Skipped, None, false);
            return match plan.without_sdp {
                WithoutSdp::Skip => {
                    self.record_routed(observed, identity, invite.at, None, redirect)
                        .await
                }
                WithoutSdp::Reject => {
                    let Ok(observed) = observed else {
                        return Final::Respond {
                            status: 500,
                            headers: Vec::new(),
                        };
                    };
                    match self.append(&[observed.offered(invite.at)]).await {
                        Ok(()) => Final::Respond {
                            status: 403,
                            headers: Vec::new(),
                        },
                        Err(refusal) => refusal,
                    }
                }
            };
        };
        let reliable = self.wants_reliable(&invite.req).then(|| {
            Mutex::new(Reliable::new(
                self.settings.t1,
                invite.req.cseq().seq,
                Reliable::random_rseq(),
            ))
        });
        let control = Arc::new(Control {
            cancel: cancel.clone(),
            objected: AtomicBool::new(false),
            objection_digit: plan.objection_digit,
            to_tag: invite.to_tag.clone(),
            from_tag: invite.req.from().tag().unwrap_or_default().to_owned(),
            invite_cseq: invite.req.cseq().seq,
            reliable,
            prack_timed_out: AtomicBool::new(false),
        });
        lock(&self.calls).insert(invite.req.call_id().to_owned(), control.clone());
        let sdp = Bytes::from(answer.sdp.clone().into_bytes());
        self.send_progress(invite, &control, Some(sdp.clone()))
            .await;
        let country = match identity {
            CallerIdentity::Number(n) => Some(n.country_code()),
            CallerIdentity::Withheld => None,
        };
        let announcement = announcements.for_caller(country);
        let socket = Arc::new(socket);
        let play = media::play(
            socket.clone(),
            answer.remote,
            announcement.clone(),
            answer.codec,
            answer.te_pt,
            plan.objection_digit,
            cancel,
        );
        let outcome = self.play_with_refresh(play, invite, &control, sdp).await;
        drop(claim);
        lock(&self.calls).remove(invite.req.call_id());
        if let Some(reliable) = &control.reliable {
            lock(reliable).finish();
        }
        self.linger(lease, socket);
        self.metrics.announced(outcome.played);
        self.metrics
            .rtp_foreign_packets
            .inc_by(outcome.foreign_packets);

        let objected = outcome.objected || control.objected.load(Ordering::Relaxed);
        let unacknowledged = control.prack_timed_out.load(Ordering::Relaxed);
        let played = Seconds::from_duration(outcome.played);
        // The player stops for exactly one reason; an objection by SIP INFO and a PRACK
        // timeout both reach it as a cancel, so the flags say which cancel it was.
        let ended = if unacknowledged {
            Outcome::Unacknowledged
        } else if objected {
            Outcome::Objected
        } else if outcome.cancelled {
            Outcome::HungUp
        } else {
            Outcome::Complete
        };
        let disclosed = Disclosed {
            announcement_id: announcement.id.clone(),
            announcement_version: announcement.version.clone(),
            hook: Hook::EarlyMedia,
            played,
            complete: outcome.complete,
            recording_sha256: announcement.recording_sha256.clone(),
            outcome: ended,
        };
        let disclosure = if outcome.complete {
            Disclosure::Played
        } else {
            Disclosure::Partial
        };
        let informed = privacy::informed(disclosure, played, plan.informed_after);
        if outcome.cancelled && (!objected || unacknowledged) {
            // The caller hung up during the announcement (or the carrier never acknowledged our
            // reliable 183): no routing, the events say how far in.
            // Hung up before the notice's informing point: not informed, no identifier.
            let consent = if informed {
                Consent::Informed
            } else {
                Consent::Unknown
            };
            let observed =
                self.observe(invite, identity, route, disclosure, Some(consent), informed);
            let Ok(observed) = observed else {
                return Final::Terminated;
            };
            let now = Utc::now();
            let events = [
                observed.offered(invite.at),
                observed.disclosed(now, disclosed),
                observed.abandoned(now, played),
            ];
            if self.append(&events).await.is_ok() {
                self.recorder.remember(&observed, identity, invite.at);
            }
            return if unacknowledged {
                Final::Unacknowledged
            } else {
                Final::Terminated
            };
        }
        let consent = if objected {
            Consent::Objected
        } else {
            Consent::Informed
        };
        let observed = self.observe(invite, identity, route, disclosure, Some(consent), informed);
        self.record_routed(observed, identity, invite.at, Some(disclosed), redirect)
            .await
    }

    /// Whether the announcement may go to the answer's remote address (no reflection, see
    /// `media::destinations`). A refused address makes the call one without usable SDP: the
    /// campaign's `without_sdp` decides (skip: routed without notice; reject: 403), no 183 and
    /// no RTP go out, so a spoofed INVITE gets us to send nothing anywhere but to its source.
    fn claim_destination(&self, answer: &media::Answer) -> Option<media::destinations::Claim> {
        use media::destinations::Refused;
        match self.media.destinations.claim(answer.remote.ip()) {
            Ok(claim) => Some(claim),
            Err(why) => {
                let reason = match why {
                    Refused::OutsideNetworks => MediaRefusalLabel::OutsideNetworks,
                    Refused::TooManyStreams => MediaRefusalLabel::StreamCap,
                };
                self.metrics.media_refused(reason).inc();
                debug!(error = %why, "No early media: the offer's address was refused.");
                None
            }
        }
    }

    /// Keeps an announcement's port and socket for a while after playback: the caller's RTP
    /// keeps arriving until the carrier has acted on our final response, and a port handed to
    /// the next call too early would feed that stray audio (and key presses) into it. The port
    /// returns to the pool only once its socket is closed.
    fn linger(&self, lease: media::PortLease, socket: Arc<UdpSocket>) {
        let linger = self.media.linger;
        // Not a call flow: shutdown and the in-flight count do not wait for it.
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            drop(socket);
            drop(lease);
        });
    }

    /// A leased RTP port with its socket. A port another process holds is skipped (its lease
    /// goes back to the end of the queue), a few times at most.
    async fn bind_media(&self, address: std::net::IpAddr) -> Option<(media::PortLease, UdpSocket)> {
        for _ in 0..8 {
            let lease = self.media.ports.acquire()?;
            if let Ok(socket) = UdpSocket::bind((address, lease.port())).await {
                return Some((lease, socket));
            }
        }
        None
    }

    /// Whether this INVITE's 183 goes out reliably (RFC 3262 §3).
    fn wants_reliable(&self, req: &Request) -> bool {
        let lists = |name| {
            req.headers
                .get_all(name)
                .iter()
                .any(|t| t.trim().eq_ignore_ascii_case("100rel"))
        };
        match self.settings.reliable_provisional {
            ReliableProvisional::WhenSupported => lists("Require") || lists("Supported"),
            ReliableProvisional::WhenRequired => lists("Require"),
        }
    }

    /// Sends a 183 (with `sdp`, the answer, when given): reliably if the call uses RFC 3262,
    /// and then only when no earlier reliable 183 is still unacknowledged (§3). It creates the
    /// early dialog, so it carries our Contact and the request's Record-Route (§12.1.1).
    async fn send_progress(&self, invite: &Invite, control: &Control, sdp: Option<Bytes>) {
        let mut headers: Vec<(&'static str, String)> = invite
            .req
            .headers
            .lines_of("Record-Route")
            .map(|rr| ("Record-Route", rr.to_owned()))
            .collect();
        headers.push(("Contact", self.contact(&invite.arrival)));
        headers.push(("Allow", crate::sip::uas::ALLOW.to_owned()));
        headers.push(("Supported", crate::sip::uas::SUPPORTED.to_owned()));
        let rseq = match &control.reliable {
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
        let bytes = self.build(
            &invite.reply,
            &invite.arrival,
            183,
            &invite.to_tag,
            &headers,
            body,
        );
        if let Some(reliable) = &control.reliable {
            lock(reliable).sent(bytes.clone(), tokio::time::Instant::now());
        }
        self.respond(&invite.key, 183, bytes).await;
    }

    /// Plays while resending the 183 every `refresh` (carriers' provisional timers) and, for
    /// a reliable 183, retransmitting it until PRACK (T1 doubling) or giving up after 64×T1.
    async fn play_with_refresh(
        &self,
        play: impl Future<Output = PlayOutcome>,
        invite: &Invite,
        control: &Control,
        sdp: Bytes,
    ) -> PlayOutcome {
        tokio::pin!(play);
        let start = tokio::time::Instant::now() + self.media.refresh;
        let mut refresh = tokio::time::interval_at(start, self.media.refresh);
        loop {
            let due = control
                .reliable
                .as_ref()
                .and_then(|r| lock(r).next_deadline());
            tokio::select! {
                outcome = &mut play => return outcome,
                _ = refresh.tick() => {
                    // A reliable refresh repeats no SDP: a second answer would be a new offer
                    // (RFC 6337 §3.1); unreliable ones repeat the answer as before.
                    let body = control.reliable.is_none().then(|| sdp.clone());
                    self.send_progress(invite, control, body).await;
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)),
                    if due.is_some() =>
                {
                    let Some(reliable) = &control.reliable else { continue };
                    let step = lock(reliable).poll(tokio::time::Instant::now());
                    match step {
                        Due::Retransmit(bytes) => {
                            self.metrics.reliable_provisionals_retransmitted.inc();
                            self.respond(&invite.key, 183, bytes).await;
                        }
                        Due::TimedOut => {
                            control.prack_timed_out.store(true, Ordering::Relaxed);
                            control.cancel.cancel();
                        }
                        Due::Idle => {}
                    }
                }
            }
        }
    }

    fn observe(
        &self,
        invite: &Invite,
        identity: &CallerIdentity,
        route: &Route,
        disclosure: Disclosure,
        consent: Option<Consent>,
        informed: bool,
    ) -> Result<Observed, crate::call::KeyError> {
        let observed = self.recorder.observe(
            invite.req.call_id(),
            identity,
            disclosure,
            consent,
            informed,
            &route.campaign_id,
            &route.tracking_number,
            invite.at,
        );
        if observed.is_err() {
            self.metrics.key_failures.inc();
        }
        observed
    }

    /// offered (+ disclosed) + routed, then the redirect.
    async fn record_routed(
        &self,
        observed: Result<Observed, crate::call::KeyError>,
        identity: &CallerIdentity,
        offered_at: DateTime<Utc>,
        disclosed: Option<Disclosed>,
        redirect: Final,
    ) -> Final {
        let observed = match observed {
            Ok(observed) => observed,
            Err(err) => {
                warn!(error = %err, "Call could not be recorded; refusing it.");
                return Final::Respond {
                    status: 500,
                    headers: Vec::new(),
                };
            }
        };
        let now = Utc::now();
        let mut events = vec![observed.offered(offered_at)];
        if let Some(disclosed) = disclosed {
            events.push(observed.disclosed(now, disclosed));
        }
        events.push(observed.routed(now));
        match self.append(&events).await {
            Ok(()) => {
                self.recorder.remember(&observed, identity, offered_at);
                redirect
            }
            Err(refusal) => refusal,
        }
    }

    /// The 503 for a call the outbox has no room for; counted, logged at most once a while.
    fn refuse_full(&self) -> Final {
        if let Some(suppressed) = self.outbox_full.record(&self.metrics.outbox_full) {
            warn!(
                suppressed,
                "Outbox full; refusing calls with 503 until it drains."
            );
        }
        Final::Respond {
            status: 503,
            headers: vec![("Retry-After", "30".to_owned())],
        }
    }

    /// Whether the outbox can still take this call's events (`None`), else the 503 to send.
    /// Asked before the announcement: a call that cannot be recorded gets its 503 at once, not
    /// after the caller heard the notice.
    fn outbox_refusal(&self) -> Option<Final> {
        match self.outbox.usage() {
            Ok(u) if u.no_space => {
                // Counted with failed writes: the file system, not the cap, is the limit.
                if let Some(suppressed) = self.outbox_error.record(&self.metrics.outbox_errors) {
                    warn!(
                        suppressed,
                        "Outbox file system full; refusing calls with 503 until space returns."
                    );
                }
                Some(Final::Respond {
                    status: 503,
                    headers: vec![("Retry-After", "30".to_owned())],
                })
            }
            Ok(u) if u.has_room(CALL_RESERVE) => None,
            _ => Some(self.refuse_full()),
        }
    }

    /// Appends a call's events in one batch; a refusal becomes the 503 to send.
    async fn append(&self, events: &[Vec<u8>]) -> Result<(), Final> {
        let lines: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        match self.outbox.append_batch(&lines).await {
            Ok(_) => {
                self.metrics.events_written.inc_by(lines.len() as u64);
                Ok(())
            }
            Err(outbox::Error::Full) => Err(self.refuse_full()),
            Err(err) => {
                if let Some(suppressed) = self.outbox_error.record(&self.metrics.outbox_errors) {
                    warn!(error = %err, suppressed, "Outbox write failed; refusing calls with 503.");
                }
                Err(Final::Respond {
                    status: 503,
                    headers: vec![("Retry-After", "30".to_owned())],
                })
            }
        }
    }
}
