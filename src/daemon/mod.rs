//! Wires a validated config into running modules: keys, outbox, SIP edge and its transports
//! (UDP, TCP, TLS), the metrics registry, the control socket, the timer loop, the disclosure
//! evidence writer, systemd notification, and an orderly shutdown on SIGTERM/SIGINT.

mod error;
mod loops;
mod ready;
mod status;
mod subject;
mod supervise;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::call::correlate::{self, Correlator};
use crate::call::disclosure::Plan;
use crate::call::suppression::Suppression;
use crate::call::{CallerPolicy, E164, Keyring, Normalizer, Policy, Recorder};
use crate::cdr::complete::Completer;
use crate::cdr::service::Ingestor;
use crate::config::{self, Config, Transport};
use crate::evidence;
use crate::flow::Calls;
use crate::media::announcements::Announcements;
use crate::ops;
use crate::ops::control::Control;
use crate::outbox::{self, Outbox};
use crate::sink::Forwarder;
use crate::sip::edge::{Edge, EdgeSettings};
use crate::sip::tls::Acceptor;
use crate::sip::transaction::{Timers, Transactions};
use crate::sip::uas::{Route, Routing};
use crate::sip::{self, Acl};
use loops::{Housekeeping, prune_keys};
use supervise::{Board, Role, TaskError, infallible, supervise};

pub use error::StartError;

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
        let set = Announcements::load(id, &a.version, &a.file, &a.variants)?;
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
            without_sdp: campaign.without_sdp,
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
            return Err(StartError::UnknownCampaign);
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
            let number = normalizer.normalize(&entry.number)?;
            Ok((number, entry.campaign.clone()))
        })
        .collect()
}

fn number_normalizer(config: &Config) -> Result<Normalizer, StartError> {
    Ok(config.numbers.normalizer()?)
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
    .map_err(StartError::from)
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
        &config.data().privacy(),
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
        &config.data().keys(&config.privacy.key_dir),
        config.privacy.rotation,
    )?;
    Ok(keyring)
}

