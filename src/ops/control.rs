//! The local control socket (the `kamcmd` habit): a Unix stream socket under the data directory,
//! mode 0600, that accepts only peers of the daemon's own user (or root, checked by
//! `SO_PEERCRED`). One JSON request line in, one JSON response line out. `calltrackd status`
//! is its client; commands that must reach the one outbox writer go the same way.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::status::Status;

/// A request line longer than this is refused (requests are a few dozen bytes).
const MAX_REQUEST: usize = 64 * 1024;
/// Reading the request line, and a status answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// A data-subject request searches (and may rewrite) the whole outbox.
const SUBJECT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    /// A data-subject request for one phone number.
    Subject {
        request: SubjectRequest,
        number: SubjectNumber,
    },
}

pub use crate::call::subject_event::Request as SubjectRequest;

/// The phone number of a data-subject request, as the DPO typed it. Only the daemon's
/// normalizer reads it; `Debug` never shows it, so no log line or panic message can.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubjectNumber(pub String);

impl std::fmt::Debug for SubjectNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectNumber(…)")
    }
}

/// What the daemon did for a data-subject request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectReceipt {
    /// For the DPO's records; also in the request's events.
    pub receipt_id: String,
    pub request: SubjectRequest,
    /// Local events that carry one of the subject's pseudonyms.
    pub events_found: u64,
    /// Key epochs searched (one pseudonym each).
    pub keys: usize,
    /// Erase: correlation-index entries and suppression-list entries dropped.
    #[serde(default)]
    pub index_entries_dropped: usize,
    #[serde(default)]
    pub suppression_entry_dropped: bool,
    /// Export: the events themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Box<Status>),
    Subject(Box<SubjectReceipt>),
    /// The request was not understood or could not be done; the text says why in fixed words.
    Error {
        message: String,
    },
}

