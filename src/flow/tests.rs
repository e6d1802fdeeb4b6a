//! Every ordering of CANCEL, routing, the announcement's end, an objection and a full outbox,
//! with the records and the final response each must give. A case is the plan and the inputs
//! the shell feeds; the expectation is every action the flow asks for, in order.

use super::machine::{
    Action, Ending, Final, Flow, Input, Media, Plan, Played, Record, Room, Unwritten,
};
use crate::call::disclosure::WithoutSdp;
use crate::call::{Cut, Hook, Notice, Seconds};

fn s(n: u64) -> Seconds {
    Seconds::from_duration(std::time::Duration::from_secs(n))
}

fn plan(hook: Hook) -> Plan {
    Plan {
        hook,
        without_sdp: WithoutSdp::Skip,
        informed_after: Some(s(4)),
        has_recording: true,
        objected_earlier: false,
    }
}

fn rejecting() -> Plan {
    Plan {
        without_sdp: WithoutSdp::Reject,
        ..plan(Hook::EarlyMedia)
    }
}

fn objected_before() -> Plan {
    Plan {
        objected_earlier: true,
        ..plan(Hook::EarlyMedia)
    }
}

fn unrecorded() -> Plan {
    Plan {
        has_recording: false,
        ..plan(Hook::EarlyMedia)
    }
}

fn write(notice: Notice, ending: Ending, remember: bool) -> Action {
    Action::Write(Record {
        notice,
        ending,
        remember,
    })
}

fn routed(notice: Notice) -> Action {
    write(notice, Ending::Routed, true)
}

fn abandoned_before(notice: Notice) -> Action {
    write(notice, Ending::Abandoned, false)
}

fn abandoned(notice: Notice) -> Action {
    write(notice, Ending::Abandoned, true)
}

fn cut(cut: Cut, played: u64) -> Notice {
    Notice::cut_short(cut, s(played), Some(s(4)))
}

const OK: Input = Input::Written(Ok(()));
const ROOM: Input = Input::Room(Room::Enough);
const READY: Input = Input::Media(Media::Ready);
const FULL: Input = Input::Written(Err(Unwritten::Refused));
const UNRECORDED: Input = Input::Written(Err(Unwritten::Unrecorded));

fn finish(last: Final) -> Action {
    Action::Finish(last)
}

/// The actions a flow asks for: its first, then one per input.
fn run(plan: Plan, inputs: &[Input]) -> Vec<Action> {
    let (mut flow, first) = Flow::start(plan);
    let mut actions = vec![first];
    actions.extend(inputs.iter().map(|input| flow.on(*input)));
    actions
}

