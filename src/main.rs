//! The calltrackd command line: the daemon and its operator tools. `anyhow` lives only here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::info;

use calltrackd::config;
use calltrackd::daemon::{self, Daemon};

/// SIP trunk edge that turns tracking-number calls into privacy-minimized call events.
#[derive(Debug, Parser)]
#[command(name = "calltrackd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// Path of the config file.
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
    },
    /// Validate a config file; exits non-zero naming the key and line of each problem.
    CheckConfig {
        /// Path of the config file.
        file: PathBuf,
    },
    /// Read the local outbox.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Manage pseudonym keys (rotation and crypto-shredding).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Data-subject requests (GDPR Art. 15–21) for one phone number, read from standard input
    /// so it never lands in the shell history or the process list.
    Subject {
        #[command(subcommand)]
        command: SubjectCommand,
    },
    /// Carrier CDR files.
    Cdr {
        #[command(subcommand)]
        command: CdrCommand,
    },
    /// Disclosure evidence: check a day's signed hash chain, print the public key.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// Show a running daemon's listeners, calls in flight, outbox, Kafka forwarder, CDR feeds
    /// and current key, through its control socket.
    Status {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
        /// Print the JSON the daemon sent.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SubjectCommand {
    /// Print the outbox events whose caller pseudonym belongs to NUMBER (GDPR Art. 15), under
    /// every key still held. The number is read from standard input, so it never lands in the
    /// shell history or the process list.
    Find {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
    },
    /// Art. 17: blank the number's pseudonym and region in every local event, drop it from the
    /// correlation index and the suppression list, and emit `subject.erasure_requested` for
    /// downstream. Needs the running daemon.
    Erase {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
    },
    /// Art. 21: put the number on the suppression list (later calls are tracked without
    /// identifier and not asked again) and emit `subject.objection_recorded`.
    Object {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
    },
    /// Art. 18: mark the number's events `restricted: true` until `unrestrict`.
    Restrict {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
    },
    /// Lift a restriction.
    Unrestrict {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
    },
    /// Art. 15/20: write the local events about the number, with field descriptions, as one
    /// JSON file (mode 0600).
    Export {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
        /// Where to write the file; it must not exist yet.
        #[arg(long, short)]
        output: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum CdrCommand {
    /// Ingest one CDR file once, through the same path as a feed (stop the daemon first: the
    /// outbox has one writer). The file then moves into <data_dir>/cdr/raw/import/ and is
    /// deleted after 72 hours, like a feed's; raw files past their retention are purged.
    Import {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
        /// The CDR file (plain or .gz).
        file: PathBuf,
        /// A [cdr.formats] name or a built-in preset.
        #[arg(long)]
        format: String,
        /// Leave the file where it is (its retention is then yours).
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Print events from the outbox as JSON lines.
    Tail {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
        /// Start at this position (default: the last 10 events).
        #[arg(long)]
        from: Option<u64>,
        /// Keep printing new events as they arrive.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EvidenceCommand {
    /// Recompute a day's hash chain and check its seal; prints one verdict line and exits 0
    /// only when everything verifies. Reads only: safe beside the running daemon.
    Verify {
        /// The UTC day, YYYY-MM-DD.
        day: String,
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
        /// The public key to check the seal with (hex, as `evidence public-key` prints it);
        /// default: the data directory's `evidence/signing.pub`.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Print the hex Ed25519 public key that verifies the seals, for the auditor's copy.
    PublicKey {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List pseudonym keys, oldest first.
    List {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
    },
    /// Destroy a key: every pseudonym made with it becomes unlinkable for good.
    Shred {
        #[arg(long, short, default_value = "/etc/calltrackd/calltrackd.toml")]
        config: PathBuf,
        /// The key id, e.g. 2026-10.
        key_id: String,
        /// Allow shredding the current epoch's key (a new one is made on next use).
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("calltrackd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => run(&config),
        Command::CheckConfig { file } => Ok(check_config(&file)),
        Command::Events {
            command:
                EventsCommand::Tail {
                    config,
                    from,
                    follow,
                },
        } => {
            let config = config::load(&config)?;
            let dir = config.data().outbox();
            // Reads only: a data directory without an outbox yet has no events to show.
            calltrackd::outbox::tail::print(&dir, from, follow, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command } => keys(command),
        Command::Subject { command } => subject(command),
        Command::Cdr {
            command:
                CdrCommand::Import {
                    config,
                    file,
                    format,
                    keep,
                },
        } => cdr_import(&config, &file, &format, keep),
        Command::Status { config, json } => status(&config, json),
        Command::Evidence { command } => evidence(command),
    }
}

fn evidence(command: EvidenceCommand) -> anyhow::Result<ExitCode> {
    use calltrackd::evidence::{self, Layout};
    match command {
        EvidenceCommand::Verify {
            day,
            config,
            public_key,
        } => {
            let Some(date) = evidence::parse_day(&day) else {
                anyhow::bail!("DAY must be a date written YYYY-MM-DD");
            };
            let config = config::load(&config)?;
            let layout = Layout::new(&config.data_dir);
            let key =
                evidence::read_public_key(&public_key.unwrap_or_else(|| layout.public_key()))?;
            let verdict = evidence::verify_day(&layout, date, &key)?;
            println!("{day}: {verdict}");
            Ok(if verdict.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        EvidenceCommand::PublicKey { config } => {
            let config = config::load(&config)?;
            let path = Layout::new(&config.data_dir).public_key();
            let key = evidence::read_public_key(&path)
                .context("the daemon writes it on its first start")?;
            println!("{}", hex::encode(key.as_bytes()));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn status(config: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    use calltrackd::ops::control::{self, Request, Response};
    let config = config::load(config)?;
    let path = config.state_path(&config.ops.control_socket);
    let Response::Status(status) = control::request(&path, &Request::Status)
        .with_context(|| "is the daemon running, and are you its user (or root)?")?
    else {
        anyhow::bail!("the daemon answered something other than a status");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{status}");
    }
    Ok(ExitCode::SUCCESS)
}

fn subject(command: SubjectCommand) -> anyhow::Result<ExitCode> {
    use calltrackd::ops::control::SubjectRequest;
    let (config, request, output) = match command {
        SubjectCommand::Find { config } => return subject_find(&config),
        SubjectCommand::Erase { config } => (config, SubjectRequest::Erase, None),
        SubjectCommand::Object { config } => (config, SubjectRequest::Object, None),
        SubjectCommand::Restrict { config } => (config, SubjectRequest::Restrict, None),
        SubjectCommand::Unrestrict { config } => (config, SubjectRequest::Unrestrict, None),
        SubjectCommand::Export { config, output } => (config, SubjectRequest::Export, Some(output)),
    };
    subject_request(&config, request, output.as_deref())
}

/// Sends one data-subject request to the running daemon; prints the receipt.
fn subject_request(
    config: &std::path::Path,
    request: calltrackd::ops::control::SubjectRequest,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use calltrackd::ops::control::{self, Request, Response, SubjectNumber};
    use std::io::BufRead;
    let config = config::load(config)?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let number = SubjectNumber(line.trim().to_owned());
    let path = config.state_path(&config.ops.control_socket);
    let Response::Subject(receipt) = control::request(&path, &Request::Subject { request, number })
        .with_context(|| "is the daemon running, and are you its user (or root)?")?
    else {
        anyhow::bail!("the daemon answered something other than a receipt");
    };
    if let Some(output) = output {
        write_export(output, &receipt)?;
        eprintln!(
            "{} events written to {}",
            receipt.events_found,
            output.display()
        );
    }
    println!(
        "receipt {} ({:?}): {} events found under {} keys",
        receipt.receipt_id, receipt.request, receipt.events_found, receipt.keys
    );
    Ok(ExitCode::SUCCESS)
}

/// The Art. 20 export: the events and what each field means, from the privacy manifest.
fn write_export(
    output: &std::path::Path,
    receipt: &calltrackd::ops::control::SubjectReceipt,
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let manifest: serde_json::Value = serde_json::from_str(calltrackd::call::manifest::TEXT)?;
    let document = serde_json::json!({
        "receipt_id": receipt.receipt_id,
        "generated_at": calltrackd::call::event::format_timestamp(chrono::Utc::now()),
        "controller_note": "Events about one phone number held by this calltrackd host. The number itself is not stored; events carry its keyed pseudonym per key epoch.",
        "fields": manifest.get("fields"),
        "events": receipt.events.clone().unwrap_or_default(),
    });
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    file.write_all(&serde_json::to_vec_pretty(&document)?)?;
    file.sync_all()?;
    Ok(())
}

fn subject_find(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, Write};
    let config = config::load(config)?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let normalizer = config.numbers.normalizer()?;
    let number = normalizer
        .normalize(line.trim())
        .map_err(|_| anyhow::anyhow!("standard input is not a phone number"))?;
    let keyring = read_only_keyring(&config)?;
    let pseudonyms = calltrackd::call::subject::pseudonyms(&keyring, &number)?;
    let outbox = config.data().outbox();
    let records: Vec<_> = if outbox.exists() {
        calltrackd::outbox::scan(outbox, calltrackd::outbox::Position(0))?
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let found =
        calltrackd::call::subject::matching(&pseudonyms, records.iter().map(|r| &r.line[..]));
    let mut out = std::io::stdout().lock();
    for line in &found {
        out.write_all(line)?;
        out.write_all(b"\n")?;
    }
    eprintln!("{} events under {} keys", found.len(), pseudonyms.len());
    Ok(ExitCode::SUCCESS)
}

fn cdr_import(
    config: &std::path::Path,
    file: &std::path::Path,
    format: &str,
    keep: bool,
) -> anyhow::Result<ExitCode> {
    let config = config::load(config)?;
    calltrackd::ops::owner::check(&config.data_dir)?;
    calltrackd::ops::telemetry::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _guard = runtime.enter();
    daemon::create_data_dir(&config.data_dir)?;
    let keyring = daemon::open_keyring(&config)?;
    let outbox = daemon::open_outbox(&config)?;
    let correlator = daemon::correlator(&config);
    let recorder =
        std::sync::Arc::new(daemon::recorder(keyring, &config)?.with_correlator(correlator));
    let ingestor = daemon::ingestor(&config, recorder, outbox.clone())?;
    let Some(fmt) = ingestor.format(format).cloned() else {
        anyhow::bail!("unknown CDR format {format:?} (see [cdr.formats] and the built-in presets)");
    };
    let after = if keep {
        calltrackd::cdr::After::Keep
    } else {
        ingestor.import_after()
    };
    let stored = match &after {
        calltrackd::cdr::After::Store(dir) => Some(dir.clone()),
        _ => None,
    };
    // The operator names a finished file: a last line without newline is a row.
    let job = calltrackd::cdr::Job {
        feed: calltrackd::cdr::watch::IMPORT_FEED,
        format: &fmt,
        after,
        marker: false,
        batch_size: calltrackd::cdr::service::BATCH_ROWS,
        limits: ingestor.limits(),
        final_tail: true,
    };
    let result = ingestor.ingest(file, &job, runtime.handle().clone());
    // Storage limitation also on hosts where the daemon (and its hourly purge) does not run.
    ingestor.purge_raw();
    ingestor.purge(config.cdr.quarantine_days);
    let report = result?;
    runtime.block_on(outbox.flush())?;
    let counts = &ingestor.counts;
    println!(
        "rows: {} ok, {} quarantined, {} duplicates, {} not for a tracking number, {} refused; events: {}{}",
        report.rows_ok,
        report.rows_quarantined,
        report.duplicates,
        counts.ignored.get(),
        counts.refused.get(),
        counts.events.get(),
        if report.skipped_already_done {
            " (file already ingested)"
        } else {
            ""
        }
    );
    if let Some(dir) = stored {
        println!(
            "raw file moved into {}/ (deleted after {} hours; --keep leaves it in place)",
            dir.display(),
            calltrackd::cdr::raw::DEFAULT_RETENTION_HOURS
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (config, warnings) = config::load_with_warnings(path)?;
    calltrackd::ops::owner::check(&config.data_dir)?;
    calltrackd::ops::telemetry::init(&config.log);
    for warning in &warnings {
        tracing::warn!(key = %warning.path, warning = %warning.message, "Config setting defeats a safe default.");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let daemon = Daemon::open(config).await?;
        let udp: Vec<String> = daemon.udp_addrs().iter().map(ToString::to_string).collect();
        let tcp: Vec<String> = daemon.tcp_addrs().iter().map(ToString::to_string).collect();
        let mut tls: Vec<String> = daemon.tls_addrs().iter().map(ToString::to_string).collect();
        if tls.is_empty() {
            tls.push("off".to_owned());
        }
        let metrics = daemon.metrics_addr().map_or_else(|| "off".to_owned(), |a| a.to_string());
        let control = daemon.control_path().map_or_else(|| "off".to_owned(), |p| p.display().to_string());
        info!(udp = %udp.join(","), tcp = %tcp.join(","), tls = %tls.join(","), metrics = %metrics, control = %control, version = env!("CARGO_PKG_VERSION"), "Listening.");
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            daemon::shutdown_signal().await;
            trigger.cancel();
        });
        let (reloads, reload_rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(reload_on_sighup(path.to_path_buf(), reloads));
        daemon.serve(shutdown, reload_rx).await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP: read and validate the config file again; a valid one goes to the daemon, an invalid
/// one is refused with its problems (key path and line), and the running config stays.
async fn reload_on_sighup(path: PathBuf, reloads: tokio::sync::mpsc::Sender<config::Config>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match config::load(&path) {
            Ok(config) => {
                if reloads.send(config).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(problems = %calltrackd::ops::Chain(&err), "Config reload refused; the running config stays.")
            }
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match config::load_with_warnings(path) {
        Ok((_, warnings)) => {
            for warning in &warnings {
                eprintln!("{}: warning: {warning}", path.display());
            }
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            // The problems, one a line; or why the file could not be read, with its cause.
            eprintln!("{}:\n{}", path.display(), calltrackd::ops::Chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::List { config } => {
            let config = config::load(&config)?;
            let keyring = read_only_keyring(&config)?;
            for key in keyring.list()? {
                println!("{}", key.key_id);
            }
        }
        KeysCommand::Shred {
            config,
            key_id,
            force,
        } => {
            let config = config::load(&config)?;
            calltrackd::ops::owner::check(&config.data_dir)?;
            let keyring = daemon::open_keyring(&config)?;
            keyring.shred(&key_id, force)?;
            println!("shredded {key_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The keys on disk for a read-only command: creates neither the key directory nor a key.
fn read_only_keyring(config: &config::Config) -> anyhow::Result<calltrackd::call::Keyring> {
    Ok(calltrackd::call::Keyring::open_read_only(
        &config.data().keys(&config.privacy.key_dir),
        config.privacy.rotation,
    )?)
}
