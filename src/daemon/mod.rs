//! Wires a validated config into running modules: keys, outbox, SIP edge and its transports
//! (UDP, TCP, TLS), the call flow, the metrics registry, the control socket, the disclosure
//! evidence writer. `build` makes the runtime objects, `listen` binds, `serve` runs the
//! supervised task set until SIGTERM/SIGINT and shuts down in order.

mod build;
mod error;
mod listen;
mod loops;
mod ready;
mod serve;
mod status;
mod subject;
mod supervise;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{info, warn};

use crate::call::Recorder;
use crate::call::correlate::Correlator;
use crate::cdr::service::Ingestor;
use crate::config::Config;
use crate::evidence;
use crate::flow::Calls;
use crate::ops;
use crate::ops::control::Control;
use crate::outbox::{self, Outbox};
use crate::sink::Forwarder;
use crate::sip::Acl;
use crate::sip::edge::{Edge, EdgeSettings};
use crate::sip::tls::Acceptor;
use crate::sip::transaction::{Timers, Transactions};

pub use build::{
    correlator, create_data_dir, ingestor, open_keyring, open_outbox, open_suppression, plans,
    policies, pool_map, recorder, routing,
};
use build::{number_normalizer, tracking_numbers};
pub use error::StartError;
use listen::{bind_all, listen_tcp};
use loops::prune_keys;
use supervise::Board;

/// The Kafka forwarder's task name on the supervision board (`status` looks it up).
const FORWARDER: &str = "kafka forwarder";

/// Everything the daemon opened, ready to serve.
pub struct Daemon {
    edge: Arc<Edge>,
    /// The call flow layer above the edge (media settings reload into it).
    calls: Arc<Calls>,
    outbox: Outbox,
    correlator: Arc<Correlator>,
    ingestor: Arc<Ingestor>,
    recorder: Arc<Recorder>,
    subjects: Arc<subject::Subjects>,
    /// The trunk ACL every listener checks; reloaded in place on SIGHUP.
    acl: Arc<Acl>,
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    tls: Vec<TcpListener>,
    acceptor: Option<Arc<Acceptor>>,
    /// The operator endpoint's socket, duplicated for each (re)start of its server.
    http: Option<std::net::TcpListener>,
    control: Option<Control>,
    /// Which supervised task runs; shared with `/ready`, the watchdog and `status`.
    board: Arc<Board>,
    /// Built (and its counters registered) at open; runs in `serve`.
    forwarder: Option<Forwarder>,
    evidence: Arc<evidence::Stats>,
    registry: Arc<Registry>,
    started: std::time::Instant,
    config: Config,
}