#[test]
fn every_ordering_gives_its_records_and_final() {
    use Action::{Announce, CheckRoom, SetUpMedia};
    let complete = Input::Played(Played::Complete(s(6)));
    let objected = |at| Input::Played(Played::Cut(Cut::Objected, s(at)));
    let hung_up = |at| Input::Played(Played::Cut(Cut::HungUp, s(at)));
    let unacked = Input::Played(Played::Cut(Cut::Unacknowledged, s(2)));
    let cases: Vec<(&str, Plan, Vec<Input>, Vec<Action>)> = vec![
        (
            "no hook: routed without notice",
            plan(Hook::None),
            vec![OK],
            vec![routed(Notice::NotPlayed), finish(Final::Redirect)],
        ),
        (
            "no hook, CANCEL before routing: abandoned, 487",
            plan(Hook::None),
            vec![Input::Cancelled, OK],
            vec![
                routed(Notice::NotPlayed),
                abandoned_before(Notice::NotPlayed),
                finish(Final::Terminated),
            ],
        ),
        (
            "external: delegated and informed, to the announcer",
            plan(Hook::External),
            vec![OK],
            vec![
                routed(Notice::Delegated),
                finish(Final::RedirectToAnnouncer),
            ],
        ),
        (
            "external, CANCEL first: delegated but nobody told",
            plan(Hook::External),
            vec![Input::Cancelled, OK],
            vec![
                routed(Notice::Delegated),
                abandoned_before(Notice::DelegatedCancelled),
                finish(Final::Terminated),
            ],
        ),
        (
            "external, outbox refuses: 503, never routed unrecorded",
            plan(Hook::External),
            vec![FULL],
            vec![routed(Notice::Delegated), finish(Final::NoRoom)],
        ),
        (
            "no hook, key failure: 500",
            plan(Hook::None),
            vec![UNRECORDED],
            vec![routed(Notice::NotPlayed), finish(Final::ServerError)],
        ),
        (
            "announcement played to the end: informed, routed",
            plan(Hook::EarlyMedia),
            vec![ROOM, READY, complete, OK],
            vec![
                CheckRoom,
                SetUpMedia,
                Announce,
                routed(Notice::Played { played: s(6) }),
                finish(Final::Redirect),
            ],
        ),
        (
            "outbox full before the notice: 503 at once, nothing played or written",
            plan(Hook::EarlyMedia),
            vec![Input::Room(Room::Full)],
            vec![CheckRoom, finish(Final::NoRoom)],
        ),
        (
            "outbox file system full: 503 at once",
            plan(Hook::EarlyMedia),
            vec![Input::Room(Room::NoSpace)],
            vec![CheckRoom, finish(Final::NoRoom)],
        ),
        (
            "outbox fills during the announcement: 503 after the notice",
            plan(Hook::EarlyMedia),
            vec![ROOM, READY, complete, FULL],
            vec![
                CheckRoom,
                SetUpMedia,
                Announce,
                routed(Notice::Played { played: s(6) }),
                finish(Final::NoRoom),
            ],
        ),
        (
            "objection after the informing point: routed, objected, informed",
            plan(Hook::EarlyMedia),
            vec![ROOM, READY, objected(5), OK],
            vec![
                CheckRoom,
                SetUpMedia,
                Announce,
                routed(cut(Cut::Objected, 5)),
                finish(Final::Redirect),
            ],
        ),
        (
            "objection before the informing point: routed, objected, not informed",
            plan(Hook::EarlyMedia),
            vec![ROOM, READY, objected(1), OK],
            vec![
                CheckRoom,
                SetUpMedia,
                Announce,
                routed(cut(Cut::Objected, 1)),
                finish(Final::Redirect),
            ],
        ),
        (
            "objection, then the outbox refuses: 503, not routed",
            plan(Hook::EarlyMedia),
            vec![ROOM, READY, objected(1), FULL],
            vec![
                CheckRoom,
                SetUpMedia,
                Announce,
                routed(cut(Cut::Objected, 1)),
                finish(Final::NoRoom),
            ],
        ),
        (
            "CANCEL mid-announcement: abandoned, 487",
            plan(Hook::EarlyMedia),
            vec![ROOM, READY, hung_up(2), OK],
            vec![
                CheckRoom,
                SetUpMedia,
                Announce,
                abandoned(cut(Cut::HungUp, 2)),
                finish(Final::Terminated),
            ],
        ),
        (
            "CANCEL mid-announcement, outbox refuses: still 487 (the caller is gone)",
            plan(Hook::EarlyMedia),
            vec![ROOM, READY, hung_up(5), FULL],
            vec![
                CheckRoom,
                SetUpMedia,
                Announce,
                abandoned(cut(Cut::HungUp, 5)),
                finish(Final::Terminated),
            ],
        ),
        (
            "CANCEL after the announcement ended: routed all the same (the race §9.2 allows)",
            plan(Hook::EarlyMedia),
            vec![ROOM, READY, complete, Input::Cancelled, OK],
            vec![
                CheckRoom,
                SetUpMedia,
                Announce,
                routed(Notice::Played { played: s(6) }),
                routed(Notice::Played { played: s(6) }),
                finish(Final::Redirect),
            ],
        ),
        (
            "CANCEL after an objection: routed, the objection stands",
            plan(Hook::EarlyMedia),
            vec![ROOM, READY, objected(2), Input::Cancelled, OK],
            vec![
                CheckRoom,
                SetUpMedia,
                Announce,
                routed(cut(Cut::Objected, 2)),
                routed(cut(Cut::Objected, 2)),
                finish(Final::Redirect),
            ],
        ),
        (
            "CANCEL before the room check: no 183, abandoned",
            plan(Hook::EarlyMedia),
            vec![Input::Cancelled, OK],
            vec![
                CheckRoom,
                abandoned_before(Notice::NotPlayed),
                finish(Final::Terminated),
            ],
        ),
        (
            "CANCEL during media set-up: no 183, abandoned",
            plan(Hook::EarlyMedia),
            vec![ROOM, Input::Cancelled, OK],
            vec![
                CheckRoom,
                SetUpMedia,
                abandoned_before(Notice::NotPlayed),
                finish(Final::Terminated),
            ],
        ),
        (
            "reliable 183 never acknowledged: abandoned, 500",
            plan(Hook::EarlyMedia),
            vec![ROOM, READY, unacked, OK],
            vec![
                CheckRoom,
                SetUpMedia,
                Announce,
                abandoned(cut(Cut::Unacknowledged, 2)),
                finish(Final::Unacknowledged),
            ],
        ),
        (
            "no usable SDP, campaign skips: routed, skipped",
            plan(Hook::EarlyMedia),
            vec![ROOM, Input::Media(Media::Unusable), OK],
            vec![
                CheckRoom,
                SetUpMedia,
                routed(Notice::Skipped),
                finish(Final::Redirect),
            ],
        ),
        (
            "no usable SDP, campaign rejects: offered, 403",
            rejecting(),
            vec![ROOM, Input::Media(Media::Unusable), OK],
            vec![
                CheckRoom,
                SetUpMedia,
                write(Notice::Skipped, Ending::Offered, false),
                finish(Final::Rejected),
            ],
        ),
        (
            "no usable SDP, rejects, outbox refuses: 503",
            rejecting(),
            vec![ROOM, Input::Media(Media::Unusable), FULL],
            vec![
                CheckRoom,
                SetUpMedia,
                write(Notice::Skipped, Ending::Offered, false),
                finish(Final::NoRoom),
            ],
        ),
        (
            "no usable SDP, rejects, CANCEL first: abandoned, 487",
            rejecting(),
            vec![ROOM, Input::Media(Media::Unusable), Input::Cancelled, OK],
            vec![
                CheckRoom,
                SetUpMedia,
                write(Notice::Skipped, Ending::Offered, false),
                abandoned_before(Notice::Skipped),
                finish(Final::Terminated),
            ],
        ),
        (
            "no RTP port: 503 Retry-After 5, nothing written",
            plan(Hook::EarlyMedia),
            vec![ROOM, Input::Media(Media::NoPort)],
            vec![CheckRoom, SetUpMedia, finish(Final::NoPort)],
        ),
        (
            "offer refused: its status, nothing written",
            plan(Hook::EarlyMedia),
            vec![ROOM, Input::Media(Media::Refused(488))],
            vec![CheckRoom, SetUpMedia, finish(Final::BadOffer(488))],
        ),
        (
            "objected on an earlier call: not asked again, routed, skipped",
            objected_before(),
            vec![ROOM, OK],
            vec![CheckRoom, routed(Notice::Skipped), finish(Final::Redirect)],
        ),
        (
            "objected earlier, outbox full: 503 all the same",
            objected_before(),
            vec![Input::Room(Room::Full)],
            vec![CheckRoom, finish(Final::NoRoom)],
        ),
        (
            "campaign without its recording: 500 at once",
            unrecorded(),
            vec![],
            vec![finish(Final::ServerError)],
        ),
    ];
    for (name, plan, inputs, expected) in cases {
        assert_eq!(run(plan, &inputs), expected, "{name}");
    }
}

