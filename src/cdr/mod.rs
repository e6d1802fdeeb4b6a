//! Carrier CDR ingest. A 302 redirect means calltrackd never sees a call end; the carrier's
//! CDR export does. Data flows: `watch` (spool directory, completeness) → `ingest` (one
//! file) → `reader` (plain/gzip CSV stream) → `row` (sans-IO mapping by `format`) → a
//! `RowSink`, with `checkpoint` + `dedup` for exactly-once and `quarantine` for bad rows;
//! `withheld` is the row mapper's CLIR rule, `raw` the retention of ingested files.

pub mod checkpoint;
pub mod complete;
pub mod dedup;
pub mod format;
pub mod gzip;
pub mod ingest;
pub mod limits;
pub mod quarantine;
pub mod raw;
pub mod reader;
pub mod retry;
pub mod row;
pub mod service;
pub mod split;
pub mod watch;
pub mod withheld;

pub use checkpoint::{Checkpoints, FileId, Fingerprint, State};
pub use format::{Format, FormatError, builtin_presets};
pub use ingest::{ChannelSink, IngestError, IngestReport, Job, RowSink, SinkError, ingest_file};
pub use limits::{Bound, Limits, LimitsConfig};
pub use quarantine::Quarantine;
pub use reader::{Item, Reader, Resume};
pub use row::{CdrRow, Disposition, Mapper, Row, RowError};
pub use watch::{After, Feed, Tracker};
