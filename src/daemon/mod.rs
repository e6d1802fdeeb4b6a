//! Wires a validated config into running modules: keys, outbox, SIP edge and its transports
//! (UDP, TCP, TLS), the metrics registry, the control socket, the timer loop, the disclosure
//! evidence writer, systemd notification, and an orderly shutdown on SIGTERM/SIGINT.

mod status;
mod subject;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::call::correlate::{self, Correlator};
use crate::call::disclosure::{Plan, WithoutSdp};
use crate::call::suppression::Suppression;
use crate::call::{CallerPolicy, E164, Keyring, Normalizer, Policy, Recorder};
use crate::cdr::complete::Completer;
use crate::cdr::service::Ingestor;
use crate::config::{self, Config, Transport};
use crate::evidence;
use crate::media::PortPool;
use crate::media::announcements::Announcements;
use crate::ops::control::Control;
use crate::ops::{self, Metrics};
use crate::outbox::{self, Outbox};
use crate::sink::Forwarder;
use crate::sip::edge::{Edge, EdgeSettings, MediaSettings};
use crate::sip::tls::{Acceptor, TlsError};
use crate::sip::transaction::{Timers, Transactions};
use crate::sip::uas::{Route, Routing};
use crate::sip::{self, Acl};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("pseudonym keys: {0}")]
    Keys(#[from] crate::call::KeyError),
    #[error(transparent)]
    Suppression(#[from] crate::call::suppression::SuppressionError),
    #[error("outbox: {0}")]
    Outbox(#[from] outbox::Error),
    #[error("numbers: {0}")]
    Numbers(String),
    #[error("{0}")]
    Announcement(String),
    #[error("media: {0}")]
    Media(String),
    #[error("{0}")]
    Cdr(String),
    #[error("cannot listen on {addr} ({transport}): {source}")]
    Bind {
        addr: SocketAddr,
        transport: &'static str,
        source: std::io::Error,
    },
    #[error("sip.tls.{0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Control(#[from] ops::control::ControlError),
}

/// Everything the daemon opened, ready to serve.
pub struct Daemon {
    edge: Arc<Edge>,
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
    http: Option<TcpListener>,
    control: Option<Control>,
    /// Built (and its counters registered) at open; runs in `serve`.
    forwarder: Option<Forwarder>,
    evidence: Arc<evidence::Stats>,
    registry: Arc<Registry>,
    started: std::time::Instant,
    config: Config,
}

pub fn create_data_dir(path: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(path)
        .map_err(|source| StartError::DataDir {
            path: path.display().to_string(),
            source,
        })
}

/// Each campaign's disclosure plan, with its announcements loaded and encoded.
pub fn plans(config: &Config) -> Result<HashMap<String, Arc<Plan>>, StartError> {
    let mut loaded: HashMap<&str, Arc<Announcements>> = HashMap::new();
    for (id, a) in &config.announcements {
        let set = Announcements::load(id, &a.version, &a.file, &a.variants)
            .map_err(|e| StartError::Announcement(e.to_string()))?;
        loaded.insert(id, Arc::new(set));
    }
    let mut plans = HashMap::new();
    for (id, campaign) in &config.campaigns {
        let plan = Plan {
            hook: campaign.hook(),
            announcement_id: campaign.announcement.clone(),
            announcements: campaign
                .announcement
                .as_deref()
                .and_then(|a| loaded.get(a).cloned()),
            external_uri: campaign.external_uri.clone(),
            without_sdp: match campaign.without_sdp {
                config::WithoutSdp::Skip => WithoutSdp::Skip,
                config::WithoutSdp::Reject => WithoutSdp::Reject,
            },
            objection_digit: campaign.objection_digit,
            informed_after: campaign
                .announcement
                .as_deref()
                .and_then(|a| config.announcements.get(a)?.informed_after_seconds)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .map(crate::call::Seconds::from_duration),
        };
        plans.insert(id.clone(), Arc::new(plan));
    }
    Ok(plans)
}

/// The resolved number pool.
pub fn routing(config: &Config) -> Result<Routing, StartError> {
    let plans = plans(config)?;
    let mut routes = Vec::new();
    for (number, campaign_id) in resolved_pool(config)? {
        let Some(campaign) = config.campaigns.get(&campaign_id) else {
            return Err(StartError::Numbers(
                "pool entry names an unknown campaign".into(),
            ));
        };
        routes.push(Route {
            destination: campaign.destination.clone(),
            tracking_number: number,
            plan: plans
                .get(&campaign_id)
                .cloned()
                .unwrap_or_else(|| Arc::new(Plan::none())),
            campaign_id,
        });
    }
    Ok(Routing::new(number_normalizer(config)?, routes))
}

/// Tracking number (E.164) → campaign, for CDR rows.
pub fn pool_map(config: &Config) -> Result<HashMap<String, String>, StartError> {
    Ok(resolved_pool(config)?
        .into_iter()
        .map(|(number, campaign)| (number.as_str().to_owned(), campaign))
        .collect())
}

/// The pool's numbers in E.164.
fn tracking_numbers(config: &Config) -> Result<Vec<E164>, StartError> {
    Ok(resolved_pool(config)?.into_iter().map(|(n, _)| n).collect())
}

/// The pool's numbers in E.164, each with its campaign id: the one place pool entries are read.
fn resolved_pool(config: &Config) -> Result<Vec<(E164, String)>, StartError> {
    let normalizer = number_normalizer(config)?;
    config
        .numbers
        .pool
        .iter()
        .map(|entry| {
            let number = normalizer
                .normalize(&entry.number)
                .map_err(|e| StartError::Numbers(e.to_string()))?;
            Ok((number, entry.campaign.clone()))
        })
        .collect()
}

fn number_normalizer(config: &Config) -> Result<Normalizer, StartError> {
    config
        .numbers
        .normalizer()
        .map_err(|e| StartError::Numbers(e.to_string()))
}

/// The SIP calls CDR rows can join, kept under the data directory.
pub fn correlator(config: &Config) -> Arc<Correlator> {
    let limits = correlate::Limits {
        capacity: config.cdr.correlation_capacity,
        max_age: chrono::TimeDelta::hours(
            i64::try_from(config.cdr.correlation_hours).unwrap_or(48),
        ),
    };
    Arc::new(Correlator::open(
        &config.data_dir,
        limits,
        chrono::Utc::now(),
    ))
}

/// The CDR ingest state and pipeline, shared by the daemon's feeds and `cdr import`.
pub fn ingestor(
    config: &Config,
    recorder: Arc<Recorder>,
    outbox: Outbox,
) -> Result<Ingestor, StartError> {
    let normalizer = number_normalizer(config)?;
    let tolerance = chrono::TimeDelta::seconds(
        i64::try_from(config.cdr.correlation_tolerance_seconds).unwrap_or(120),
    );
    let completer = Completer::new(recorder, normalizer, pool_map(config)?, tolerance);
    let window =
        chrono::TimeDelta::days(i64::try_from(config.cdr.duplicate_window_days).unwrap_or(14));
    Ingestor::open(
        &config.data_dir,
        window,
        completer,
        outbox,
        config.cdr.all_formats(),
        &config.cdr.feeds,
    )
    .map(|ingestor| ingestor.with_limits(config.cdr.limits()))
    .map_err(|e| StartError::Cdr(e.to_string()))
}

/// The call recorder with each campaign's minimization policy and the suppression list.
pub fn recorder(keyring: Keyring, config: &Config) -> Result<Recorder, StartError> {
    let normalizer = number_normalizer(config)?;
    let default = Policy {
        caller: CallerPolicy::default(),
        region_digits: Some(config.privacy.region_digits),
    };
    let suppression = open_suppression(config)?;
    Ok(
        Recorder::new(keyring, normalizer, policies(config), default)
            .with_suppression(Arc::new(suppression))
            .with_time_precision(config.privacy.time_precision),
    )
}

/// `<data_dir>/privacy/`: the suppression list and its standing key.
pub fn open_suppression(config: &Config) -> Result<Suppression, StartError> {
    let retention = chrono::TimeDelta::days(i64::from(config.privacy.suppression_retention_days));
    Ok(Suppression::open(
        &config.data_dir.join("privacy"),
        retention,
        chrono::Utc::now(),
    )?)
}

/// Each campaign's minimization policy.
pub fn policies(config: &Config) -> HashMap<String, Policy> {
    let region_digits = Some(config.privacy.region_digits);
    config
        .campaigns
        .iter()
        .map(|(id, c)| {
            (
                id.clone(),
                Policy {
                    caller: c.caller,
                    region_digits,
                },
            )
        })
        .collect()
}

pub fn open_keyring(config: &Config) -> Result<Keyring, StartError> {
    let keyring = Keyring::open(
        &config.state_path(&config.privacy.key_dir),
        config.privacy.rotation,
    )?;
    Ok(keyring)
}

pub fn open_outbox(config: &Config) -> Result<Outbox, StartError> {
    let c = &config.outbox;
    let options = outbox::Options {
        segment_bytes: c.segment_bytes,
        max_bytes: c.max_bytes,
        sync_interval: Duration::from_millis(c.sync_interval_ms),
        durability: match c.durability {
            config::Durability::Interval => outbox::Durability::Interval,
            config::Durability::Sync => outbox::Durability::Sync,
        },
    };
    Ok(Outbox::open(config.data_dir.join("outbox"), options)?)
}

impl Daemon {
    /// Opens state and binds every listener; nothing is served yet.
    pub async fn open(config: Config) -> Result<Self, StartError> {
        create_data_dir(&config.data_dir)?;
        let mut registry = ops::metrics::registry();
        let metrics = Arc::new(Metrics::register(&mut registry));
        let keyring = open_keyring(&config)?;
        prune_keys(&keyring, config.privacy.keep_keys, &metrics);
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
                    warn!(error = %err, "Kafka forwarder not started; events stay in the outbox.");
                    None
                }
            },
            None => None,
        };
        let timers = Timers {
            t1: Duration::from_millis(config.sip.timers.t1_ms),
            t2: Duration::from_millis(config.sip.timers.t2_ms),
            t4: Duration::from_millis(config.sip.timers.t4_ms),
        };
        let settings = EdgeSettings {
            server_header: config.sip.server_header.clone(),
            advertise_host: config.sip.advertise_host.clone(),
            reliable_provisional: config.sip.reliable_provisional,
            t1: timers.t1,
        };
        let edge = Arc::new(Edge::new(
            Transactions::new(timers, config.sip.max_transactions),
            routing,
            recorder.clone(),
            outbox.clone(),
            metrics,
            settings,
            MediaSettings {
                address: std::sync::RwLock::new(config.media.address),
                ports: PortPool::new(config.media.port_min..=config.media.port_max)
                    .map_err(|e| StartError::Media(e.to_string()))?,
                refresh: Duration::from_secs(config.media.refresh_seconds),
                linger: Duration::from_millis(config.media.port_linger_ms),
            },
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
        let http = match config.ops.metrics_listen {
            Some(addr) => Some(listen_tcp(addr, "http").await?),
            None => None,
        };
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
        self.edge.set_media_address(config.media.address);
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

    /// Serves until `shutdown` is cancelled, then stops taking calls and makes the outbox durable.
    /// Configs arriving on `reloads` (SIGHUP) are applied to new calls.
    pub async fn serve(
        mut self,
        shutdown: CancellationToken,
        mut reloads: tokio::sync::mpsc::Receiver<Config>,
    ) {
        // Before the listeners are handed to their tasks.
        let listeners = self.listeners();
        let mut tasks = JoinSet::new();
        let acl = self.acl.clone();
        let reject = self.config.sip.acl.on_deny == config::DenyAction::Reject;
        let max = self.config.sip.max_message_bytes;
        for socket in std::mem::take(&mut self.udp) {
            tasks.spawn(sip::udp::serve(
                socket,
                self.edge.clone(),
                acl.clone(),
                reject,
                max,
                shutdown.clone(),
            ));
        }
        let options = Arc::new(sip::tcp::TcpOptions {
            max_size: max,
            max_connections: self.config.sip.max_connections,
            idle: Duration::from_secs(self.config.sip.tcp_idle_seconds),
        });
        let streams = std::mem::take(&mut self.tcp)
            .into_iter()
            .map(|l| (l, None))
            .chain(
                std::mem::take(&mut self.tls)
                    .into_iter()
                    .map(|l| (l, self.acceptor.clone())),
            );
        self.edge.set_dialer(Arc::new(sip::tcp::Dialer {
            edge: Arc::downgrade(&self.edge),
            options: options.clone(),
            shutdown: shutdown.clone(),
        }));
        for (listener, tls) in streams {
            tasks.spawn(sip::tcp::serve(
                listener,
                self.edge.clone(),
                acl.clone(),
                options.clone(),
                tls,
                shutdown.clone(),
            ));
        }
        tasks.spawn(timer_loop(self.edge.clone(), shutdown.clone()));
        if let Some(listener) = self.http.take() {
            let registry = self.registry.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                if let Err(err) = ops::http::serve(listener, registry, stop).await {
                    warn!(error = %err, "Metrics endpoint stopped.");
                }
            });
        }
        let forwarder_running = Arc::new(AtomicBool::new(false));
        let forwarder_stats = self.forwarder.as_ref().map(Forwarder::stats);
        if let Some(control) = self.control.take() {
            let handler = Arc::new(status::Source {
                started: self.started,
                edge: self.edge.clone(),
                outbox: self.outbox.clone(),
                recorder: self.recorder.clone(),
                forwarder: forwarder_stats.map(|stats| (stats, forwarder_running.clone())),
                listeners,
                feeds: self.config.cdr.feeds.clone(),
                subjects: self.subjects.clone(),
            });
            tasks.spawn(control.serve(handler, shutdown.clone()));
        }
        tasks.spawn(persist_loop(self.correlator.clone(), shutdown.clone()));
        tasks.spawn(housekeeping_loop(
            Housekeeping::new(&self),
            shutdown.clone(),
        ));
        if !self.config.cdr.feeds.is_empty() {
            tasks.spawn(crate::cdr::service::run(
                self.ingestor.clone(),
                self.config.cdr.feeds.clone(),
                shutdown.clone(),
            ));
        }
        // Like the forwarder, the evidence writer stops after the SIP edge, so the last calls'
        // disclosures get their lines.
        let stop_evidence = CancellationToken::new();
        let evidence_task = {
            let (outbox, stats, stop) = (
                self.outbox.clone(),
                self.evidence.clone(),
                stop_evidence.clone(),
            );
            let data_dir = self.config.data_dir.clone();
            tokio::spawn(async move { evidence::run(outbox, &data_dir, stats, stop).await })
        };
        // With Kafka, the forwarder deletes segments once delivered (and old enough); without it,
        // age decides. Either way a segment stays until the evidence writer has read it. The
        // forwarder stops last, after the SIP edge, so every event recorded before shutdown is
        // handed to Kafka (bounded by its flush timeout).
        let stop_forwarder = CancellationToken::new();
        let forwarder = match self.forwarder.take() {
            Some(forwarder) => {
                let running = forwarder_running.clone();
                let stop = stop_forwarder.clone();
                running.store(true, Ordering::Relaxed);
                Some(tokio::spawn(async move {
                    let result = forwarder.run(stop).await;
                    running.store(false, Ordering::Relaxed);
                    result
                }))
            }
            None => {
                if self.config.kafka.is_none() {
                    tasks.spawn(retention_loop(
                        self.outbox.clone(),
                        self.config.outbox.retention_hours,
                        shutdown.clone(),
                    ));
                }
                None
            }
        };
        let watchdog = tokio::spawn(ops::systemd::watchdog());
        ops::systemd::ready();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(config) = reloads.recv() => match self.reload(&config) {
                    Ok(()) => info!(
                        campaigns = config.campaigns.len(),
                        numbers = config.numbers.pool.len(),
                        "Config reloaded: numbers, campaigns, announcements, trunk ACL, media address and log level apply from now on; other sections need a restart."
                    ),
                    Err(err) => warn!(error = %err, "Config reload refused; the running config stays."),
                },
            }
        }
        ops::systemd::stopping();
        info!("Shutting down: no new calls.");
        while tasks.join_next().await.is_some() {}
        let unfinished = self.edge.drain(Duration::from_secs(15)).await;
        if unfinished > 0 {
            warn!(
                unfinished,
                "Calls still in their announcement at shutdown were not finished."
            );
        }
        watchdog.abort();
        if let Err(err) = self.outbox.flush().await {
            warn!(error = %err, "Final outbox sync failed.");
        }
        stop_evidence.cancel();
        // One round of file work; the bound only guards against a hung disk.
        match tokio::time::timeout(Duration::from_secs(10), evidence_task).await {
            Ok(Ok(())) => info!(lines = self.evidence.lines(), "Evidence writer stopped."),
            Ok(Err(_)) => warn!("Evidence writer task failed."),
            Err(_) => warn!("Evidence writer did not stop within 10 s."),
        }
        stop_forwarder.cancel();
        if let Some(forwarder) = forwarder {
            match forwarder.await {
                Ok(Ok(report)) => info!(
                    acked = report.acked,
                    backlog = report.backlog,
                    flushed = report.flushed,
                    "Kafka forwarder stopped."
                ),
                Ok(Err(err)) => warn!(error = %err, "Kafka forwarder failed."),
                Err(_) => warn!("Kafka forwarder task failed."),
            }
        }
        if let Err(err) = self.correlator.persist() {
            warn!(error = %err, "Correlation index not saved.");
        }
        info!("Stopped.");
    }
}