#[test]
fn an_input_out_of_turn_changes_nothing() {
    let (mut flow, first) = Flow::start(plan(Hook::EarlyMedia));
    assert_eq!(first, Action::CheckRoom);
    assert_eq!(flow.on(Input::Media(Media::Ready)), Action::CheckRoom);
    assert_eq!(flow.on(OK), Action::CheckRoom);
    assert_eq!(flow.on(ROOM), Action::SetUpMedia);
    assert_eq!(
        flow.on(Input::Played(Played::Complete(s(1)))),
        Action::SetUpMedia
    );
}

#[test]
fn a_finished_flow_stays_finished() {
    let (mut flow, _) = Flow::start(plan(Hook::None));
    assert_eq!(flow.on(OK), Action::Finish(Final::Redirect));
    for input in [Input::Cancelled, FULL, ROOM, READY] {
        assert_eq!(flow.on(input), Action::Finish(Final::Redirect));
    }
}

#[test]
fn every_final_is_written_first_unless_nothing_could_be() {
    // The durability rule, over every case above: a 302 or 487 or 403 only ever follows a
    // write answered `Ok` (or, for a caller gone, any answer).
    let plans = [
        plan(Hook::None),
        plan(Hook::External),
        plan(Hook::EarlyMedia),
        rejecting(),
        objected_before(),
    ];
    let played = [
        Played::Complete(s(6)),
        Played::Cut(Cut::Objected, s(1)),
        Played::Cut(Cut::HungUp, s(1)),
        Played::Cut(Cut::Unacknowledged, s(1)),
    ];
    let media = [Media::Ready, Media::Unusable];
    for plan in plans {
        for media in media {
            for played in played {
                for written in [OK, FULL, UNRECORDED] {
                    for cancel_at in 0..5 {
                        let mut inputs = vec![ROOM, Input::Media(media), Input::Played(played)];
                        inputs.insert(cancel_at.min(inputs.len()), Input::Cancelled);
                        inputs.push(written);
                        let actions = run(plan, &inputs);
                        let last = actions.last().copied();
                        let wrote_ok =
                            written == OK && actions.iter().any(|a| matches!(a, Action::Write(_)));
                        if let Some(Action::Finish(
                            Final::Redirect | Final::RedirectToAnnouncer | Final::Rejected,
                        )) = last
                        {
                            assert!(wrote_ok, "{plan:?} {inputs:?}: {actions:?}");
                        }
                    }
                }
            }
        }
    }
}