/// What the daemon answers with.
pub trait Handler: Send + Sync + 'static {
    fn status(&self) -> Status;
    /// Carries out a data-subject request; the error is fixed words without the number.
    fn subject<'a>(
        &'a self,
        request: SubjectRequest,
        number: &'a SubjectNumber,
    ) -> BoxFuture<'a, Result<SubjectReceipt, String>>;
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {0} belongs to a running daemon")]
    InUse(PathBuf),
    #[error("the daemon's answer is not understood")]
    Answer(#[source] serde_json::Error),
    #[error("the daemon refused the request: {0}")]
    Refused(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ControlError + '_ {
    move |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The bound socket and the uid allowed besides root (its owner: the daemon's user).
pub struct Control {
    listener: UnixListener,
    path: PathBuf,
    owner: u32,
}

impl Control {
    /// Binds `path` with mode 0600, replacing a stale socket a killed daemon left behind.
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(ControlError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "exists and is not a socket",
                    ),
                });
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io(path))?;
        }
        let listener = UnixListener::bind(path).map_err(io(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
        let owner = std::fs::metadata(path).map_err(io(path))?.uid();
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            owner,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers requests until `shutdown`, then removes the socket file.
    pub async fn serve(self: Arc<Self>, handler: Arc<dyn Handler>, shutdown: CancellationToken) {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.listener.accept() => match r {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let allowed = stream
                .peer_cred()
                .is_ok_and(|c| c.uid() == self.owner || c.uid() == 0);
            if !allowed {
                debug!("Control connection from another user refused.");
                continue;
            }
            let handler = handler.clone();
            tokio::spawn(async move {
                // A client that stops reading cannot keep the task: the whole exchange is bounded.
                let bound = SUBJECT_TIMEOUT + TIMEOUT;
                let _ = tokio::time::timeout(bound, answer(stream, handler.as_ref())).await;
            });
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(stream: UnixStream, handler: &dyn Handler) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
    tokio::time::timeout(TIMEOUT, reader.read_until(b'\n', &mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let response = match serde_json::from_slice::<Request>(&line) {
        Ok(Request::Status) => Response::Status(Box::new(handler.status())),
        Ok(Request::Subject { request, number }) => {
            match tokio::time::timeout(SUBJECT_TIMEOUT, handler.subject(request, &number)).await {
                Ok(Ok(receipt)) => Response::Subject(Box::new(receipt)),
                Ok(Err(message)) => Response::Error { message },
                Err(_) => Response::Error {
                    message: "the request took too long; see the daemon's log".to_owned(),
                },
            }
        }
        Err(_) => Response::Error {
            message: "not a control request (expected {\"command\":\"status\"})".to_owned(),
        },
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// The client side, for the CLI: one request, one answer, bounded in time.
pub fn request(path: &Path, request: &Request) -> Result<Response, ControlError> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(io(path))?;
    let wait = match request {
        Request::Status => TIMEOUT,
        Request::Subject { .. } => SUBJECT_TIMEOUT + TIMEOUT,
    };
    stream.set_read_timeout(Some(wait)).map_err(io(path))?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io(path))?;
    let mut line = serde_json::to_vec(request).map_err(ControlError::Answer)?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io(path))?;
    let mut answer = Vec::new();
    BufReader::new(stream)
        .read_until(b'\n', &mut answer)
        .map_err(io(path))?;
    let response: Response = serde_json::from_slice(&answer).map_err(ControlError::Answer)?;
    if let Response::Error { message } = response {
        return Err(ControlError::Refused(message));
    }
    Ok(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ops::status::*;

    struct Fixed;
    impl Handler for Fixed {
        fn subject<'a>(
            &'a self,
            request: SubjectRequest,
            number: &'a SubjectNumber,
        ) -> BoxFuture<'a, Result<SubjectReceipt, String>> {
            Box::pin(async move {
                if number.0 != "+4930123456" {
                    return Err("standard input is not a phone number".to_owned());
                }
                Ok(SubjectReceipt {
                    receipt_id: "r-1".into(),
                    request,
                    events_found: 2,
                    keys: 1,
                    index_entries_dropped: 0,
                    suppression_entry_dropped: false,
                    events: None,
                })
            })
        }

        fn status(&self) -> Status {
            Status {
                version: "0.0.0".into(),
                uptime_seconds: 1,
                listeners: vec![],
                calls: Calls {
                    in_flight: 2,
                    announcing: 1,
                    transactions: 3,
                    tcp_connections: 0,
                    tls_connections: 0,
                },
                outbox: OutboxStatus {
                    end: 9,
                    bytes: 900,
                    max_bytes: 1000,
                    poisoned: false,
                    no_space: false,
                    depth: 0,
                    lag_seconds: 0,
                },
                forwarder: ForwarderStatus {
                    state: ForwarderState::Off,
                    acked: 0,
                    delivery_errors: 0,
                    resends: 0,
                },
                feeds: vec![],
                key_id: "2026-12".into(),
                not_ready: vec![],
                tasks: vec![],
            }
        }
    }

    #[tokio::test]
    async fn status_round_trip_on_a_0600_socket_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let control = Control::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let stop = CancellationToken::new();
        let server = tokio::spawn(Arc::new(control).serve(Arc::new(Fixed), stop.clone()));
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || request(&p, &Request::Status))
            .await
            .unwrap()
            .unwrap();
        let Response::Status(status) = answer else {
            panic!("not a status")
        };
        assert_eq!(status.calls.in_flight, 2);
        assert!(status.to_string().contains("2 in flight (1 announcing)"));
        // A line that is not a request gets a clear refusal.
        let p = path.clone();
        let raw = tokio::task::spawn_blocking(move || {
            let mut s = std::os::unix::net::UnixStream::connect(&p).unwrap();
            s.write_all(b"{\"command\":\"reboot\"}\n").unwrap();
            let mut out = String::new();
            BufReader::new(s).read_line(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert!(raw.contains("\"result\":\"error\""), "{raw}");
        // A subject request round-trips; its refusal is the handler's fixed words.
        let p = path.clone();
        let (ok, refused) = tokio::task::spawn_blocking(move || {
            let ask = |n: &str| {
                request(
                    &p,
                    &Request::Subject {
                        request: SubjectRequest::Object,
                        number: SubjectNumber(n.to_owned()),
                    },
                )
            };
            (ask("+4930123456"), ask("nonsense"))
        })
        .await
        .unwrap();
        let Response::Subject(receipt) = ok.unwrap() else {
            panic!("not a receipt")
        };
        assert_eq!(
            (receipt.request, receipt.events_found),
            (SubjectRequest::Object, 2)
        );
        let refused = refused.unwrap_err().to_string();
        assert!(refused.contains("not a phone number"), "{refused}");
        assert!(!format!("{:?}", SubjectNumber("+4930123456".into())).contains("30123456"));
        stop.cancel();
        server.await.unwrap();
        assert!(!path.exists(), "socket removed on shutdown");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let live = Control::bind(&path).unwrap();
        assert!(matches!(Control::bind(&path), Err(ControlError::InUse(_))));
        drop(live);
        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        assert!(Control::bind(&dir.path().join("plain")).is_err());
    }
}
