//! Log setup. Lines are fields first, then a short sentence. Nothing that identifies a caller or a
//! carrier host is ever a field: see docs/privacy.md.

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::{Log, LogFormat};

/// Swaps the installed subscriber's filter (the handle's type depends on the format, so it is
/// kept behind a closure).
type Reload = Box<dyn Fn(EnvFilter) -> bool + Send + Sync>;

static RELOAD: OnceLock<Reload> = OnceLock::new();

/// Installs the global subscriber; `RUST_LOG` overrides the configured level.
pub fn init(log: &Log) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let reload: Reload = match log.format {
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_err() {
                return;
            }
            Box::new(move |f| handle.reload(f).is_ok())
        }
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_err() {
                return;
            }
            Box::new(move |f| handle.reload(f).is_ok())
        }
    };
    let _ = RELOAD.set(reload);
    log_panics_without_payload();
}

/// A panic is logged as one line with where it happened, never its message: a message built
/// from a value (`unwrap` on an error, an index) may quote caller data, and the default hook
/// would print it to stderr, i.e. the journal. The supervisor restarts the task.
fn log_panics_without_payload() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "Panic (message withheld: it may hold call data).");
    }));
}

/// Applies a reloaded `[log] level` (SIGHUP). `RUST_LOG`, when set, keeps winning, as at start.
/// Returns whether the level changed.
pub fn set_level(level: &str) -> bool {
    if std::env::var_os("RUST_LOG").is_some() {
        return false;
    }
    let (Some(reload), Ok(filter)) = (RELOAD.get(), EnvFilter::try_new(level)) else {
        return false;
    };
    reload(filter)
}
