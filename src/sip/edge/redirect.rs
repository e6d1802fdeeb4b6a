//! The shell that runs a call's flow (`flow::Flow`, which holds its rules) against the world:
//! the outbox, the RTP port pool and player, the 183 and the final response. The disclosure
//! hook is RFC 3960 early media with an RFC 4733 objection key, an external announcer, or none.
//!
//! Durability rule (the flow's): every event of the call is in the outbox before the final
//! response (302, 487, 403) is sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Arrival, Edge, MediaRefusalLabel, ReliableProvisional, lock};
use crate::call::{CallerIdentity, Cut, Disclosed, Hook, Observation, Seconds};
use crate::flow::{self, Action, Ending, Final, Flow, Input, Played, Record, Room, Unwritten};
use crate::media::wav::Announcement;
use crate::media::{self, LocalMedia, PlayEnd, PlayOutcome};
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

/// Early media ready to play: the port, its socket, the SDP answer and the destination's claim.
struct ReadyMedia {
    answer: media::Answer,
    lease: media::PortLease,
    socket: UdpSocket,
    claim: media::destinations::Claim,
}

impl Control {
    /// Why a playback stopped by the cancel token was stopped: the token is shared by CANCEL,
    /// an objection by SIP INFO and the PRACK timeout, so the flags set before it say which.
    fn stopped_by(&self) -> Cut {
        if self.prack_timed_out.load(Ordering::Relaxed) {
            Cut::Unacknowledged
        } else if self.objected.load(Ordering::Relaxed) {
            Cut::Objected
        } else {
            Cut::HungUp
        }
    }
}

