//! The stream transport shell (RFC 3261 §18.3) for TCP and, with an `Acceptor`, TLS (§26.2):
//! messages framed by Content-Length on a stream, one writer task per connection so responses
//! reuse it. Connections are bounded in number and idle time, the ACL is checked before the TLS
//! handshake, and a handshake is bounded in time; a framing error closes the connection, since
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

use crate::ops::metrics::StreamLabel;
use crate::sip::Acl;
use crate::sip::edge::{Arrival, ArrivalTransport, Edge};
use crate::sip::framing::StreamDecoder;
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
    listener: TcpListener,
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
    let (read, mut write) = tokio::io::split(stream);
    let (sender, mut queue) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = queue.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
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
            Ok(Some(Ok(frame))) => edge.on_frame(frame, &arrival).await,
            Ok(Some(Err(err))) => {
                debug!(error = %err, "Stream framing error; closing the connection.");
                edge.metrics().sip_parse_errors.inc();
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    drop(arrival);
    let _ = writer.await;
}
