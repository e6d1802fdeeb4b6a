//! The call flow as a sans-IO state machine: given what the shell observed (the outbox's room,
//! the media set-up, how the announcement ended, whether the events were written, a CANCEL), it
//! says what to do next. It holds no sockets, no files and no clock, so every ordering is a
//! plain-value test (`tests.rs`).
//!
//! The promise it keeps: a final response is only ever asked for after the call's events were
//! written ([`Action::Write`] answered with [`Input::Written`]), except when there is nothing
//! that could be written (the outbox refused, the SDP offer was refused before any notice).

use crate::call::disclosure::WithoutSdp;
use crate::call::{Cut, Hook, Notice, Seconds};

/// The campaign's disclosure plan, as the flow needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub hook: Hook,
    pub without_sdp: WithoutSdp,
    /// How much of the announcement informs a caller; `None`: all of it.
    pub informed_after: Option<Seconds>,
    /// The early-media hook has its recordings (false only for a misconfigured campaign).
    pub has_recording: bool,
    /// The suppression list says the caller objected on an earlier call: not asked again.
    pub objected_earlier: bool,
}

/// What the shell does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Ask the outbox whether one call's events fit; answer with [`Input::Room`]. Asked before
    /// an announcement, so a call that cannot be recorded is refused before the caller hears it.
    CheckRoom,
    /// Lease a port, negotiate the SDP offer, claim the destination; answer with
    /// [`Input::Media`].
    SetUpMedia,
    /// Send the 183 with the SDP answer and play the announcement; answer with
    /// [`Input::Played`].
    Announce,
    /// Write the call's events in one batch; answer with [`Input::Written`].
    Write(Record),
    /// Send this final response: the flow is over.
    Finish(Final),
}

/// The call's events, described: the shell makes them from its observation of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub notice: Notice,
    /// The events after `call.offered` (and `call.disclosed` when our announcement played).
    pub ending: Ending,
    /// Put the call in the CDR correlation index once written.
    pub remember: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `call.offered` only: the call is refused (403).
    Offered,
    /// `call.abandoned`: the caller hung up first.
    Abandoned,
    /// `call.routed`: the 302 follows.
    Routed,
}

impl Record {
    /// Whether a `call.disclosed` event is part of the batch: only for our announcement.
    pub fn disclosed(&self) -> bool {
        self.notice.announcement().is_some()
    }
}

/// The final response the flow ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    /// 302 to the campaign's destination.
    Redirect,
    /// 302 to the external announcer (`Hook::External`).
    RedirectToAnnouncer,
    /// 487: the caller cancelled.
    Terminated,
    /// 500: the carrier never acknowledged our reliable 183 (RFC 3262 §3).
    Unacknowledged,
    /// 403: the campaign rejects calls that cannot hear its announcement.
    Rejected,
    /// 503 Retry-After 30: the outbox cannot take the call's events.
    NoRoom,
    /// 503 Retry-After 5: no RTP port is free.
    NoPort,
    /// The SDP offer was refused: this status (488, 415), with `Accept: application/sdp`.
    BadOffer(u16),
    /// 500: the call cannot be recorded (a key failure), or the campaign has no recording.
    ServerError,
}

impl Final {
    pub fn status(self) -> u16 {
        match self {
            Self::Redirect | Self::RedirectToAnnouncer => 302,
            Self::Terminated => 487,
            Self::Unacknowledged | Self::ServerError => 500,
            Self::Rejected => 403,
            Self::NoRoom | Self::NoPort => 503,
            Self::BadOffer(status) => status,
        }
    }
}

/// The outbox's answer to [`Action::CheckRoom`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    Enough,
    /// At its size cap.
    Full,
    /// Its file system has no space left.
    NoSpace,
}

/// The shell's answer to [`Action::SetUpMedia`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// Ready to play.
    Ready,
    /// No early media possible: no SDP offer, an offer that will not receive, or an address
    /// the media ACL refuses. The campaign's `without_sdp` decides.
    Unusable,
    /// No RTP port free.
    NoPort,
    /// The offer was refused with this status.
    Refused(u16),
}

/// How the announcement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Played {
    Complete(Seconds),
    Cut(Cut, Seconds),
}

/// Why writing the events failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwritten {
    /// The outbox refused (full, no space, an I/O error): 503.
    Refused,
    /// The events could not be made (a key failure): 500.
    Unrecorded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Room(Room),
    Media(Media),
    Played(Played),
    Written(Result<(), Unwritten>),
    /// A CANCEL for the INVITE was answered 200: the shell says so before its next action.
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing done yet for the early-media hook: the room is asked.
    CheckingRoom,
    SettingUpMedia,
    /// The 183 went out and the announcement plays: a CANCEL reaches the player, not us.
    Announcing,
    /// The events are being written; `then` is the final response that follows.
    Writing {
        record: Record,
        then: Final,
    },
    Done(Final),
}

/// One call's flow, from the UAS decision to route it until its final response.
#[derive(Debug)]
pub struct Flow {
    plan: Plan,
    state: State,
}

