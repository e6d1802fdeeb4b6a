//! The stream transport shell (RFC 3261 §18.3) for TCP and, with an `Acceptor`, TLS (§26.2):
//! messages framed by Content-Length on a stream, one writer task per connection so responses
//! reuse it. Connections are bounded in number and idle time, the ACL and the per-source rate
//! limit are checked before the TLS handshake (and the limit again for every message), and a handshake is bounded in time; a framing error closes the connection, since
//! the stream position is lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::sip::Acl;
use crate::sip::edge::{Arrival, ArrivalTransport, Edge};
use crate::sip::framing::{StreamDecoder, StreamItem};
use crate::sip::stats::StreamLabel;
use crate::sip::tls::Acceptor;

/// Responses queued per connection before we stop writing to a peer that does not read.
const WRITE_QUEUE: usize = 256;

pub struct TcpOptions {
    pub max_size: usize,
    pub max_connections: usize,
    pub idle: Duration,
}

/// Accepts connections on `listener`; with `tls`, each one is a TLS connection.
pub async fn serve(
    listener: Arc<TcpListener>,
    edge: Arc<Edge>,
    acl: Arc<Acl>,
    options: Arc<TcpOptions>,
    tls: Option<Arc<Acceptor>>,
    shutdown: CancellationToken,
) {
    // One limit across TCP and TLS listeners would need sharing; each listener has its own.
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let kind = if tls.is_some() {
        StreamLabel::Tls
    } else {
        StreamLabel::Tcp
    };
    loop {
        let (stream, source) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(_) => {
                    // EMFILE and friends: back off rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !acl.allows(source.ip()) {
            edge.metrics().sip_acl_denied.inc();
            continue;
        }
        if !edge.admit(source.ip(), true) {
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!("Stream connection refused: connection limit reached.");
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let edge = edge.clone();
        let options = options.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let gauge = edge.metrics().connections(kind);
            gauge.inc();
            let peer = Peer {
                source,
                local,
                kind,
            };
            match tls {
                None => connection(stream, peer, &edge, &options, shutdown).await,
                Some(tls) => {
                    let (acceptor, limit) = tls.current();
                    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            connection(stream, peer, &edge, &options, shutdown).await;
                        }
                        Ok(Err(_)) | Err(_) => {
                            edge.metrics().tls_handshake_failures.inc();
                            // The reason would name the peer's certificate: not logged.
                            debug!("TLS handshake failed or timed out.");
                        }
                    }
                }
            }
            gauge.dec();
            drop(permit);
        });
    }
}

/// Who is on the other end of a connection, and on which of our sockets.
struct Peer {
    source: SocketAddr,
    local: SocketAddr,
    kind: StreamLabel,
}

async fn connection<S>(
    stream: S,
    peer: Peer,
    edge: &Arc<Edge>,
    options: &TcpOptions,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let (sender, writer) = spawn_writer(write);
    serve_reads(read, sender, writer, peer, edge, options, shutdown).await;
}

/// A connection's writer task, the queue into it, and what stops it.
struct Writer {
    task: tokio::task::JoinHandle<()>,
    /// Cancelled when the read side ends: the queue is closed then, so a later response sees
    /// the connection gone (and may open a new one, §18.2.2) instead of vanishing into it.
    stop: CancellationToken,
}

fn spawn_writer<W>(mut write: W) -> (mpsc::Sender<Bytes>, Writer)
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (sender, mut queue) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        loop {
            let bytes = tokio::select! {
                biased;
                next = queue.recv() => match next {
                    Some(bytes) => bytes,
                    None => break,
                },
                () = stopped.cancelled() => break,
            };
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    (sender, Writer { task, stop })
}

/// Opens connections for responses whose request's connection closed (RFC 3261 §18.2.2). A
/// dialled connection is served like an accepted one, so the peer's ACK may come back on it.
pub struct Dialer {
    pub edge: std::sync::Weak<Edge>,
    pub options: Arc<TcpOptions>,
    pub shutdown: CancellationToken,
}

/// A peer that does not accept within this is taken as gone.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

impl crate::sip::edge::Dial for Dialer {
    fn dial(&self, to: SocketAddr) -> futures::future::BoxFuture<'_, Option<mpsc::Sender<Bytes>>> {
        Box::pin(async move {
            let edge = self.edge.upgrade()?;
            let stream = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(to))
                .await
                .ok()?
                .ok()?;
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().ok()?;
            let (read, write) = tokio::io::split(stream);
            let (sender, writer) = spawn_writer(write);
            let (options, shutdown, queue) =
                (self.options.clone(), self.shutdown.clone(), sender.clone());
            tokio::spawn(async move {
                let gauge = edge.metrics().connections(StreamLabel::Tcp);
                gauge.inc();
                let peer = Peer {
                    source: to,
                    local,
                    kind: StreamLabel::Tcp,
                };
                serve_reads(read, queue, writer, peer, &edge, &options, shutdown).await;
                gauge.dec();
            });
            Some(sender)
        })
    }
}

/// Reads framed messages (and keepalive pings) until the peer closes, idles out, or breaks the
/// framing; then waits for the writer to flush.
async fn serve_reads<R>(
    read: R,
    sender: mpsc::Sender<Bytes>,
    writer: Writer,
    peer: Peer,
    edge: &Arc<Edge>,
    options: &TcpOptions,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Send + Unpin,
{
    let pong = sender.clone();
    let arrival = Arrival {
        source: peer.source,
        local: peer.local,
        transport: ArrivalTransport::Stream {
            kind: peer.kind,
            sender,
        },
    };
    let mut frames = FramedRead::new(read, StreamDecoder::new(options.max_size));
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => break,
            next = tokio::time::timeout(options.idle, frames.next()) => next,
        };
        match next {
            // Framed but not parsed: a trunk over its rate loses the message, not the connection.
            Ok(Some(Ok(StreamItem::Message(frame)))) => {
                if edge.admit(peer.source.ip(), true) {
                    edge.on_frame(frame, &arrival).await;
                }
            }
            // RFC 5626 §4.4.1: a double-CRLF ping is answered with a single CRLF pong. A full
            // writer queue means the peer is not reading: the pong would only add to it.
            Ok(Some(Ok(StreamItem::Ping))) => {
                if pong.try_send(Bytes::from_static(b"\r\n")).is_ok() {
                    edge.metrics().sip_keepalive_pongs.inc();
                } else {
                    edge.metrics().sip_write_queue_full.inc();
                }
            }
            Ok(Some(Err(err))) => {
                debug!(error = %err, "Stream framing error; closing the connection.");
                edge.metrics().sip_parse_errors.inc();
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    // The writer ends once every sender is gone (ours here, and those transactions and call
    // flows still hold).
    drop((arrival, pong));
    writer.stop.cancel();
    let _ = writer.task.await;
}
