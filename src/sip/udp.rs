//! The UDP transport shell (RFC 3261 §18): one socket per listen address, datagrams checked
//! against the ACL, framed (octets after Content-Length ignored, §18.3) and handed to the edge.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::sip::Acl;
use crate::sip::edge::{Arrival, ArrivalTransport, Edge};
use crate::sip::{FramingError, frame_datagram};

pub async fn serve(
    socket: Arc<UdpSocket>,
    edge: Arc<Edge>,
    acl: Arc<Acl>,
    reject_denied: bool,
    max_size: usize,
    shutdown: CancellationToken,
) {
    // One byte more than the limit tells an oversize datagram from one exactly at it.
    let mut buf = vec![0u8; max_size + 1];
    let Ok(local) = socket.local_addr() else {
        return;
    };
    loop {
        let (len, source) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                // ICMP port-unreachable from an earlier send surfaces here on some kernels.
                Err(_) => continue,
            },
        };
        let datagram = &buf[..len];
        let arrival = Arrival {
            source,
            local,
            transport: ArrivalTransport::Udp(socket.clone()),
        };
        if !acl.allows(source.ip()) {
            edge.on_denied(datagram, &arrival, reject_denied).await;
            continue;
        }
        if !edge.admit(source.ip(), true) {
            continue;
        }
        match frame_datagram(datagram, max_size) {
            Ok(frame) => edge.on_frame(frame, &arrival).await,
            Err(FramingError::Keepalive) => {}
            Err(err) => {
                debug!(error = %err, "Datagram could not be framed.");
                edge.on_framing_error(err, &arrival).await;
            }
        }
    }
}