async fn listen_tcp(addr: SocketAddr, transport: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr,
            transport,
            source,
        })
}

async fn bind_all(config: &Config) -> Result<(Vec<Arc<UdpSocket>>, Vec<TcpListener>), StartError> {
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

async fn timer_loop(edge: Arc<Edge>, shutdown: CancellationToken) {
    // Timer G's smallest step is T1 (500 ms); a 10 ms tick keeps retransmissions within 2% of it.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            now = tick.tick() => { edge.tick(now).await; }
        }
    }
}

/// Saves the correlation index every minute, so a crash loses at most a minute of joins.
async fn persist_loop(correlator: Arc<Correlator>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let c = correlator.clone();
                if let Ok(Err(err)) = tokio::task::spawn_blocking(move || c.persist()).await {
                    warn!(error = %err, "Correlation index not saved.");
                }
            }
        }
    }
}

/// Shreds pseudonym keys beyond `keep`, at start-up and hourly; a failure is logged and counted.
fn prune_keys(keyring: &Keyring, keep: usize, metrics: &Metrics) {
    match keyring.prune(keep) {
        Ok(shredded) if !shredded.is_empty() => {
            info!(
                shredded = shredded.len(),
                "Expired pseudonym keys shredded."
            );
        }
        Ok(_) => {}
        Err(err) => {
            metrics.key_failures.inc();
            warn!(error = %err, "Expired pseudonym keys could not be shredded.");
        }
    }
}

