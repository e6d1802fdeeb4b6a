//! How a campaign informs its callers (GDPR Art. 13) before the call is routed: the hook and what
//! it needs. Resolved from config once; the SIP edge follows it per call.

use std::sync::Arc;

use super::{Hook, Seconds};
use crate::media::announcements::Announcements;

/// What to do with an INVITE that carries no SDP, so cannot hear early media (a campaign's
/// `without_sdp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WithoutSdp {
    /// Route it, recorded as `disclosure: skipped` and without a caller identifier.
    #[default]
    Skip,
    /// Refuse it with 403.
    Reject,
}

/// The key that objects when a campaign names none (its `objection_digit`).
pub const DEFAULT_OBJECTION_DIGIT: char = '9';

#[derive(Debug, Clone)]
pub struct Plan {
    pub hook: Hook,
    pub announcement_id: Option<String>,
    pub announcements: Option<Arc<Announcements>>,
    /// For `Hook::External`: the media server that announces, as the 302's Contact.
    pub external_uri: Option<String>,
    pub without_sdp: WithoutSdp,
    pub objection_digit: char,
    /// How much of the announcement informs a caller (`privacy::informed`); `None`: all of it.
    pub informed_after: Option<Seconds>,
}

impl Plan {
    /// No announcement: `disclosure: not_played`.
    pub fn none() -> Self {
        Self {
            hook: Hook::None,
            announcement_id: None,
            announcements: None,
            external_uri: None,
            without_sdp: WithoutSdp::default(),
            objection_digit: DEFAULT_OBJECTION_DIGIT,
            informed_after: None,
        }
    }
}

impl PartialEq for Plan {
    // Announcements are loaded audio; two plans are the same when their settings are.
    fn eq(&self, other: &Self) -> bool {
        self.hook == other.hook
            && self.announcement_id == other.announcement_id
            && self.external_uri == other.external_uri
            && self.without_sdp == other.without_sdp
            && self.objection_digit == other.objection_digit
            && self.informed_after == other.informed_after
    }
}

impl Eq for Plan {}
