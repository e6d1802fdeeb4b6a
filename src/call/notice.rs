//! What a call's caller was told before routing, as one value: the event's `disclosure`, its
//! `consent` and whether the caller counts as informed (`privacy::informed`) all follow from
//! it, so no combination the call flow cannot produce (a complete announcement that informed
//! nobody, an objection without an announcement) can be written.

use super::privacy;
use super::{Consent, Disclosure, Outcome, Seconds};

/// Why our announcement stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The caller pressed the objection key (RFC 4733 or SIP INFO).
    Objected,
    /// The caller hung up (CANCEL), or the call was torn down.
    HungUp,
    /// Our reliable 183 was never acknowledged (RFC 3262 §3).
    Unacknowledged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The campaign plays no announcement, or the caller hung up before any was started.
    NotPlayed,
    /// The campaign's announcement was not played to this caller: no usable SDP, or they
    /// objected on an earlier call.
    Skipped,
    /// Another system (the carrier, the destination PBX) announces: the operator vouches for it
    /// by configuring it, so the caller counts as informed.
    Delegated,
    /// Cancelled before the call reached the delegated announcer: nobody told them anything.
    DelegatedCancelled,
    /// Our announcement, played to its end.
    Played { played: Seconds },
    /// Our announcement, stopped early; `informed` when it had reached its informing point.
    CutShort {
        cut: Cut,
        played: Seconds,
        informed: bool,
    },
}

impl Notice {
    /// An announcement stopped by `cut` after `played`; whether that informs is the one rule in
    /// `privacy::informed`.
    pub fn cut_short(cut: Cut, played: Seconds, informed_after: Option<Seconds>) -> Self {
        Self::CutShort {
            cut,
            played,
            informed: privacy::informed(Disclosure::Partial, played, informed_after),
        }
    }

    pub fn disclosure(self) -> Disclosure {
        match self {
            Self::NotPlayed => Disclosure::NotPlayed,
            Self::Skipped => Disclosure::Skipped,
            Self::Delegated | Self::DelegatedCancelled => Disclosure::Delegated,
            Self::Played { .. } => Disclosure::Played,
            Self::CutShort { .. } => Disclosure::Partial,
        }
    }

    /// Whether the caller counts as told about the tracking (GDPR Art. 13).
    pub fn informed(self) -> bool {
        match self {
            Self::Delegated | Self::Played { .. } => true,
            Self::CutShort { informed, .. } => informed,
            Self::NotPlayed | Self::Skipped | Self::DelegatedCancelled => false,
        }
    }

    /// The consent state this call itself establishes; the suppression list may still say
    /// `objected_earlier` (the recorder asks it).
    pub fn consent(self) -> Option<Consent> {
        match self {
            Self::Played { .. } => Some(Consent::Informed),
            Self::CutShort {
                cut: Cut::Objected, ..
            } => Some(Consent::Objected),
            Self::CutShort { informed: true, .. } => Some(Consent::Informed),
            Self::CutShort {
                informed: false, ..
            } => Some(Consent::Unknown),
            Self::NotPlayed | Self::Skipped | Self::Delegated | Self::DelegatedCancelled => None,
        }
    }

    /// How much of our announcement went out, and how it ended (the `call.disclosed` event);
    /// `None` when ours did not play.
    pub fn announcement(self) -> Option<(Seconds, Outcome)> {
        match self {
            Self::Played { played } => Some((played, Outcome::Complete)),
            Self::CutShort { cut, played, .. } => Some((
                played,
                match cut {
                    Cut::Objected => Outcome::Objected,
                    Cut::HungUp => Outcome::HungUp,
                    Cut::Unacknowledged => Outcome::Unacknowledged,
                },
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Seconds {
        Seconds::from_duration(std::time::Duration::from_secs(n))
    }

    #[test]
    fn each_notice_gives_one_disclosure_consent_and_informed() {
        let cases = [
            (Notice::NotPlayed, Disclosure::NotPlayed, None, false),
            (Notice::Skipped, Disclosure::Skipped, None, false),
            (Notice::Delegated, Disclosure::Delegated, None, true),
            (
                Notice::DelegatedCancelled,
                Disclosure::Delegated,
                None,
                false,
            ),
            (
                Notice::Played { played: s(6) },
                Disclosure::Played,
                Some(Consent::Informed),
                true,
            ),
            (
                Notice::cut_short(Cut::Objected, s(2), None),
                Disclosure::Partial,
                Some(Consent::Objected),
                false,
            ),
            (
                Notice::cut_short(Cut::Objected, s(5), Some(s(4))),
                Disclosure::Partial,
                Some(Consent::Objected),
                true,
            ),
            (
                Notice::cut_short(Cut::HungUp, s(3), Some(s(4))),
                Disclosure::Partial,
                Some(Consent::Unknown),
                false,
            ),
            (
                Notice::cut_short(Cut::HungUp, s(4), Some(s(4))),
                Disclosure::Partial,
                Some(Consent::Informed),
                true,
            ),
            (
                Notice::cut_short(Cut::Unacknowledged, s(9), None),
                Disclosure::Partial,
                Some(Consent::Unknown),
                false,
            ),
        ];
        for (notice, disclosure, consent, informed) in cases {
            assert_eq!(notice.disclosure(), disclosure, "{notice:?}");
            assert_eq!(notice.consent(), consent, "{notice:?}");
            assert_eq!(notice.informed(), informed, "{notice:?}");
        }
    }

    #[test]
    fn only_our_announcement_has_evidence() {
        assert_eq!(Notice::Delegated.announcement(), None);
        assert_eq!(
            Notice::cut_short(Cut::Unacknowledged, s(1), None).announcement(),
            Some((s(1), Outcome::Unacknowledged))
        );
        assert_eq!(
            Notice::Played { played: s(6) }.announcement(),
            Some((s(6), Outcome::Complete))
        );
    }
}
