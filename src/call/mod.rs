//! The call domain: E.164 numbers, caller identity, keyed pseudonyms with rotating keys, coarse
//! regions, minimization, and the versioned event schema that leaves the daemon.
//!
//! Everything here is sans-IO except the keyring, which owns its key files.

pub mod caller;
pub mod correlate;
pub mod disclosure;
pub mod epoch;
pub mod event;
pub mod keyring;
pub mod manifest;
pub mod notice;
pub mod number;
pub mod precision;
pub mod privacy;
pub mod pseudonym;
pub mod recorder;
pub mod region;
pub mod subject;
pub mod subject_event;
pub mod suppression;

pub use caller::{CallerIdentity, CallerInput, identify};
pub use epoch::Rotation;
pub use event::{
    CallEvent, CallerFields, Common, Completed, Consent, Correlation, Detail, Disclosed,
    Disclosure, Disposition, EventError, EventType, Hook, Outcome, SCHEMA_VERSION, Seconds,
};
pub use keyring::{KeyError, KeyInfo, Keyring};
pub use notice::{Cut, Notice};
pub use number::{E164, Normalizer, NumberError};
pub use precision::TimePrecision;
pub use privacy::{CallerPolicy, Grounds, Policy, informed, minimize};
pub use pseudonym::{Pseudonym, Purpose};
pub use recorder::{Observation, Observed, Recorder};
pub use region::region;
