//! `StartError`: why the daemon, or a CLI command that opens the daemon's parts, cannot start.

use std::net::SocketAddr;

use crate::outbox;
use crate::sip::tls::TlsError;

/// Why the daemon (or a CLI command opening its parts) cannot start. Each variant keeps its cause
/// as `source` and says only what it adds, so `{:#}` (anyhow, `ops::Chain`) prints every part
/// once: `outbox: outbox open failed on LOCK: Permission denied`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("pseudonym keys")]
    Keys(#[from] crate::call::KeyError),
    #[error(transparent)]
    Suppression(#[from] crate::call::suppression::SuppressionError),
    #[error("outbox")]
    Outbox(#[from] outbox::Error),
    #[error("numbers")]
    Numbers(#[from] crate::call::NumberError),
    /// `validate` refuses this; kept for a config that bypassed it.
    #[error("numbers: a pool entry names an unknown campaign")]
    UnknownCampaign,
    #[error(transparent)]
    Announcement(#[from] crate::media::WavError),
    #[error("media")]
    Media(#[from] crate::media::ports::PortError),
    #[error("cdr")]
    Cdr(#[from] crate::cdr::service::ServiceError),
    #[error("cannot listen on {addr} ({transport})")]
    Bind {
        addr: SocketAddr,
        transport: &'static str,
        source: std::io::Error,
    },
    #[error("sip.tls")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Control(#[from] crate::ops::control::ControlError),
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use super::*;

    /// What `main` prints: anyhow's `{:#}`, the error and its sources joined by ": ".
    fn printed(err: StartError) -> String {
        format!("{:#}", anyhow::Error::from(err))
    }

    fn once(text: &str, parts: &[&str]) {
        for part in parts {
            assert_eq!(text.matches(part).count(), 1, "{part:?} in {text:?}");
        }
    }

    #[test]
    fn each_cause_of_a_start_error_is_printed_once() {
        let outbox = StartError::from(outbox::Error::Io {
            op: "open",
            file: "LOCK".to_owned(),
            source: io::Error::other("disk on fire"),
        });
        let text = printed(outbox);
        assert_eq!(text, "outbox: outbox open failed on LOCK: disk on fire");
        once(&text, &["outbox:", "open failed on LOCK", "disk on fire"]);

        let keys = StartError::from(crate::call::KeyError::Dir {
            path: PathBuf::from("/k"),
            source: io::Error::other("not permitted"),
        });
        let text = printed(keys);
        assert_eq!(
            text,
            "pseudonym keys: key directory /k cannot be used: not permitted"
        );

        let tls = StartError::from(TlsError::Read {
            key: "certificate_file".to_owned(),
            path: PathBuf::from("/c.pem"),
            source: io::Error::other("gone"),
        });
        let text = printed(tls);
        assert_eq!(text, "sip.tls: certificate_file: cannot read /c.pem: gone");
        once(&text, &["certificate_file", "/c.pem", "gone"]);

        let bind = StartError::Bind {
            addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
            transport: "udp",
            source: io::Error::other("in use"),
        };
        assert_eq!(
            printed(bind),
            "cannot listen on 127.0.0.1:5060 (udp): in use"
        );
    }
}
