//! The evidence writer's counters, registered into the metrics registry under `evidence_`;
//! each counts one fixed occurrence and carries no content.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::store::Round;

#[derive(Debug, Default)]
pub struct Stats {
    lines: Counter,
    seals: Counter,
    duplicates: Counter,
    skipped: Counter,
    refused: Counter,
    torn_lines_cut: Counter,
    failures: Counter,
}

impl Stats {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("evidence");
        let counters = [
            ("lines", "Evidence lines appended to day files", &self.lines),
            ("seals", "Day seals signed and written", &self.seals),
            (
                "duplicates",
                "Disclosures re-read after a restart and already in their day file",
                &self.duplicates,
            ),
            (
                "skipped",
                "call.disclosed lines that could not be read as events (older builds wrote them without recording_sha256 and outcome)",
                &self.skipped,
            ),
            (
                "refused",
                "Disclosures not written because their day file does not verify",
                &self.refused,
            ),
            (
                "torn_lines_cut",
                "Unfinished last lines of a day file cut before extending it",
                &self.torn_lines_cut,
            ),
            (
                "failures",
                "Times the evidence writer failed and was restarted",
                &self.failures,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
    }

    pub(super) fn round(&self, round: &Round) {
        self.lines.inc_by(round.lines);
        self.seals.inc_by(round.seals);
        self.duplicates.inc_by(round.duplicates);
        self.skipped.inc_by(round.skipped);
        self.refused.inc_by(round.refused);
        self.torn_lines_cut.inc_by(round.torn_lines_cut);
    }

    pub(super) fn failed(&self) {
        self.failures.inc();
    }

    pub fn lines(&self) -> u64 {
        self.lines.get()
    }

    pub fn failures(&self) -> u64 {
        self.failures.get()
    }
}
