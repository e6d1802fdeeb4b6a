//! Turns what the SIP edge observed about a call into its minimized events: the caller is
//! identified, pseudonymized under the current key epoch (or dropped, per campaign policy), and
//! the Call-ID becomes a keyed call key. Nothing raw survives past this point.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::correlate::{self, CallerState, Correlator};
use super::privacy::Grounds;
use super::suppression::{Standing, Suppression};
use super::{
    CallEvent, CallerFields, CallerIdentity, CallerInput, Common, Consent, Disclosed, Disclosure,
    E164, KeyError, Keyring, Normalizer, Notice, Policy, Pseudonym, Purpose, Seconds, identify,
    minimize,
};
use super::{Completed, Correlation, Disposition, TimePrecision};

pub struct Recorder {
    keyring: Keyring,
    normalizer: Normalizer,
    /// Per-campaign minimization; replaced whole on a config reload.
    policies: std::sync::RwLock<Arc<HashMap<String, Policy>>>,
    default_policy: Policy,
    correlator: Option<Arc<Correlator>>,
    suppression: Option<Arc<Suppression>>,
    /// Applied to every time an event carries, before it is written.
    precision: TimePrecision,
}

/// A carrier's record of a call's end, numbers already normalized.
///
/// `Debug` hides the record key and Call-ID (carrier identifiers of one call) and the times.
#[derive(Clone)]
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

impl std::fmt::Debug for CdrFacts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdrFacts")
            .field("call_id", &self.call_id.is_some())
            .field("caller", self.caller)
            .field("campaign_id", &self.campaign_id)
            .field("tracking_number", self.tracking_number)
            .field("answered", &self.answered.is_some())
            .field("ended", &self.ended.is_some())
            .field("duration_seconds", &self.duration_seconds)
            .field("disposition", &self.disposition)
            .finish_non_exhaustive()
    }
}

/// What the SIP side knows of one call when its events are made, raw: `observe` minimizes it.
///
/// `Debug` names the campaign and the notice only.
pub struct Observation<'a> {
    /// The SIP Call-ID.
    pub call_id: &'a str,
    pub identity: &'a CallerIdentity,
    pub campaign_id: &'a str,
    pub tracking_number: &'a E164,
    /// When the INVITE arrived: the key epoch of every event of the call.
    pub at: DateTime<Utc>,
    pub notice: Notice,
}

