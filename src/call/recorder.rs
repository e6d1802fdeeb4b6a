//! Turns what the SIP edge observed about a call into its minimized events: the caller is
//! identified, pseudonymized under the current key epoch (or dropped, per campaign policy), and
//! the Call-ID becomes a keyed call key. Nothing raw survives past this point.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::correlate::{self, Correlator};
use super::{
    CallEvent, CallerFields, CallerIdentity, CallerInput, CallerPolicy, Common, Consent, Disclosed,
    Disclosure, E164, KeyError, Keyring, Normalizer, Policy, Pseudonym, Purpose, Seconds, identify,
    minimize,
};
use super::{Completed, Correlation, Disposition};

pub struct Recorder {
    keyring: Keyring,
    normalizer: Normalizer,
    /// Per-campaign minimization; replaced whole on a config reload.
    policies: std::sync::RwLock<Arc<HashMap<String, Policy>>>,
    default_policy: Policy,
    correlator: Option<Arc<Correlator>>,
}

/// A carrier's record of a call's end, numbers already normalized.
#[derive(Debug, Clone)]
pub struct CdrFacts<'a> {
    /// `<feed>/<record id>`: names an uncorrelated call stably.
    pub record_key: &'a str,
    pub call_id: Option<&'a str>,
    pub caller: &'a CallerIdentity,
    pub campaign_id: &'a str,
    pub tracking_number: &'a E164,
    pub start: DateTime<Utc>,
    pub answered: Option<DateTime<Utc>>,
    pub ended: Option<DateTime<Utc>>,
    pub duration_seconds: u64,
    pub disposition: Disposition,
    /// How far apart a CDR's start and the SIP offer may be for a heuristic join.
    pub tolerance: chrono::TimeDelta,
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
            policies: std::sync::RwLock::new(Arc::new(policies)),
            default_policy,
            correlator: None,
        }
    }

    fn policy(&self, campaign_id: &str) -> Policy {
        let policies = self
            .policies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *policies.get(campaign_id).unwrap_or(&self.default_policy)
    }

    /// Takes new campaign policies (config reload).
    pub fn set_policies(&self, policies: HashMap<String, Policy>) {
        *self
            .policies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policies);
    }

    /// Remembers SIP calls for joining CDRs later.
    pub fn with_correlator(mut self, correlator: Arc<Correlator>) -> Self {
        self.correlator = Some(correlator);
        self
    }

    pub fn correlator(&self) -> Option<&Arc<Correlator>> {
        self.correlator.as_ref()
    }

    fn match_key(
        &self,
        tracking: &E164,
        caller: &CallerIdentity,
        at: DateTime<Utc>,
    ) -> Option<String> {
        let CallerIdentity::Number(number) = caller else {
            return None;
        };
        let input = format!("{}|{}", tracking.as_str(), number.as_str());
        self.keyring
            .pseudonymize(Purpose::Record, input.as_bytes(), at)
            .ok()
            .map(|p| p.value)
    }

    /// Adds a recorded SIP call to the correlation index.
    pub fn remember(&self, observed: &Observed, identity: &CallerIdentity, at: DateTime<Utc>) {
        let Some(correlator) = &self.correlator else {
            return;
        };
        let entry = correlate::Entry {
            call_key: observed.call_key.value.clone(),
            match_key: self.match_key(&observed.tracking_number, identity, at),
            consent: observed.consent,
            disclosure: observed.disclosure,
            offered_at: at,
        };
        correlator.insert(entry, Utc::now());
    }

    /// The `call.completed` event for a CDR row, joined to its SIP call where one is known. A
    /// caller keeps an identifier only if the SIP side informed them and they did not object.
    pub fn completed(&self, facts: &CdrFacts<'_>) -> Result<Vec<u8>, KeyError> {
        let at = facts.start;
        let joined = self.correlator.as_ref().and_then(|c| {
            let exact = facts.call_id.and_then(|id| {
                let key = self
                    .keyring
                    .pseudonymize(Purpose::CallKey, id.as_bytes(), at)
                    .ok()?;
                c.by_call_key(&key.value).map(|e| (e, Correlation::Sip))
            });
            exact.or_else(|| {
                let key = self.match_key(facts.tracking_number, facts.caller, at)?;
                c.by_heuristic(&key, at, facts.tolerance)
                    .map(|e| (e, Correlation::Heuristic))
            })
        });
        let joined_at = joined.as_ref().map(|(entry, _)| entry.offered_at);
        let (call_key, consent, disclosure, informed, correlated) = match joined {
            Some((entry, how)) => {
                let informed = matches!(
                    entry.disclosure,
                    Disclosure::Played
                        | Disclosure::Partial
                        | Disclosure::Delegated
                        | Disclosure::NotPlayed
                );
                let key = Pseudonym {
                    key_id: self.keyring.key_id(entry.offered_at),
                    value: entry.call_key,
                };
                (key, entry.consent, entry.disclosure, informed, how)
            }
            None => {
                let key =
                    self.keyring
                        .pseudonymize(Purpose::CallKey, facts.record_key.as_bytes(), at)?;
                (key, None, Disclosure::NotPlayed, false, Correlation::None)
            }
        };
        let mut policy = self.policy(facts.campaign_id);
        if !informed {
            policy.caller = CallerPolicy::Drop;
        }
        // The caller pseudonym comes from the call key's epoch, so one event never mixes keys.
        let key_at = joined_at.unwrap_or(at);
        let caller = minimize(facts.caller, consent, &policy, &self.keyring, key_at)?;
        let common = Common::new(
            facts.ended.unwrap_or(at),
            call_key,
            facts.campaign_id,
            facts.tracking_number.clone(),
            caller,
            disclosure,
            consent,
        );
        let completed = Completed {
            answered_at: facts.answered,
            ended_at: facts.ended,
            duration_seconds: facts.duration_seconds,
            disposition: facts.disposition,
            correlated,
        };
        Ok(CallEvent::completed(common, completed).to_json_line())
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
        let mut policy = self.policy(campaign_id);
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