impl Edge {
    /// Runs the flow and sends the final response.
    pub(super) async fn redirect(self: Arc<Self>, invite: Invite, route: Arc<Route>) {
        self.metrics.calls_offered.inc();
        let last = self.run_flow(&invite, &route).await;
        lock(&self.pending).remove(&invite.key);
        let (status, headers) = self.final_response(&invite, &route, last);
        match last {
            Final::Redirect | Final::RedirectToAnnouncer => {
                self.metrics.calls_redirected.inc();
                debug!(campaign = %route.campaign_id, "Call redirected.");
            }
            Final::Unacknowledged => {
                self.metrics.prack_timeouts.inc();
            }
            _ => {}
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

    /// Feeds the flow what it asks for until it names its final response. A CANCEL is told to
    /// the flow before the next action, once; during the announcement the player sees it.
    async fn run_flow(&self, invite: &Invite, route: &Route) -> Final {
        let identity = self.recorder.identify(&super::caller_input(&invite.req));
        let campaign = &route.plan;
        let plan = flow::Plan {
            hook: campaign.hook,
            without_sdp: campaign.without_sdp,
            informed_after: campaign.informed_after,
            has_recording: campaign.announcements.is_some(),
            objected_earlier: campaign.hook == Hook::EarlyMedia
                && self.recorder.standing(&identity).objected,
        };
        let (mut flow, mut action) = Flow::start(plan);
        let mut ready = None;
        let mut heard = None;
        let mut told_cancel = false;
        loop {
            if !told_cancel && invite.cancel.is_cancelled() {
                told_cancel = true;
                action = flow.on(Input::Cancelled);
            }
            action = match action {
                Action::CheckRoom => flow.on(Input::Room(self.room())),
                Action::SetUpMedia => {
                    let (media, set_up) = self.set_up_media(invite).await;
                    ready = set_up;
                    flow.on(Input::Media(media))
                }
                Action::Announce => {
                    // The flow asks only with media set up and a recording (`has_recording`).
                    let (Some(media), Some(recordings)) =
                        (ready.take(), campaign.announcements.as_ref())
                    else {
                        return Final::ServerError;
                    };
                    let country = match &identity {
                        CallerIdentity::Number(n) => Some(n.country_code()),
                        CallerIdentity::Withheld => None,
                    };
                    let announcement = recordings.for_caller(country);
                    let played = self
                        .announce(invite, route, announcement.clone(), media)
                        .await;
                    heard = Some(announcement);
                    flow.on(Input::Played(played))
                }
                Action::Write(record) => {
                    let written = self
                        .write(invite, route, &identity, record, heard.as_deref())
                        .await;
                    flow.on(Input::Written(written))
                }
                Action::Finish(last) => return last,
            };
        }
    }

    /// The status and headers of the flow's final response.
    fn final_response(
        &self,
        invite: &Invite,
        route: &Route,
        last: Final,
    ) -> (u16, Vec<(&'static str, String)>) {
        let retry = |seconds: &str| vec![("Retry-After", seconds.to_owned())];
        let headers = match last {
            Final::Redirect => Self::contact_for(invite, &route.destination),
            Final::RedirectToAnnouncer => Self::contact_for(
                invite,
                route
                    .plan
                    .external_uri
                    .as_deref()
                    .unwrap_or(&route.destination),
            ),
            Final::NoRoom => retry("30"),
            Final::NoPort => retry("5"),
            Final::BadOffer(_) => vec![("Accept", "application/sdp".to_owned())],
            Final::Terminated | Final::Unacknowledged | Final::Rejected | Final::ServerError => {
                Vec::new()
            }
        };
        (last.status(), headers)
    }

    /// The 302 Contact for `uri`. A SIPS request is redirected to a SIPS target (RFC 5630
    /// §3.1.3): a configured `sip:` destination is upgraded; `tel:` has no secure form.
    fn contact_for(invite: &Invite, uri: &str) -> Vec<(&'static str, String)> {
        let target = match uri.strip_prefix("sip:") {
            Some(rest) if super::is_sips(&invite.req) => format!("sips:{rest}"),
            _ => uri.to_owned(),
        };
        vec![("Contact", format!("<{target}>"))]
    }

    /// Binds a port and negotiates the INVITE's offer for early media.
    async fn set_up_media(&self, invite: &Invite) -> (flow::Media, Option<ReadyMedia>) {
        // The UAS checks already refused bodies we cannot take; an error here is no offer.
        let offer = crate::sip::body::sdp(invite.req.content_type(), &invite.req.body)
            .ok()
            .flatten();
        let Some(offer) = offer else {
            return (flow::Media::Unusable, None);
        };
        // Read once: a reload between the SDP answer and the bind must not split the call.
        let address = self.media_address();
        let Some((lease, socket)) = self.bind_media(address).await else {
            return (flow::Media::NoPort, None);
        };
        let local = LocalMedia {
            addr: address,
            port: lease.port(),
            session_id: rand::random::<u32>().into(),
        };
        match media::negotiate(&offer, local) {
            Ok(answer) if answer.direction.sends() => match self.claim_destination(&answer) {
                Some(claim) => (
                    flow::Media::Ready,
                    Some(ReadyMedia {
                        answer,
                        lease,
                        socket,
                        claim,
                    }),
                ),
                None => (flow::Media::Unusable, None),
            },
            Ok(_) => (flow::Media::Unusable, None),
            Err(err) => {
                debug!(error = %err, "SDP offer refused.");
                (flow::Media::Refused(err.sip_status()), None)
            }
        }
    }

    /// Sends the 183 and plays `announcement`; returns how it ended.
    async fn announce(
        &self,
        invite: &Invite,
        route: &Route,
        announcement: Arc<Announcement>,
        ready: ReadyMedia,
    ) -> Played {
        let plan = &route.plan;
        let ReadyMedia {
            answer,
            lease,
            socket,
            claim,
        } = ready;
        let reliable = self.wants_reliable(&invite.req).then(|| {
            Mutex::new(Reliable::new(
                self.settings.t1,
                invite.req.cseq().seq,
                Reliable::random_rseq(),
            ))
        });
        let control = Arc::new(Control {
            cancel: invite.cancel.clone(),
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
        let socket = Arc::new(socket);
        let play = media::play(
            socket.clone(),
            answer.remote,
            announcement.clone(),
            answer.codec,
            answer.te_pt,
            plan.objection_digit,
            invite.cancel.clone(),
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
        let played = Seconds::from_duration(outcome.played);
        match outcome.end {
            PlayEnd::Complete => Played::Complete(played),
            PlayEnd::Objected => Played::Cut(Cut::Objected, played),
            PlayEnd::Stopped => Played::Cut(control.stopped_by(), played),
        }
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

    /// Makes the call's events from the flow's record and appends them in one batch.
    async fn write(
        &self,
        invite: &Invite,
        route: &Route,
        identity: &CallerIdentity,
        record: Record,
        heard: Option<&Announcement>,
    ) -> Result<(), Unwritten> {
        let observation = Observation {
            call_id: invite.req.call_id(),
            identity,
            campaign_id: &route.campaign_id,
            tracking_number: &route.tracking_number,
            at: invite.at,
            notice: record.notice,
        };
        let observed = self.recorder.observe(&observation).map_err(|err| {
            self.metrics.key_failures.inc();
            warn!(error = %err, "Call could not be recorded.");
            Unwritten::Unrecorded
        })?;
        let now = Utc::now();
        let mut events = vec![observed.offered(invite.at)];
        let announced = record.notice.announcement();
        if let (Some((played, outcome)), Some(heard)) = (announced, heard) {
            events.push(observed.disclosed(
                now,
                Disclosed {
                    announcement_id: heard.id.clone(),
                    announcement_version: heard.version.clone(),
                    hook: Hook::EarlyMedia,
                    played,
                    complete: outcome == crate::call::Outcome::Complete,
                    recording_sha256: heard.recording_sha256.clone(),
                    outcome,
                },
            ));
        }
        match record.ending {
            Ending::Offered => {}
            Ending::Abandoned => {
                let played = announced.map_or_else(Seconds::default, |(played, _)| played);
                events.push(observed.abandoned(now, played));
            }
            Ending::Routed => events.push(observed.routed(now)),
        }
        self.append(&events).await?;
        if record.remember {
            self.recorder.remember(&observed, identity, invite.at);
        }
        Ok(())
    }

    /// Counts and logs (at most once a while) a call refused because the outbox is full.
    fn note_full(&self) {
        if let Some(suppressed) = self.outbox_full.record(&self.metrics.outbox_full) {
            warn!(
                suppressed,
                "Outbox full; refusing calls with 503 until it drains."
            );
        }
    }

    /// Whether the outbox can still take one call's events. Asked before the announcement: a
    /// call that cannot be recorded gets its 503 at once, not after the caller heard the notice.
    fn room(&self) -> Room {
        match self.outbox.usage() {
            Ok(u) if u.no_space => {
                // Counted with failed writes: the file system, not the cap, is the limit.
                if let Some(suppressed) = self.outbox_error.record(&self.metrics.outbox_errors) {
                    warn!(
                        suppressed,
                        "Outbox file system full; refusing calls with 503 until space returns."
                    );
                }
                Room::NoSpace
            }
            Ok(u) if u.has_room(CALL_RESERVE) => Room::Enough,
            _ => {
                self.note_full();
                Room::Full
            }
        }
    }

    /// Appends a call's events in one batch; a refusal is counted and logged.
    async fn append(&self, events: &[Vec<u8>]) -> Result<(), Unwritten> {
        let lines: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        match self.outbox.append_batch(&lines).await {
            Ok(_) => {
                self.metrics.events_written.inc_by(lines.len() as u64);
                Ok(())
            }
            Err(outbox::Error::Full) => {
                self.note_full();
                Err(Unwritten::Refused)
            }
            Err(err) => {
                if let Some(suppressed) = self.outbox_error.record(&self.metrics.outbox_errors) {
                    warn!(error = %err, suppressed, "Outbox write failed; refusing calls with 503.");
                }
                Err(Unwritten::Refused)
            }
        }
    }
}
