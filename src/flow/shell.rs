//! The shell that runs a call's flow (`machine::Flow`, which holds its rules) against the
//! world: the outbox, the early media (`early_media`), and the SIP side through the edge's
//! `ServerInvite` handle. The edge hands it every INVITE the UAS routes (`sip::edge::Calls`).
//!
//! Durability rule (the flow's): every event of the call is in the outbox before the final
//! response (302, 487, 403) is sent.

use std::sync::Arc;

use chrono::Utc;
use tracing::{debug, warn};

use super::Stats;
use super::machine::{Action, Ending, Final, Flow, Input, Plan, Record, Room, Unwritten};
use crate::call::{CallerIdentity, Disclosed, Hook, Observation, Recorder, Seconds};
use crate::media::MediaSettings;
use crate::media::wav::Announcement;
use crate::ops::Occurrence;
use crate::outbox::{self, Outbox};
use crate::sip::edge::ServerInvite;
use crate::sip::uas::Route;

/// Outbox room a call needs before it starts: more than one call's events (three lines of about
/// 600 bytes). `/ready` applies the same rule.
pub const CALL_RESERVE: u64 = 4096;

/// Runs the flow of every routed call.
pub struct Calls {
    recorder: Arc<Recorder>,
    outbox: Outbox,
    pub(super) media: MediaSettings,
    pub(super) metrics: Arc<Stats>,
    outbox_full: Occurrence,
    outbox_error: Occurrence,
    key_failure: Occurrence,
}

impl crate::sip::edge::Calls for Calls {
    fn offer(
        self: Arc<Self>,
        invite: ServerInvite,
        route: Arc<Route>,
    ) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { self.answer(invite, route).await })
    }
}

impl Calls {
    pub fn new(
        recorder: Arc<Recorder>,
        outbox: Outbox,
        media: MediaSettings,
        metrics: Arc<Stats>,
    ) -> Self {
        Self {
            recorder,
            outbox,
            media,
            metrics,
            outbox_full: Occurrence::default(),
            outbox_error: Occurrence::default(),
            key_failure: Occurrence::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.metrics
    }

    /// Runs the flow and sends the final response.
    async fn answer(&self, invite: ServerInvite, route: Arc<Route>) {
        self.metrics.calls_offered.inc();
        let last = self.run(&invite, &route).await;
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
        let headers = final_headers(&invite, &route, last);
        invite.finish(last.status(), &headers).await;
    }

    /// Feeds the flow what it asks for until it names its final response. A CANCEL is told to
    /// the flow before the next action, once; during the announcement the player sees it.
    async fn run(&self, invite: &ServerInvite, route: &Route) -> Final {
        let identity = self.recorder.identify(&invite.caller());
        let campaign = &route.plan;
        let plan = Plan {
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
            if !told_cancel && invite.stop_token().is_cancelled() {
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

    /// Makes the call's events from the flow's record and appends them in one batch.
    async fn write(
        &self,
        invite: &ServerInvite,
        route: &Route,
        identity: &CallerIdentity,
        record: Record,
        heard: Option<&Announcement>,
    ) -> Result<(), Unwritten> {
        let at = invite.received_at();
        let observation = Observation {
            call_id: invite.request().call_id(),
            identity,
            campaign_id: &route.campaign_id,
            tracking_number: &route.tracking_number,
            at,
            notice: record.notice,
        };
        let observed = self.recorder.observe(&observation).map_err(|err| {
            if let Some(suppressed) = self.key_failure.record(&self.metrics.key_failures) {
                let error = crate::ops::Chain(&err);
                warn!(%error, suppressed, "Call could not be recorded.");
            }
            Unwritten::Unrecorded
        })?;
        let now = Utc::now();
        let mut events = vec![observed.offered(at)];
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
            self.recorder.remember(&observed, identity, at);
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

/// The extra headers of the flow's final response.
fn final_headers(invite: &ServerInvite, route: &Route, last: Final) -> Vec<(&'static str, String)> {
    let retry = |seconds: &str| vec![("Retry-After", seconds.to_owned())];
    match last {
        Final::Redirect => vec![("Contact", invite.contact_for(&route.destination))],
        Final::RedirectToAnnouncer => {
            let announcer = route.plan.external_uri.as_deref();
            vec![(
                "Contact",
                invite.contact_for(announcer.unwrap_or(&route.destination)),
            )]
        }
        Final::NoRoom => retry("30"),
        Final::NoPort => retry("5"),
        Final::BadOffer(_) => vec![("Accept", "application/sdp".to_owned())],
        Final::Terminated | Final::Unacknowledged | Final::Rejected | Final::ServerError => {
            Vec::new()
        }
    }
}