pub fn open_outbox(config: &Config) -> Result<Outbox, StartError> {
    Ok(Outbox::open(
        config.data().outbox(),
        config.outbox.options(),
    )?)
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
        let calls = Arc::new(Calls::new(
            recorder.clone(),
            outbox.clone(),
            config.media.build(&config.sip.acl.allow)?,
            flow_stats,
        ));
        let edge = Arc::new(Edge::new(
            Transactions::new(timers, config.sip.max_transactions)
                .with_byte_budget(config.sip.max_transaction_bytes),
            routing,
            calls.clone(),
            sip_stats,
            settings,
            config.media.address,
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
        self.edge.set_contact_address(config.media.address);
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

    /// Serves until `shutdown` is cancelled, then stops taking calls, lets the calls in progress
    /// finish while the transports still run, stops them, and makes the outbox durable.
    /// Configs arriving on `reloads` (SIGHUP) are applied to new calls. Every long-running task
    /// is supervised: restarted after an error or a panic, and shown on the board `/ready`, the
    /// watchdog and `status` read.
    pub async fn serve(
        mut self,
        shutdown: CancellationToken,
        mut reloads: tokio::sync::mpsc::Receiver<Config>,
    ) {
        // Before the listeners are handed to their tasks.
        let listeners = self.listeners();
        let board = self.board.clone();
        // Transports, the timer loop and the operator endpoints stop only after the drain, so
        // retransmissions, CANCEL and ACK keep working for the calls that finish meanwhile.
        let stop_transports = CancellationToken::new();
        let mut transports = JoinSet::new();
        let acl = self.acl.clone();
        let reject = self.config.sip.acl.on_deny == config::DenyAction::Reject;
        let max = self.config.sip.max_message_bytes;
        for socket in std::mem::take(&mut self.udp) {
            let (edge, acl, stop) = (self.edge.clone(), acl.clone(), stop_transports.clone());
            transports.spawn(supervise(
                &board,
                "udp listener",
                Role::Critical,
                stop_transports.clone(),
                move || {
                    infallible(sip::udp::serve(
                        socket.clone(),
                        edge.clone(),
                        acl.clone(),
                        reject,
                        max,
                        stop.clone(),
                    ))
                },
            ));
        }
        let options = Arc::new(sip::tcp::TcpOptions {
            max_size: max,
            max_connections: self.config.sip.max_connections,
            idle: Duration::from_secs(self.config.sip.tcp_idle_seconds),
        });
        let streams = std::mem::take(&mut self.tcp)
            .into_iter()
            .map(|l| ("tcp listener", l, None))
            .chain(
                std::mem::take(&mut self.tls)
                    .into_iter()
                    .map(|l| ("tls listener", l, self.acceptor.clone())),
            );
        self.edge.set_dialer(Arc::new(sip::tcp::Dialer {
            edge: Arc::downgrade(&self.edge),
            options: options.clone(),
            shutdown: stop_transports.clone(),
        }));
        for (name, listener, tls) in streams {
            let listener = Arc::new(listener);
            let (edge, acl, options, stop) = (
                self.edge.clone(),
                acl.clone(),
                options.clone(),
                stop_transports.clone(),
            );
            transports.spawn(supervise(
                &board,
                name,
                Role::Critical,
                stop_transports.clone(),
                move || {
                    infallible(sip::tcp::serve(
                        listener.clone(),
                        edge.clone(),
                        acl.clone(),
                        options.clone(),
                        tls.clone(),
                        stop.clone(),
                    ))
                },
            ));
        }
        let edge = self.edge.clone();
        let stop = stop_transports.clone();
        transports.spawn(supervise(
            &board,
            "sip timer loop",
            Role::Critical,
            stop_transports.clone(),
            move || infallible(loops::timer_loop(edge.clone(), stop.clone())),
        ));
        let forwarder_stats = self.forwarder.as_ref().map(Forwarder::stats);
        let ready = Arc::new(ready::Ready {
            board: board.clone(),
            edge: self.edge.clone(),
            outbox: self.outbox.clone(),
            forwarder: forwarder_stats.clone(),
            max_lag_seconds: self.config.ops.ready_max_lag_seconds,
            started: self.started,
        });
        if let Some(listener) = self.http.take() {
            let (registry, ready, stop) = (
                self.registry.clone(),
                ready.clone(),
                stop_transports.clone(),
            );
            transports.spawn(supervise(
                &board,
                "http endpoint",
                Role::Background,
                stop_transports.clone(),
                move || {
                    // Each run serves a duplicate of the one bound socket.
                    let listener = listener.try_clone().and_then(TcpListener::from_std);
                    let (registry, ready, stop) = (registry.clone(), ready.clone(), stop.clone());
                    async move {
                        ops::http::serve(listener?, registry, ready, stop).await?;
                        Ok(())
                    }
                },
            ));
        }
        if let Some(control) = self.control.take() {
            let handler: Arc<dyn ops::control::Handler> = Arc::new(status::Source {
                started: self.started,
                edge: self.edge.clone(),
                outbox: self.outbox.clone(),
                recorder: self.recorder.clone(),
                forwarder: forwarder_stats.clone(),
                board: board.clone(),
                ready: ready.clone(),
                listeners,
                feeds: self.config.cdr.feeds.clone(),
                subjects: self.subjects.clone(),
            });
            let (control, stop) = (Arc::new(control), stop_transports.clone());
            transports.spawn(supervise(
                &board,
                "control socket",
                Role::Background,
                stop_transports.clone(),
                move || infallible(control.clone().serve(handler.clone(), stop.clone())),
            ));
        }
        // Background work stops as soon as shutdown begins.
        let mut background = JoinSet::new();
        let (correlator, stop) = (self.correlator.clone(), shutdown.clone());
        background.spawn(supervise(
            &board,
            "correlation index saver",
            Role::Background,
            shutdown.clone(),
            move || infallible(loops::persist_loop(correlator.clone(), stop.clone())),
        ));
        let (housekeeping, stop) = (Housekeeping::new(&self), shutdown.clone());
        background.spawn(supervise(
            &board,
            "housekeeping",
            Role::Background,
            shutdown.clone(),
            move || infallible(loops::housekeeping_loop(housekeeping.clone(), stop.clone())),
        ));
        if !self.config.cdr.feeds.is_empty() {
            let (ingestor, feeds, stop) = (
                self.ingestor.clone(),
                self.config.cdr.feeds.clone(),
                shutdown.clone(),
            );
            background.spawn(supervise(
                &board,
                "cdr feeds",
                Role::Ready,
                shutdown.clone(),
                move || {
                    infallible(crate::cdr::service::run(
                        ingestor.clone(),
                        feeds.clone(),
                        stop.clone(),
                    ))
                },
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
            tokio::spawn(supervise(
                &board,
                "evidence writer",
                Role::Background,
                stop_evidence.clone(),
                move || {
                    let (outbox, stats, stop, data_dir) = (
                        outbox.clone(),
                        stats.clone(),
                        stop.clone(),
                        data_dir.clone(),
                    );
                    async move {
                        evidence::run(outbox, &data_dir, stats, stop).await;
                        Ok(())
                    }
                },
            ))
        };
        // With Kafka, the forwarder deletes segments once delivered (and old enough); without it,
        // age decides. Either way a segment stays until the evidence writer has read it. The
        // forwarder stops last, after the SIP edge, so every event recorded before shutdown is
        // handed to Kafka (bounded by its flush timeout).
        let stop_forwarder = CancellationToken::new();
        let forwarder = match (self.forwarder.take(), &self.config.kafka) {
            (Some(first), Some(kafka)) => Some(tokio::spawn(supervise(
                &board,
                FORWARDER,
                Role::Ready,
                stop_forwarder.clone(),
                forwarder_runs(
                    first,
                    self.outbox.clone(),
                    kafka.clone(),
                    stop_forwarder.clone(),
                ),
            ))),
            (_, kafka) => {
                if kafka.is_none() {
                    let (outbox, hours, stop) = (
                        self.outbox.clone(),
                        self.config.outbox.retention_hours,
                        shutdown.clone(),
                    );
                    background.spawn(supervise(
                        &board,
                        "outbox retention",
                        Role::Background,
                        shutdown.clone(),
                        move || {
                            infallible(loops::retention_loop(outbox.clone(), hours, stop.clone()))
                        },
                    ));
                }
                None
            }
        };
        let alive = board.clone();
        let watchdog = tokio::spawn(ops::systemd::watchdog(move || alive.critical_running()));
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
                    Err(err) => warn!(error = %ops::Chain(&err), "Config reload refused; the running config stays."),
                },
            }
        }
        ops::systemd::stopping();
        self.edge.stop_taking_calls();
        info!("Shutting down: new calls get 503; calls in progress finish.");
        while background.join_next().await.is_some() {}
        let unfinished = self.edge.drain(Duration::from_secs(15)).await;
        if unfinished > 0 {
            warn!(
                unfinished,
                "Calls still in their announcement at shutdown were not finished."
            );
        }
        stop_transports.cancel();
        while transports.join_next().await.is_some() {}
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
        if let Some(forwarder) = forwarder
            && forwarder.await.is_err()
        {
            warn!("Kafka forwarder task failed.");
        }
        if let Err(err) = self.correlator.persist() {
            warn!(error = %err, "Correlation index not saved.");
        }
        info!("Stopped.");
    }
}

/// The forwarder's runs for `supervise`: the one built at open first, then a new one (same
/// counters, same committed position) after each failure.
fn forwarder_runs(
    first: Forwarder,
    outbox: Outbox,
    kafka: crate::sink::Kafka,
    stop: CancellationToken,
) -> impl FnMut() -> futures::future::BoxFuture<'static, Result<(), TaskError>> + Send + 'static {
    let stats = first.stats();
    let mut first = Some(first);
    move || {
        let forwarder = first.take().map_or_else(
            || {
                Forwarder::with_stats(outbox.clone(), &kafka, stats.clone())
                    .map(|f| f.also_retain_for(evidence::READER))
            },
            Ok,
        );
        let stop = stop.clone();
        Box::pin(async move {
            let report = forwarder?.run(stop).await?;
            info!(
                acked = report.acked,
                backlog = report.backlog,
                flushed = report.flushed,
                "Kafka forwarder stopped."
            );
            Ok(())
        })
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