impl Daemon {
    /// Opens state and binds every listener; nothing is served yet.
    pub async fn open(config: Config) -> Result<Self, StartError> {
        create_data_dir(&config.data_dir)?;
        let mut registry = ops::metrics::registry();
        let sip_stats = Arc::new(crate::sip::stats::Stats::register(&mut registry));
        let flow_stats = Arc::new(crate::flow::Stats::register(&mut registry));
        let keyring = open_keyring(&config)?;
        prune_keys(&keyring, config.privacy.keep_keys, &flow_stats.key_failures);
        let outbox = open_outbox(&config)?;
        let routing = routing(&config)?;
        let correlator = correlator(&config);
        outbox::Stats::register(&outbox, &mut registry);
        let recorder = Arc::new(recorder(keyring, &config)?.with_correlator(correlator.clone()));
        let ingestor = Arc::new(ingestor(&config, recorder.clone(), outbox.clone())?);
        ingestor.counts.register(&mut registry);
        let evidence = Arc::new(evidence::Stats::default());
        evidence.register(&mut registry);
        let forwarder = match &config.kafka {
            Some(kafka) => match Forwarder::new(outbox.clone(), kafka) {
                Ok(forwarder) => {
                    // Delivered segments stay until the evidence writer has read them too.
                    let forwarder = forwarder.also_retain_for(evidence::READER);
                    forwarder.stats().register(&mut registry);
                    Some(forwarder)
                }
                Err(err) => {
                    warn!(error = %ops::Chain(&err), "Kafka forwarder not started; events stay in the outbox.");
                    None
                }
            },
            None => None,
        };
        let timers = Timers::from(config.sip.timers);
        let settings = EdgeSettings {
            server_header: config.sip.server_header.clone(),
            advertise_host: config.sip.advertise_host.clone(),
            reliable_provisional: config.sip.reliable_provisional,
            t1: timers.t1,
            progress_refresh: config.media.refresh(),
            limits: config.sip.limits.clone(),
        };
        let media = config.media.build(&config.sip.acl.allow)?;
        // The Contact's fallback host is the media address: one lock, one reload.
        let contact_address = media.address.clone();
        let calls = Arc::new(Calls::new(
            recorder.clone(),
            outbox.clone(),
            media,
            flow_stats,
        ));
        let edge = Arc::new(Edge::new(
            Transactions::new(timers, config.sip.max_transactions)
                .with_byte_budget(config.sip.max_transaction_bytes),
            routing,
            calls.clone(),
            sip_stats,
            settings,
            contact_address,
        ));
        let (udp, tcp) = bind_all(&config).await?;
        let (tls, acceptor) = match &config.sip.tls {
            Some(settings) => {
                let acceptor = Arc::new(Acceptor::new(settings)?);
                let mut listeners = Vec::new();
                for &addr in &settings.listen {
                    listeners.push(listen_tcp(addr, "tls").await?);
                }
                (listeners, Some(acceptor))
            }
            None => (Vec::new(), None),
        };
        let http =
            match config.ops.metrics_listen {
                Some(addr) => Some(listen_tcp(addr, "http").await?.into_std().map_err(
                    |source| StartError::Bind {
                        addr,
                        transport: "http",
                        source,
                    },
                )?),
                None => None,
            };
        let board = Arc::new(Board::default());
        board.register(&mut registry);
        let control = Some(Control::bind(
            &config.state_path(&config.ops.control_socket),
        )?);
        let subjects = Arc::new(subject::Subjects {
            recorder: recorder.clone(),
            outbox: outbox.clone(),
            normalizer: number_normalizer(&config)?,
            tracking: std::sync::RwLock::new(tracking_numbers(&config)?),
        });
        Ok(Self {
            edge,
            calls,
            outbox,
            correlator,
            ingestor,
            recorder,
            subjects,
            acl: Arc::new(Acl::new(config.sip.acl.allow.clone())),
            udp,
            tcp,
            tls,
            acceptor,
            http,
            control,
            board,
            forwarder,
            evidence,
            registry: Arc::new(registry),
            started: std::time::Instant::now(),
            config,
        })
    }

    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.tls
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub fn control_path(&self) -> Option<&Path> {
        self.control.as_ref().map(Control::path)
    }

    fn listeners(&self) -> Vec<ops::status::Listener> {
        let listener = |transport: &str, addr: SocketAddr| ops::status::Listener {
            transport: transport.to_owned(),
            address: addr.to_string(),
        };
        let mut out: Vec<_> = self
            .udp_addrs()
            .into_iter()
            .map(|a| listener("udp", a))
            .collect();
        out.extend(self.tcp_addrs().into_iter().map(|a| listener("tcp", a)));
        out.extend(self.tls_addrs().into_iter().map(|a| listener("tls", a)));
        out.extend(self.metrics_addr().map(|a| listener("http", a)));
        out
    }

    /// Applies a reloaded config's number pool, campaigns (destinations, disclosure plans,
    /// announcements, minimization) and media address to new calls, the trunk ACL to every
    /// packet from now on, the log level, and its TLS certificates to new connections. Other
    /// sections need a restart.
    fn reload(&self, config: &Config) -> Result<(), StartError> {
        let routing = routing(config)?;
        let pool = pool_map(config)?;
        if let (Some(acceptor), Some(settings)) = (&self.acceptor, &config.sip.tls) {
            acceptor.reload(settings)?;
        }
        self.edge.set_routing(routing);
        // Calls in flight keep their media address; packets from now on meet the new ACL.
        self.acl.replace(config.sip.acl.allow.clone());
        self.calls.set_media_address(config.media.address);
        self.calls
            .set_media_networks(config.media.allowed_networks(&config.sip.acl.allow));
        if !crate::ops::telemetry::set_level(&config.log.level) {
            info!("Log level not reloaded (RUST_LOG is set, or the level does not parse).");
        }
        self.recorder.set_policies(policies(config));
        self.ingestor.completer().set_pool(pool);
        *self
            .subjects
            .tracking
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tracking_numbers(config)?;
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
