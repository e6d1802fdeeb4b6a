//! The `[sip.timers]` config section: the RFC 3261 §17 timer bases in milliseconds, their
//! checks, and the transaction table's `Timers` built from them.

use std::time::Duration;

use serde::Deserialize;

use super::Timers;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerSettings {
    #[serde(default = "default_t1")]
    pub t1_ms: u64,
    #[serde(default = "default_t2")]
    pub t2_ms: u64,
    #[serde(default = "default_t4")]
    pub t4_ms: u64,
}

impl Default for TimerSettings {
    fn default() -> Self {
        Self {
            t1_ms: default_t1(),
            t2_ms: default_t2(),
            t4_ms: default_t4(),
        }
    }
}
// The RFC 3261 §17.1.1.1 values.
fn default_t1() -> u64 {
    500
}
fn default_t2() -> u64 {
    4000
}
fn default_t4() -> u64 {
    5000
}

impl TimerSettings {
    /// Problems as (key path relative to `[sip.timers]`, message); the empty key is the section.
    pub fn validate(&self) -> Vec<(String, String)> {
        if self.t1_ms == 0 || self.t2_ms < self.t1_ms || self.t4_ms == 0 {
            vec![(
                String::new(),
                "need t1_ms > 0, t2_ms >= t1_ms and t4_ms > 0".to_owned(),
            )]
        } else {
            Vec::new()
        }
    }
}

impl From<TimerSettings> for Timers {
    fn from(s: TimerSettings) -> Self {
        Self {
            t1: Duration::from_millis(s.t1_ms),
            t2: Duration::from_millis(s.t2_ms),
            t4: Duration::from_millis(s.t4_ms),
        }
    }
}