/// What the hourly storage-limitation round touches.
#[derive(Clone)]
struct Housekeeping {
    metrics: Metrics,
    recorder: Arc<Recorder>,
    ingestor: Arc<Ingestor>,
    keep_keys: usize,
    quarantine_days: u64,
    evidence: evidence::Layout,
    evidence_days: u32,
}

impl Housekeeping {
    fn new(daemon: &Daemon) -> Self {
        let c = &daemon.config;
        Self {
            metrics: daemon.edge.metrics().clone(),
            recorder: daemon.recorder.clone(),
            ingestor: daemon.ingestor.clone(),
            keep_keys: c.privacy.keep_keys,
            quarantine_days: c.cdr.quarantine_days,
            evidence: evidence::Layout::new(&c.data_dir),
            evidence_days: c.privacy.evidence_retention_days,
        }
    }

    /// One round; blocking (directory listings, small files, fsyncs).
    fn round(&self) {
        prune_keys(self.recorder.keyring(), self.keep_keys, &self.metrics);
        // Raw files first: a kept spool file goes only while its checkpoint lasts.
        self.ingestor.purge_raw();
        self.ingestor.purge(self.quarantine_days);
        let now = chrono::Utc::now();
        let purged = self.recorder.suppression().map(|list| list.purge(now));
        if let Some(Err(err)) = purged {
            warn!(error = %err, "Expired suppression entries could not be purged.");
        }
        let keep_from = now.date_naive() - chrono::Days::new(u64::from(self.evidence_days));
        if let Err(err) = self.evidence.purge(keep_from) {
            warn!(error = %err, "Expired disclosure evidence could not be deleted.");
        }
    }
}

/// Storage limitation on a schedule: pseudonym keys beyond `keep_keys` are shredded; raw CDR
/// files, CDR quarantine rows, suppression entries and evidence days past their retention
/// purged; at start and hourly (cheap: a directory listing or a small file each).
async fn housekeeping_loop(housekeeping: Housekeeping, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let round = housekeeping.clone();
                let _ = tokio::task::spawn_blocking(move || round.round()).await;
            }
        }
    }
}

/// Outbox-only mode: segments last written more than `hours` ago go, once the evidence writer
/// has read them.
async fn retention_loop(outbox: Outbox, hours: u64, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let outbox = outbox.clone();
                let retention = outbox::Retention {
                    min_age: Duration::from_secs(hours * 3600),
                    require_readers: &[evidence::READER],
                };
                match tokio::task::spawn_blocking(move || outbox.apply_retention(&retention)).await {
                    Ok(Ok(freed)) if freed > 0 => info!(freed_bytes = freed, "Outbox retention applied."),
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => warn!(error = %err, "Outbox retention failed."),
                    Err(_) => warn!("Outbox retention task failed."),
                }
            }
        }
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
