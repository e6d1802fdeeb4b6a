//! The syncer thread: fdatasync of dirty segments, off the async workers and outside the write
//! lock. Group commit falls out of the loop: every append written before a round starts is
//! covered by that round, so one fdatasync serves all appenders waiting at that moment.

use std::sync::Arc;
use std::thread::JoinHandle;

use super::Durability;
use super::segment;
use super::writer::{Shared, Synced};

pub(super) fn spawn(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("outbox-sync".into())
        .spawn(move || run(&shared))
}

fn run(s: &Shared) {
    let mut synced = s.synced.borrow().next;
    loop {
        let Ok(w) = s.w.lock() else { return fail(s) };
        let w = match s.opts.durability {
            Durability::Sync => s
                .wake
                .wait_while(w, |w| {
                    !w.stop && !w.urgent && w.next == synced && !w.dir_dirty
                })
                .map_err(|_| ()),
            Durability::Interval => s
                .wake
                .wait_timeout_while(w, s.opts.sync_interval, |w| !w.stop && !w.urgent)
                .map(|(w, _)| w)
                .map_err(|_| ()),
        };
        let Ok(mut w) = w else { return fail(s) };
        let stop = w.stop;
        w.urgent = false;
        if w.next == synced && !w.dir_dirty && w.sealed.is_empty() {
            if stop {
                return;
            }
            continue;
        }
        let mut files: Vec<_> = w.sealed.drain(..).collect();
        files.push(Arc::clone(&w.file));
        let dir_dirty = std::mem::take(&mut w.dir_dirty);
        let upto = w.next;
        drop(w);

        let mut ok = files.iter().all(|f| f.sync_data().is_ok());
        if ok && dir_dirty {
            ok = segment::sync_dir(&s.dir, ".").is_ok();
        }
        if !ok {
            return fail(s);
        }
        synced = upto;
        s.stats.count_sync();
        s.synced.send_replace(Synced {
            next: upto,
            failed: false,
        });
        if stop {
            return;
        }
    }
}

/// After a failed fdatasync the kernel may have dropped dirty pages (so retrying could report
/// success for lost data); refuse further appends and fail every waiter.
fn fail(s: &Shared) {
    tracing::error!("Outbox fdatasync failed; refusing further appends.");
    if let Ok(mut w) = s.w.lock() {
        w.poisoned = true;
    }
    s.synced.send_modify(|v| v.failed = true);
}
