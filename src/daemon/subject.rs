//! The running daemon's answer to data-subject requests (`calltrackd subject …`), so they
//! work while calls are recorded: the daemon is the outbox's one writer, so the request
//! events, the redaction and the suppression list change all happen here.
//!
//! The number arrives on the 0600 control socket, is normalized, turned into its keyed
//! pseudonyms and hashes, and dropped; it is never logged, stored or echoed in an error.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use chrono::Utc;
use tracing::{info, warn};

use crate::call::subject_event::{self, Request};
use crate::call::{E164, Normalizer, Pseudonym, Recorder, subject};
use crate::ops::control::{SubjectNumber, SubjectReceipt};
use crate::outbox::redact::{Ranges, string_member};
use crate::outbox::{self, Outbox, Position};

/// Fixed words for the DPO; never the number.
const NOT_A_NUMBER: &str = "standard input is not a phone number";

pub(super) struct Subjects {
    pub recorder: Arc<Recorder>,
    pub outbox: Outbox,
    pub normalizer: Normalizer,
    /// The tracking numbers, for the correlation index's keys; replaced on reload.
    pub tracking: RwLock<Vec<E164>>,
}

impl Subjects {
    pub(super) async fn handle(
        self: Arc<Self>,
        request: Request,
        number: &SubjectNumber,
    ) -> Result<SubjectReceipt, String> {
        let number = self
            .normalizer
            .normalize(number.0.trim())
            .map_err(|_| NOT_A_NUMBER.to_owned())?;
        let this = self.clone();
        // Key derivation, a scan of the whole outbox and fsyncs: off the runtime's threads.
        let (receipt, events) = tokio::task::spawn_blocking(move || this.act(request, &number))
            .await
            .map_err(|_| "the request failed; see the daemon's log".to_owned())??;
        let lines: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        self.outbox.append_batch(&lines).await.map_err(|err| {
            warn!(error = %err, "Data-subject request events could not be written.");
            "the request's events could not be written to the outbox; retry".to_owned()
        })?;
        info!(
            receipt_id = %receipt.receipt_id,
            request = ?receipt.request,
            events_found = receipt.events_found,
            "Data-subject request carried out."
        );
        Ok(receipt)
    }

    /// The request's effect on the local stores, and the events that tell downstream.
    fn act(
        &self,
        request: Request,
        number: &E164,
    ) -> Result<(SubjectReceipt, Vec<Vec<u8>>), String> {
        let keyring = self.recorder.keyring();
        let pseudonyms =
            subject::pseudonyms(keyring, number).map_err(|e| failed("deriving pseudonyms", &e))?;
        let wanted: HashSet<&str> = pseudonyms.iter().map(|p| p.value.as_str()).collect();
        let mut receipt = SubjectReceipt {
            receipt_id: subject_event::receipt_id(),
            request,
            events_found: 0,
            keys: pseudonyms.len(),
            index_entries_dropped: 0,
            suppression_entry_dropped: false,
            events: None,
        };
        let list = self.recorder.suppression();
        let now = Utc::now();
        match request {
            Request::Erase => {
                receipt.events_found = self
                    .outbox
                    .redact(|line| caller_members(line, &wanted))
                    .map_err(|e| failed("redacting the outbox", &e))?;
                if let Some(correlator) = self.recorder.correlator() {
                    let tracking = self
                        .tracking
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    let keys = self
                        .recorder
                        .match_keys_of(number, &tracking)
                        .map_err(|e| failed("deriving index keys", &e))?;
                    receipt.index_entries_dropped = correlator.forget(&keys);
                    correlator
                        .persist()
                        .map_err(|e| failed("saving the correlation index", &e))?;
                }
                if let Some(list) = list {
                    receipt.suppression_entry_dropped = list
                        .erase(number)
                        .map_err(|e| failed("updating the suppression list", &e))?;
                }
            }
            Request::Object | Request::Restrict | Request::Unrestrict => {
                receipt.events_found = self.matching(&pseudonyms)?.len() as u64;
                let Some(list) = list else {
                    return Err("this daemon keeps no suppression list".to_owned());
                };
                let changed = match request {
                    Request::Object => list.object(number, now),
                    Request::Restrict => list.restrict(number, now),
                    _ => list.unrestrict(number),
                };
                changed.map_err(|e| failed("updating the suppression list", &e))?;
            }
            Request::Export => {
                let found = self.matching(&pseudonyms)?;
                receipt.events_found = found.len() as u64;
                receipt.events = Some(found);
            }
        }
        let events = subject_event::events(
            request,
            &receipt.receipt_id,
            &pseudonyms,
            receipt.events_found,
            now,
        );
        Ok((receipt, events))
    }

    /// The outbox events carrying one of `pseudonyms` as their caller pseudonym: the rule
    /// `subject find` uses too.
    fn matching(&self, pseudonyms: &[Pseudonym]) -> Result<Vec<serde_json::Value>, String> {
        let records: Vec<_> = outbox::scan(self.outbox.dir(), Position(0))
            .map_err(|e| failed("reading the outbox", &e))?
            .filter_map(Result::ok)
            .collect();
        Ok(
            subject::matching(pseudonyms, records.iter().map(|r| &r.line[..]))
                .into_iter()
                .filter_map(|line| serde_json::from_slice(line).ok())
                .collect(),
        )
    }
}

/// Logs a failed step (our paths and fixed words only) and words the DPO's answer.
fn failed(step: &str, err: &(dyn std::error::Error + 'static)) -> String {
    warn!(error = %crate::ops::Chain(err), step, "Data-subject request failed.");
    format!("the request failed while {step}; see the daemon's log")
}

/// The caller members of a call event whose pseudonym is wanted: the pseudonym and the region.
fn caller_members(line: &[u8], wanted: &HashSet<&str>) -> Ranges {
    if string_member(line, "event_type").is_none_or(|(_, t)| !t.starts_with(b"call.")) {
        return Vec::new();
    }
    let Some((pseudonym, value)) = string_member(line, "caller_pseudonym") else {
        return Vec::new();
    };
    if !std::str::from_utf8(value).is_ok_and(|v| wanted.contains(v)) {
        return Vec::new();
    }
    let mut ranges = vec![pseudonym];
    ranges.extend(string_member(line, "caller_region").map(|(range, _)| range));
    ranges
}
