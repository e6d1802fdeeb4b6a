//! Turns what the SIP edge observed about a call into its minimized events: the caller is
//! identified, pseudonymized under the current key epoch (or dropped, per campaign policy), and
//! the Call-ID becomes a keyed call key. Nothing raw survives past this point.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{
    CallEvent, CallerFields, CallerInput, Common, Consent, Disclosure, E164, KeyError, Keyring,
    Normalizer, Policy, Pseudonym, Purpose, identify, minimize,
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

    /// Pseudonymizes one call. `call_id` is the SIP Call-ID; it only ever leaves as a keyed hash.
    pub fn observe(
        &self,
        call_id: &str,
        caller: &CallerInput,
        campaign_id: &str,
        tracking_number: &E164,
        at: DateTime<Utc>,
    ) -> Result<Observed, KeyError> {
        let policy = self
            .policies
            .get(campaign_id)
            .unwrap_or(&self.default_policy);
        let identity = identify(caller, &self.normalizer);
        let caller = minimize(&identity, None, policy, &self.keyring, at)?;
        let call_key = self
            .keyring
            .pseudonymize(Purpose::CallKey, call_id.as_bytes(), at)?;
        Ok(Observed {
            call_key,
            campaign_id: campaign_id.to_owned(),
            tracking_number: tracking_number.clone(),
            caller,
            disclosure: Disclosure::NotPlayed,
            consent: None,
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
}
