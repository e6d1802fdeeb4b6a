//! systemd integration (sd_notify(3)): READY=1 once listeners are bound, STOPPING=1 on shutdown,
//! and WATCHDOG=1 pings at half the unit's WatchdogSec while the parts that serve calls run.
//! Without systemd these are no-ops.

use std::time::Duration;

pub fn ready() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}

pub fn stopping() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

/// Pings the watchdog forever if the unit asks for one, but only while `alive()` (the critical
/// tasks run): a task that keeps failing past WatchdogSec gets the process restarted. The pings
/// come from the same runtime that serves SIP, so a wedged runtime stops them too.
pub async fn watchdog(alive: impl Fn() -> bool) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        tick.tick().await;
        if alive() {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
    }
}