impl Flow {
    /// The flow and its first action.
    pub fn start(plan: Plan) -> (Self, Action) {
        let state = match plan.hook {
            Hook::None => Self::routing(Notice::NotPlayed, Final::Redirect),
            Hook::External => Self::routing(Notice::Delegated, Final::RedirectToAnnouncer),
            Hook::EarlyMedia if !plan.has_recording => State::Done(Final::ServerError),
            Hook::EarlyMedia => State::CheckingRoom,
        };
        let flow = Self { plan, state };
        let action = flow.action();
        (flow, action)
    }

    /// Takes one input; returns what to do next. An input the current state does not expect
    /// changes nothing and repeats the pending action.
    pub fn on(&mut self, input: Input) -> Action {
        self.state = match (self.state, input) {
            (State::CheckingRoom | State::SettingUpMedia, Input::Cancelled) => {
                Self::cancelled_before(Notice::NotPlayed)
            }
            // Not yet written and nothing of ours played: the caller was told nothing, so the
            // call ends here rather than being routed after its CANCEL was answered.
            (State::Writing { record, .. }, Input::Cancelled)
                if record.ending != Ending::Abandoned && !record.disclosed() =>
            {
                Self::cancelled_before(match record.notice {
                    Notice::Delegated => Notice::DelegatedCancelled,
                    other => other,
                })
            }
            (State::CheckingRoom, Input::Room(Room::Enough)) if self.plan.objected_earlier => {
                Self::routing(Notice::Skipped, Final::Redirect)
            }
            (State::CheckingRoom, Input::Room(Room::Enough)) => State::SettingUpMedia,
            (State::CheckingRoom, Input::Room(Room::Full | Room::NoSpace)) => {
                State::Done(Final::NoRoom)
            }
            (State::SettingUpMedia, Input::Media(media)) => self.after_media(media),
            (State::Announcing, Input::Played(played)) => self.after_announcement(played),
            (State::Writing { then, .. }, Input::Written(Ok(()))) => State::Done(then),
            (State::Writing { record, then }, Input::Written(Err(why))) => {
                State::Done(Self::unwritten(record, then, why))
            }
            (state, _) => state,
        };
        self.action()
    }

    fn action(&self) -> Action {
        match self.state {
            State::CheckingRoom => Action::CheckRoom,
            State::SettingUpMedia => Action::SetUpMedia,
            State::Announcing => Action::Announce,
            State::Writing { record, .. } => Action::Write(record),
            State::Done(last) => Action::Finish(last),
        }
    }

    fn routing(notice: Notice, then: Final) -> State {
        State::Writing {
            record: Record {
                notice,
                ending: Ending::Routed,
                remember: true,
            },
            then,
        }
    }

    /// A CANCEL before any notice: the call ends here, recorded as offered and abandoned.
    fn cancelled_before(notice: Notice) -> State {
        State::Writing {
            record: Record {
                notice,
                ending: Ending::Abandoned,
                remember: false,
            },
            then: Final::Terminated,
        }
    }

    fn after_media(&self, media: Media) -> State {
        match media {
            Media::Ready => State::Announcing,
            Media::NoPort => State::Done(Final::NoPort),
            Media::Refused(status) => State::Done(Final::BadOffer(status)),
            Media::Unusable => match self.plan.without_sdp {
                WithoutSdp::Skip => Self::routing(Notice::Skipped, Final::Redirect),
                WithoutSdp::Reject => State::Writing {
                    record: Record {
                        notice: Notice::Skipped,
                        ending: Ending::Offered,
                        remember: false,
                    },
                    then: Final::Rejected,
                },
            },
        }
    }

    fn after_announcement(&self, played: Played) -> State {
        let (notice, ending, then) = match played {
            Played::Complete(played) => {
                (Notice::Played { played }, Ending::Routed, Final::Redirect)
            }
            Played::Cut(cut, played) => {
                let notice = Notice::cut_short(cut, played, self.plan.informed_after);
                match cut {
                    // An objection ends the notice, not the call: routed, untracked.
                    Cut::Objected => (notice, Ending::Routed, Final::Redirect),
                    Cut::HungUp => (notice, Ending::Abandoned, Final::Terminated),
                    Cut::Unacknowledged => (notice, Ending::Abandoned, Final::Unacknowledged),
                }
            }
        };
        State::Writing {
            record: Record {
                notice,
                ending,
                remember: true,
            },
            then,
        }
    }

    /// The final response when the events could not be written. A call that was ending anyway
    /// (cancelled, unacknowledged) ends as planned: the caller is gone, and a 503 would only
    /// make the carrier try another route for nobody. A call that was to be routed is refused
    /// instead: it is never routed unrecorded.
    fn unwritten(record: Record, then: Final, why: Unwritten) -> Final {
        match (record.ending, why) {
            (Ending::Abandoned, _) => then,
            (Ending::Routed | Ending::Offered, Unwritten::Refused) => Final::NoRoom,
            (Ending::Routed | Ending::Offered, Unwritten::Unrecorded) => Final::ServerError,
        }
    }
}
