//! Binding the SIP and HTTP listeners a config names.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};

use super::StartError;
use crate::config::{Config, Transport};

pub(super) async fn listen_tcp(
    addr: SocketAddr,
    transport: &'static str,
) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr,
            transport,
            source,
        })
}

pub(super) async fn bind_all(
    config: &Config,
) -> Result<(Vec<Arc<UdpSocket>>, Vec<TcpListener>), StartError> {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    let wants = |t| config.sip.transports.contains(&t);
    for &addr in &config.sip.listen {
        // With port 0, UDP picks the port and TCP follows it, so both share one port as carriers
        // expect; a clash is retried with a fresh port.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let u = if wants(Transport::Udp) {
                Some(
                    UdpSocket::bind(addr)
                        .await
                        .map_err(|source| StartError::Bind {
                            addr,
                            transport: "udp",
                            source,
                        })?,
                )
            } else {
                None
            };
            let port = u
                .as_ref()
                .and_then(|s| s.local_addr().ok())
                .map_or(addr.port(), |a| a.port());
            let t = if wants(Transport::Tcp) {
                match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
                    Ok(l) => Some(l),
                    Err(_) if addr.port() == 0 && attempt < 20 => continue,
                    Err(source) => {
                        return Err(StartError::Bind {
                            addr,
                            transport: "tcp",
                            source,
                        });
                    }
                }
            } else {
                None
            };
            if let Some(socket) = &u {
                // Bursts of INVITEs (a carrier failing over to us) must not overflow the default
                // ~200 KiB buffer; the kernel caps this at net.core.rmem_max.
                let _ = socket2::SockRef::from(socket).set_recv_buffer_size(4 * 1024 * 1024);
            }
            udp.extend(u.map(Arc::new));
            tcp.extend(t);
            break;
        }
    }
    Ok((udp, tcp))
}
