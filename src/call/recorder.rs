//! Turns what the SIP edge observed about a call into its minimized events: the caller is
//! identified, pseudonymized under the current key epoch (or dropped, per campaign policy), and
//! the Call-ID becomes a keyed call key. Nothing raw survives past this point.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{
    CallEvent, CallerFields, CallerIdentity, CallerInput, CallerPolicy, Common, Consent, Disclosed,
    Disclosure, E164, KeyError, Keyring, Normalizer, Policy, Pseudonym, Purpose, Seconds, identify,
    minimize,
};

pub struct Recorder {
    keyring: Keyring,
    normalizer: Normalizer,
    policies: HashMap<String, Policy>,
    default_policy: Policy,
}

/// A call's minimized identity, computed once and shared by all its events.
#[derive(Debug, Clone)]
pub struct Observed {
    call_key: Pseudonym,
    campaign_id: String,
    tracking_number: E164,
    caller: CallerFields,
    disclosure: Disclosure,
    consent: Option<Consent>,
}

impl Recorder {
    pub fn new(
        keyring: Keyring,
        normalizer: Normalizer,
        policies: HashMap<String, Policy>,
        default_policy: Policy,
    ) -> Self {
        Self {
            keyring,
            normalizer,
            policies,
            default_policy,
        }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Who is calling, before minimization: used only to pick the announcement's language.
    pub fn identify(&self, caller: &CallerInput) -> CallerIdentity {
        identify(caller, &self.normalizer)
    }

    /// Pseudonymizes one call. `call_id` is the SIP Call-ID; it only ever leaves as a keyed hash.
    /// An objection (`consent`) leaves neither pseudonym nor region; so does a caller who was not
    /// `informed` (the announcement could not be played).
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        call_id: &str,
        identity: &CallerIdentity,
        disclosure: Disclosure,
        consent: Option<Consent>,
        informed: bool,
        campaign_id: &str,
        tracking_number: &E164,
        at: DateTime<Utc>,
    ) -> Result<Observed, KeyError> {
        let mut policy = *self
            .policies
            .get(campaign_id)
            .unwrap_or(&self.default_policy);
        if !informed {
            // A caller who could not hear the notice keeps no identifier in our events.
            policy.caller = CallerPolicy::Drop;
        }
        let caller = minimize(identity, consent, &policy, &self.keyring, at)?;
        let call_key = self
            .keyring
            .pseudonymize(Purpose::CallKey, call_id.as_bytes(), at)?;
        Ok(Observed {
            call_key,
            campaign_id: campaign_id.to_owned(),
            tracking_number: tracking_number.clone(),
            caller,
            disclosure,
            consent,
        })
    }
}

impl Observed {
    fn common(&self, at: DateTime<Utc>) -> Common {
        Common::new(
            at,
            self.call_key.clone(),
            self.campaign_id.clone(),
            self.tracking_number.clone(),
            self.caller.clone(),
            self.disclosure,
            self.consent,
        )
    }

    /// The `call.offered` event as one JSON line.
    pub fn offered(&self, at: DateTime<Utc>) -> Vec<u8> {
        CallEvent::offered(self.common(at)).to_json_line()
    }

    /// The `call.routed` event as one JSON line.
    pub fn routed(&self, at: DateTime<Utc>) -> Vec<u8> {
        CallEvent::routed(self.common(at)).to_json_line()
    }

    /// The `call.disclosed` event as one JSON line.
    pub fn disclosed(&self, at: DateTime<Utc>, disclosed: Disclosed) -> Vec<u8> {
        CallEvent::disclosed(self.common(at), disclosed).to_json_line()
    }

    /// The `call.abandoned` event: the caller hung up `played` into the announcement.
    pub fn abandoned(&self, at: DateTime<Utc>, played: Seconds) -> Vec<u8> {
        CallEvent::abandoned(self.common(at), played).to_json_line()
    }
}