impl std::fmt::Debug for Observation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observation")
            .field("campaign_id", &self.campaign_id)
            .field("notice", &self.notice)
            .finish_non_exhaustive()
    }
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
    precision: TimePrecision,
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
            suppression: None,
            precision: TimePrecision::default(),
        }
    }

    /// `[privacy] time_precision`; the default is whole seconds.
    pub fn with_time_precision(mut self, precision: TimePrecision) -> Self {
        self.precision = precision;
        self
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

    /// Remembers objections and restrictions across calls.
    pub fn with_suppression(mut self, suppression: Arc<Suppression>) -> Self {
        self.suppression = Some(suppression);
        self
    }

    pub fn suppression(&self) -> Option<&Arc<Suppression>> {
        self.suppression.as_ref()
    }

    /// What the suppression list says about this caller now (nothing for withheld callers).
    pub fn standing(&self, identity: &CallerIdentity) -> Standing {
        match (identity, &self.suppression) {
            (CallerIdentity::Number(n), Some(list)) => list.standing(n, Utc::now()),
            _ => Standing::default(),
        }
    }

    /// The correlation key of a call at `tracking` from `caller` (a withheld caller has one of
    /// its own: the tracking number and a fixed marker that is never a number).
    fn match_key(
        &self,
        tracking: &E164,
        caller: &CallerIdentity,
        at: DateTime<Utc>,
    ) -> Option<String> {
        let caller = match caller {
            CallerIdentity::Number(number) => number.as_str(),
            CallerIdentity::Withheld => "withheld",
        };
        let input = format!("{}|{caller}", tracking.as_str());
        self.keyring
            .pseudonymize(Purpose::Record, input.as_bytes(), at)
            .ok()
            .map(|p| p.value)
    }

    /// Every correlation key `number` can have had, for erasure: one per tracking number and
    /// key epoch held.
    pub fn match_keys_of(&self, number: &E164, tracking: &[E164]) -> Result<Vec<String>, KeyError> {
        let caller = CallerIdentity::Number(number.clone());
        let mut keys = Vec::new();
        for at in super::subject::epoch_starts(&self.keyring)? {
            keys.extend(
                tracking
                    .iter()
                    .filter_map(|t| self.match_key(t, &caller, at)),
            );
        }
        Ok(keys)
    }

    /// Adds a recorded SIP call to the correlation index.
    pub fn remember(&self, observed: &Observed, identity: &CallerIdentity, at: DateTime<Utc>) {
        let Some(correlator) = &self.correlator else {
            return;
        };
        let caller = if observed.caller.withheld {
            CallerState::Withheld
        } else if observed.caller.pseudonym.is_some() {
            CallerState::Identified
        } else {
            CallerState::Unidentified
        };
        let entry = correlate::Entry {
            call_key: observed.call_key.value.clone(),
            match_key: self.match_key(&observed.tracking_number, identity, at),
            consent: observed.consent,
            disclosure: observed.disclosure,
            offered_at: at,
            caller: Some(caller),
        };
        correlator.insert(entry, Utc::now());
    }

    /// The `call.completed` event for a CDR row, joined to its SIP call where one is known.
    ///
    /// The SIP side's decision about the caller holds for the whole call: a row joined to a
    /// withheld call stays withheld even when the carrier exports the real A-number, and a
    /// caller keeps an identifier only if the SIP side identified them (informed, no
    /// objection). A row that joins nothing has no informed caller, so it keeps none either.
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
            let near = |caller: &CallerIdentity| {
                let key = self.match_key(facts.tracking_number, caller, at)?;
                c.by_heuristic(&key, at, facts.tolerance)
                    .map(|e| (e, Correlation::Heuristic))
            };
            // A row with a number may belong to a withheld call: CLIR callers' numbers are in
            // carriers' CDRs. Their own calls are tried first.
            exact
                .or_else(|| near(facts.caller))
                .or_else(|| near(&CallerIdentity::Withheld))
        });
        let (call_key, consent, disclosure, caller_state, correlated, key_at) = match joined {
            Some((entry, how)) => {
                let key = Pseudonym {
                    key_id: self.keyring.key_id(entry.offered_at),
                    value: entry.call_key.clone(),
                };
                let state = entry.caller_state();
                (
                    key,
                    entry.consent,
                    entry.disclosure,
                    state,
                    how,
                    entry.offered_at,
                )
            }
            None => {
                let key =
                    self.keyring
                        .pseudonymize(Purpose::CallKey, facts.record_key.as_bytes(), at)?;
                let state = match facts.caller {
                    CallerIdentity::Withheld => CallerState::Withheld,
                    CallerIdentity::Number(_) => CallerState::Unidentified,
                };
                (
                    key,
                    None,
                    Disclosure::NotPlayed,
                    state,
                    Correlation::None,
                    at,
                )
            }
        };
        let identity = match caller_state {
            CallerState::Withheld => &CallerIdentity::Withheld,
            CallerState::Identified | CallerState::Unidentified => facts.caller,
        };
        let standing = self.standing(identity);
        let consent = match consent {
            None if standing.objected => Some(Consent::ObjectedEarlier),
            other => other,
        };
        let grounds = Grounds {
            informed: caller_state == CallerState::Identified,
            consent: if standing.objected {
                Some(Consent::ObjectedEarlier)
            } else {
                consent
            },
            restricted: standing.restricted,
        };
        // The caller pseudonym comes from the call key's epoch, so one event never mixes keys.
        let policy = self.policy(facts.campaign_id);
        let caller = minimize(identity, grounds, &policy, &self.keyring, key_at)?;
        let time = |t| self.precision.truncate(t);
        let common = Common::new(
            time(facts.ended.unwrap_or(at)),
            call_key,
            facts.campaign_id,
            facts.tracking_number.clone(),
            caller,
            disclosure,
            consent,
        );
        let completed = Completed {
            answered_at: facts.answered.map(time),
            ended_at: facts.ended.map(time),
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

    /// Pseudonymizes one call. The Call-ID only ever leaves as a keyed hash. The caller keeps an
    /// identifier only when the notice informed them (see `Notice::informed`) and they did not
    /// object; a fresh objection goes on the suppression list, and a caller already on it is
    /// recorded as `objected_earlier`.
    pub fn observe(&self, call: &Observation<'_>) -> Result<Observed, KeyError> {
        let standing = self.standing(call.identity);
        let consent = match call.notice.consent() {
            Some(Consent::Objected) => {
                self.remember_objection(call.identity);
                Some(Consent::Objected)
            }
            _ if standing.objected => Some(Consent::ObjectedEarlier),
            other => other,
        };
        let grounds = Grounds {
            informed: call.notice.informed(),
            consent,
            restricted: standing.restricted,
        };
        let at = call.at;
        let policy = self.policy(call.campaign_id);
        let caller = minimize(call.identity, grounds, &policy, &self.keyring, at)?;
        let call_key = self
            .keyring
            .pseudonymize(Purpose::CallKey, call.call_id.as_bytes(), at)?;
        Ok(Observed {
            call_key,
            campaign_id: call.campaign_id.to_owned(),
            tracking_number: call.tracking_number.clone(),
            caller,
            disclosure: call.notice.disclosure(),
            consent,
            precision: self.precision,
        })
    }

    fn remember_objection(&self, identity: &CallerIdentity) {
        let (CallerIdentity::Number(number), Some(list)) = (identity, &self.suppression) else {
            return;
        };
        if let Err(err) = list.object(number, Utc::now()) {
            // The path in the error is ours; the number never is.
            tracing::warn!(error = %crate::ops::Chain(&err), "Objection could not be saved to the suppression list.");
        }
    }
}

impl Observed {
    fn common(&self, at: DateTime<Utc>) -> Common {
        Common::new(
            self.precision.truncate(at),
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
