//! The TCP transport shell (RFC 3261 §18.3): messages framed by Content-Length on a stream, one
//! writer task per connection so responses (and Timer-free retransmission absorption) reuse it.
//! Connections are bounded in number and idle time; a framing error closes the connection, since
//! the stream position is lost.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::sip::Acl;
use crate::sip::edge::{Arrival, ArrivalTransport, Edge};
use crate::sip::framing::StreamDecoder;

/// Responses queued per connection before we stop writing to a peer that does not read.
const WRITE_QUEUE: usize = 256;

pub struct TcpOptions {
    pub max_size: usize,
    pub max_connections: usize,
    pub idle: Duration,
}

pub async fn serve(
    listener: TcpListener,
    edge: Arc<Edge>,
    acl: Arc<Acl>,
    options: TcpOptions,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let options = Arc::new(options);
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
            debug!("TCP connection refused: connection limit reached.");
            continue;
        };
        let edge = edge.clone();
        let options = options.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            edge.metrics()
                .tcp_connections
                .set(edge.metrics().tcp_connections.get() + 1);
            connection(stream, source, &edge, &options, shutdown).await;
            edge.metrics()
                .tcp_connections
                .set(edge.metrics().tcp_connections.get().saturating_sub(1));
            drop(permit);
        });
    }
}

async fn connection(
    stream: TcpStream,
    source: std::net::SocketAddr,
    edge: &Arc<Edge>,
    options: &TcpOptions,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
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
        source,
        reliable: true,
        transport: ArrivalTransport::Tcp(sender),
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
                debug!(error = %err, "TCP framing error; closing the connection.");
                edge.metrics().sip_parse_errors.inc();
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    drop(arrival);
    let _ = writer.await;
}
