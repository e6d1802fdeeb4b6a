//! Spool watcher: feed config, the sans-IO completeness rule, and the async shell that
//! watches a spool directory (inotify through `notify`, plus a periodic rescan because
//! inotify drops events on overflow and misses NFS writers) and sends complete files on a
//! channel.
//!
//! A carrier's upload is complete when either its size and mtime have stayed unchanged for
//! `quiet_seconds` while we watched (`quiet_period`: works with plain SFTP uploads, which
//! give no signal), or `<file>.done` exists (`done_marker`: for carriers that write one).
//!
//! The quiet period defaults to 60 s, not a few seconds: an SFTP upload over a congested link
//! stalls for tens of seconds (TCP retransmission backoff, an SSH rekey), and a file judged
//! complete mid-upload is read up to its last full line; a CDR arriving a minute later costs
//! nothing, since CDRs join SIP calls over hours. Under `quiet_period` a last line without
//! LF is still held back until the file has been unchanged for `tail_quiet_seconds`; a file
//! that grows after it was read is read on from its checkpoint (`ingest.rs`).
//!
//! Once ingested, a file is moved into the feed's private raw store and deleted after
//! `raw_retention_hours` (`raw.rs`), unless the feed says otherwise with `after`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::limits::LimitsConfig;

/// What to do with a file once it is fully ingested.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterKind {
    /// Leave it in the spool (deleted there after `raw_retention_hours` if that is set).
    Keep,
    /// Into `done_dir`, or by default into the feed's private raw store; deleted after
    /// `raw_retention_hours`. The default: raw CDR files hold every caller's number.
    #[default]
    Move,
    Delete,
}

/// `after` with its directory resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Keep,
    /// Into the feed's private raw store `<data_dir>/cdr/raw/<feed>/` (0700, files 0600).
    Store(PathBuf),
    /// Into an operator's `done_dir`.
    Move(PathBuf),
    Delete,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompleteWhen {
    #[default]
    QuietPeriod,
    DoneMarker,
}

/// One `[[cdr.feeds]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    pub name: String,
    pub spool_dir: PathBuf,
    /// Matched against file names in `spool_dir` (not recursive).
    pub glob: String,
    /// Name of a `[cdr.formats.NAME]` table or a built-in preset.
    pub format: String,
    #[serde(default)]
    pub after: AfterKind,
    /// Where `after = "move"` puts files; unset is the private raw store under `data_dir`.
    #[serde(default)]
    pub done_dir: Option<PathBuf>,
    /// Ingested files are deleted this long after they were moved (default 72) or, with
    /// `after = "keep"`, once their mtime is this old (default: never, which check-config
    /// warns about).
    #[serde(default)]
    pub raw_retention_hours: Option<u64>,
    #[serde(default)]
    pub complete_when: CompleteWhen,
    #[serde(default = "default_quiet")]
    pub quiet_seconds: u64,
    #[serde(default = "default_rescan")]
    pub rescan_seconds: u64,
    /// Under `quiet_period`, a last line without LF is read only once the file has been
    /// unchanged this long; before, it may be the cut end of a stalled upload.
    #[serde(default = "default_tail_quiet")]
    pub tail_quiet_seconds: u64,
    /// This feed's bounds over `[cdr.limits]`, key by key.
    #[serde(default)]
    pub limits: LimitsConfig,
}

fn default_quiet() -> u64 {
    60
}

fn default_tail_quiet() -> u64 {
    900
}

fn default_rescan() -> u64 {
    30
}

/// The feed name `cdr import` uses for its record ids and raw store.
pub const IMPORT_FEED: &str = "import";

/// Why a feed cannot run. Alone it names the key as `cdr.feeds.<key>`; the config loader puts
/// [`FeedError::key`] under the feed's own path (`cdr.feeds[2].glob`) instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cdr.feeds.{} {}", self.key(), self.message())]
pub enum FeedError {
    Name,
    Reserved,
    Glob,
    StrayDoneDir,
    Retention,
    StrayRetention,
    SameDir,
    Quiet,
    Rescan,
    TailQuiet,
}

impl FeedError {
    /// The key (relative to the feed) the problem belongs to.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Name | Self::Reserved => "name",
            Self::Glob => "glob",
            Self::StrayDoneDir | Self::SameDir => "done_dir",
            Self::Retention | Self::StrayRetention => "raw_retention_hours",
            Self::Quiet => "quiet_seconds",
            Self::Rescan => "rescan_seconds",
            Self::TailQuiet => "tail_quiet_seconds",
        }
    }

    /// What is wrong with that key, without naming it.
    pub fn message(&self) -> &'static str {
        match self {
            Self::Name => {
                "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (it names the feed's raw store directory)"
            }
            Self::Reserved => "\"import\" is reserved for cdr import",
            Self::Glob => "is not a valid glob pattern",
            Self::StrayDoneDir => "is only allowed when after is \"move\"",
            Self::Retention => "must be at least 1 (after = \"delete\" keeps nothing)",
            Self::StrayRetention => "has no effect when after is \"delete\"",
            Self::SameDir => "must differ from cdr.feeds.spool_dir",
            Self::Quiet | Self::Rescan => "must be above 0",
            Self::TailQuiet => "must be at least cdr.feeds.quiet_seconds",
        }
    }
}

impl Feed {
    pub fn validate(&self) -> Result<(), FeedError> {
        if !valid_name(&self.name) {
            return Err(FeedError::Name);
        }
        if self.name == IMPORT_FEED {
            return Err(FeedError::Reserved);
        }
        self.matcher()?;
        match (self.after, &self.done_dir) {
            (AfterKind::Move, Some(d)) if *d == self.spool_dir => return Err(FeedError::SameDir),
            (AfterKind::Keep | AfterKind::Delete, Some(_)) => return Err(FeedError::StrayDoneDir),
            _ => {}
        }
        match (self.after, self.raw_retention_hours) {
            (_, Some(0)) => return Err(FeedError::Retention),
            (AfterKind::Delete, Some(_)) => return Err(FeedError::StrayRetention),
            _ => {}
        }
        if self.quiet_seconds == 0 {
            return Err(FeedError::Quiet);
        }
        if self.rescan_seconds == 0 {
            return Err(FeedError::Rescan);
        }
        if self.tail_quiet_seconds < self.quiet_seconds {
            return Err(FeedError::TailQuiet);
        }
        Ok(())
    }

    pub fn matcher(&self) -> Result<GlobMatcher, FeedError> {
        Glob::new(&self.glob)
            .map(|g| g.compile_matcher())
            .map_err(|_| FeedError::Glob)
    }

    /// `after` resolved; the default raw store lives under `data_dir`.
    pub fn after(&self, data_dir: &Path) -> After {
        match (self.after, &self.done_dir) {
            (AfterKind::Move, Some(d)) => After::Move(d.clone()),
            (AfterKind::Move, None) => After::Store(super::raw::store_dir(data_dir, &self.name)),
            (AfterKind::Delete, _) => After::Delete,
            (AfterKind::Keep, _) => After::Keep,
        }
    }

    /// How long an ingested file is kept; `None`: deleted at once, or kept for ever.
    pub fn raw_retention(&self) -> Option<Duration> {
        let hours = match self.after {
            AfterKind::Move => self
                .raw_retention_hours
                .unwrap_or(super::raw::DEFAULT_RETENTION_HOURS),
            AfterKind::Keep => self.raw_retention_hours?,
            AfterKind::Delete => return None,
        };
        Some(super::raw::hours(hours))
    }

    /// Ingested raw files stay in the spool for good: a storage-limitation gap (warned about).
    pub fn keeps_raw_forever(&self) -> bool {
        self.after == AfterKind::Keep && self.raw_retention_hours.is_none()
    }

    pub fn uses_marker(&self) -> bool {
        self.complete_when == CompleteWhen::DoneMarker
    }

    /// How much longer a file last modified at `mtime` must stay unchanged before a last line
    /// without LF is read; zero when it may be read now (always with a done marker).
    pub fn tail_wait(&self, mtime: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
        if self.uses_marker() {
            return Duration::ZERO;
        }
        let quiet = Duration::from_secs(self.tail_quiet_seconds);
        let age = (now - mtime).to_std().unwrap_or(Duration::ZERO);
        quiet.saturating_sub(age)
    }
}

/// A name that is safe as one directory below `<data_dir>/cdr/raw/`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `<file>.done`.
pub fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".done");
    PathBuf::from(name)
}

/// One look at a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub size: u64,
    pub mtime: DateTime<Utc>,
    /// Whether `<file>.done` exists.
    pub marker: bool,
}

#[derive(Debug)]
struct Seen {
    size: u64,
    mtime: DateTime<Utc>,
    since: DateTime<Utc>,
    yielded: bool,
}

/// Sans-IO completeness rule over successive observations.
#[derive(Debug)]
pub struct Tracker {
    rule: CompleteWhen,
    quiet: TimeDelta,
    files: HashMap<PathBuf, Seen>,
}

impl Tracker {
    pub fn new(rule: CompleteWhen, quiet_seconds: u64) -> Self {
        Self {
            rule,
            quiet: TimeDelta::seconds(i64::try_from(quiet_seconds).unwrap_or(i64::MAX / 1000)),
            files: HashMap::new(),
        }
    }

    /// Records an observation; true exactly once per unchanged file when it became complete.
    pub fn observe(&mut self, path: &Path, obs: Observation, now: DateTime<Utc>) -> bool {
        let seen = self.files.entry(path.to_owned()).or_insert(Seen {
            size: obs.size,
            mtime: obs.mtime,
            since: now,
            yielded: false,
        });
        if seen.size != obs.size || seen.mtime != obs.mtime {
            // Still being written (or replaced): start the quiet period over.
            *seen = Seen {
                size: obs.size,
                mtime: obs.mtime,
                since: now,
                yielded: false,
            };
        }
        let ready = match self.rule {
            CompleteWhen::DoneMarker => obs.marker,
            // Both clocks: mtime alone is fooled by `cp -p`, which sets an old mtime at
            // the end of a slow copy; our own "unchanged since" alone would yield a file
            // the moment the daemon restarts mid-upload.
            CompleteWhen::QuietPeriod => {
                now - seen.since >= self.quiet && now - obs.mtime >= self.quiet
            }
        };
        if ready && !seen.yielded {
            seen.yielded = true;
            return true;
        }
        false
    }

    /// Forgets files that are gone.
    pub fn retain(&mut self, mut present: impl FnMut(&Path) -> bool) {
        self.files.retain(|p, _| present(p));
    }

    /// Whether some file is waiting to become complete (so the shell checks again soon).
    pub fn pending(&self) -> bool {
        self.files.values().any(|s| !s.yielded)
    }
}

/// Starts watching `feed.spool_dir`; complete files are sent on `tx` until it closes.
pub fn spawn(
    feed: Feed,
    tx: mpsc::Sender<PathBuf>,
) -> Result<tokio::task::JoinHandle<()>, FeedError> {
    feed.validate()?;
    let matcher = feed.matcher()?;
    Ok(tokio::spawn(run(feed, matcher, tx)))
}

async fn run(feed: Feed, matcher: GlobMatcher, tx: mpsc::Sender<PathBuf>) {
    let (poke_tx, mut poke_rx) = mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        // Any event just triggers a rescan; the scan decides what is complete.
        let _ = poke_tx.send(());
    })
    .and_then(|mut w| {
        notify::Watcher::watch(&mut w, &feed.spool_dir, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    });
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(_) => {
            tracing::warn!(feed = %feed.name, "Spool watch unavailable, rescanning only.");
            None
        }
    };
    let mut tracker = Tracker::new(feed.complete_when, feed.quiet_seconds);
    let rescan = Duration::from_secs(feed.rescan_seconds);
    let short = Duration::from_secs(1).min(Duration::from_secs(feed.quiet_seconds));
    loop {
        match scan(&feed, &matcher, &mut tracker).await {
            Ok(ready) => {
                for path in ready {
                    if tx.send(path).await.is_err() {
                        return;
                    }
                }
            }
            Err(_) => tracing::warn!(feed = %feed.name, "Spool directory scan failed."),
        }
        let wait = if tracker.pending() { short } else { rescan };
        tokio::select! {
            _ = poke_rx.recv() => {
                // Coalesce a burst of events into one scan.
                while poke_rx.try_recv().is_ok() {}
            }
            () = tokio::time::sleep(wait) => {}
            () = tx.closed() => return,
        }
    }
}

async fn scan(
    feed: &Feed,
    matcher: &GlobMatcher,
    tracker: &mut Tracker,
) -> std::io::Result<Vec<PathBuf>> {
    let now = Utc::now();
    let mut dir = tokio::fs::read_dir(&feed.spool_dir).await?;
    let mut present = Vec::new();
    let mut ready = Vec::new();
    while let Some(entry) = dir.next_entry().await? {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !matcher.is_match(name) || (feed.uses_marker() && name.ends_with(".done")) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().map(DateTime::<Utc>::from).unwrap_or(now);
        let marker = feed.uses_marker()
            && tokio::fs::try_exists(marker_path(&path))
                .await
                .unwrap_or(false);
        let obs = Observation {
            size: meta.len(),
            mtime,
            marker,
        };
        if tracker.observe(&path, obs, now) {
            ready.push(path.clone());
        }
        present.push(path);
    }
    tracker.retain(|p| present.iter().any(|q| q == p));
    ready.sort();
    Ok(ready)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_714_636_800 + s, 0).unwrap()
    }

    fn obs(size: u64, mtime: i64) -> Observation {
        Observation {
            size,
            mtime: t(mtime),
            marker: false,
        }
    }

    fn feed(toml_text: &str) -> Result<Feed, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn quiet_period_waits_until_size_and_mtime_settle() {
        let mut tr = Tracker::new(CompleteWhen::QuietPeriod, 5);
        let p = Path::new("/spool/a.csv");
        assert!(!tr.observe(p, obs(100, 0), t(1)));
        assert!(!tr.observe(p, obs(200, 3), t(4)), "grew: restart");
        assert!(!tr.observe(p, obs(200, 3), t(8)), "only 4 s quiet");
        assert!(tr.observe(p, obs(200, 3), t(9)));
        assert!(!tr.observe(p, obs(200, 3), t(20)), "yielded once");
        assert!(!tr.pending());
    }

    #[test]
    fn quiet_period_distrusts_an_old_mtime_until_watched() {
        let mut tr = Tracker::new(CompleteWhen::QuietPeriod, 5);
        let p = Path::new("/spool/copied.csv");
        assert!(!tr.observe(p, obs(100, -3600), t(0)));
        assert!(tr.pending());
        assert!(tr.observe(p, obs(100, -3600), t(5)));
    }

    #[test]
    fn done_marker_rule_needs_the_marker() {
        let mut tr = Tracker::new(CompleteWhen::DoneMarker, 5);
        let p = Path::new("/spool/a.csv");
        assert!(!tr.observe(p, obs(100, 0), t(100)));
        let with_marker = Observation {
            marker: true,
            ..obs(100, 0)
        };
        assert!(tr.observe(p, with_marker, t(101)));
        assert_eq!(marker_path(p), Path::new("/spool/a.csv.done"));
    }

    #[test]
    fn changed_file_is_yielded_again() {
        let mut tr = Tracker::new(CompleteWhen::QuietPeriod, 1);
        let p = Path::new("/spool/a.csv");
        tr.observe(p, obs(1, 0), t(0));
        assert!(tr.observe(p, obs(1, 0), t(2)));
        tr.observe(p, obs(2, 3), t(3));
        assert!(tr.observe(p, obs(2, 3), t(5)));
        tr.retain(|_| false);
        assert!(!tr.pending());
    }

    #[test]
    fn feed_config_validation_names_the_key() {
        let base = "name = \"t\"\nspool_dir = \"/s\"\nglob = \"*.csv\"\nformat = \"x\"\n";
        assert_eq!(feed(base).unwrap().validate(), Ok(()));
        let data = Path::new("/var/lib/calltrackd");
        let f = feed(&format!("{base}after = \"move\"\n")).unwrap();
        assert_eq!(f.validate(), Ok(()));
        assert_eq!(
            f.after(data),
            After::Store(PathBuf::from("/var/lib/calltrackd/cdr/raw/t"))
        );
        let f = feed(&format!("{base}after = \"keep\"\ndone_dir = \"/d\"\n")).unwrap();
        assert_eq!(
            f.validate().unwrap_err().to_string(),
            "cdr.feeds.done_dir is only allowed when after is \"move\""
        );
        let f = feed(&format!("{base}after = \"move\"\ndone_dir = \"/d\"\n")).unwrap();
        assert_eq!(f.after(data), After::Move(PathBuf::from("/d")));
        let f = feed(&base.replace("*.csv", "a[")).unwrap();
        assert_eq!(f.validate(), Err(FeedError::Glob));
        assert!(feed(&format!("{base}colour = 1\n")).is_err());
        let f = feed(&format!("{base}complete_when = \"done_marker\"\n")).unwrap();
        assert!(f.uses_marker());
        assert_eq!(f.quiet_seconds, 60);
        let f = feed(&format!("{base}tail_quiet_seconds = 30\n")).unwrap();
        assert_eq!(
            f.validate().unwrap_err().to_string(),
            "cdr.feeds.tail_quiet_seconds must be at least cdr.feeds.quiet_seconds"
        );
        let f = feed(&format!("{base}[limits]\nmax_fields = 9\n")).unwrap();
        assert_eq!(f.limits.max_fields, Some(9));
    }

    #[test]
    fn raw_files_are_moved_and_kept_72_hours_by_default() {
        let base = "name = \"t\"\nspool_dir = \"/s\"\nglob = \"*.csv\"\nformat = \"x\"\n";
        let data = Path::new("/data");
        let f = feed(base).unwrap();
        assert_eq!(
            f.after(data),
            After::Store(PathBuf::from("/data/cdr/raw/t"))
        );
        assert_eq!(f.raw_retention(), Some(Duration::from_secs(72 * 3600)));
        assert!(!f.keeps_raw_forever());
        let f = feed(&format!("{base}raw_retention_hours = 24\n")).unwrap();
        assert_eq!(f.raw_retention(), Some(Duration::from_secs(24 * 3600)));
        let f = feed(&format!("{base}after = \"keep\"\n")).unwrap();
        assert_eq!((f.after(data), f.raw_retention()), (After::Keep, None));
        assert!(f.keeps_raw_forever());
        let f = feed(&format!(
            "{base}after = \"keep\"\nraw_retention_hours = 48\n"
        ))
        .unwrap();
        assert_eq!(f.raw_retention(), Some(Duration::from_secs(48 * 3600)));
        assert!(!f.keeps_raw_forever());
        let f = feed(&format!("{base}after = \"delete\"\n")).unwrap();
        assert_eq!((f.after(data), f.raw_retention()), (After::Delete, None));
        assert!(!f.keeps_raw_forever());
    }

    #[test]
    fn retention_and_name_are_validated_by_key() {
        let base = "spool_dir = \"/s\"\nglob = \"*.csv\"\nformat = \"x\"\n";
        let with = |extra: &str| feed(&format!("{base}{extra}")).unwrap().validate();
        assert_eq!(
            with("name = \"t\"\nraw_retention_hours = 0\n"),
            Err(FeedError::Retention)
        );
        assert_eq!(
            with("name = \"t\"\nafter = \"delete\"\nraw_retention_hours = 5\n"),
            Err(FeedError::StrayRetention)
        );
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            let err = with(&format!("name = \"{bad}\"\n")).unwrap_err();
            assert_eq!(err, FeedError::Name, "{bad:?}");
            assert!(!err.to_string().contains(bad) || bad.is_empty());
        }
        assert_eq!(with("name = \"import\"\n"), Err(FeedError::Reserved));
        // Alone (a feed that cannot start), the error still names its key.
        assert_eq!(
            FeedError::Reserved.to_string(),
            "cdr.feeds.name \"import\" is reserved for cdr import"
        );
        assert_eq!(
            FeedError::TailQuiet.to_string(),
            "cdr.feeds.tail_quiet_seconds must be at least cdr.feeds.quiet_seconds"
        );
        assert_eq!(with("name = \"carrier-a.v2_de\"\n"), Ok(()));
    }

    #[test]
    fn a_tail_waits_for_tail_quiet_seconds_unless_a_marker_says_complete() {
        let base = "name = \"t\"\nspool_dir = \"/s\"\nglob = \"*.csv\"\nformat = \"x\"\n";
        let f = feed(base).unwrap();
        assert_eq!(f.tail_wait(t(0), t(100)), Duration::from_secs(800));
        assert_eq!(f.tail_wait(t(0), t(900)), Duration::ZERO);
        assert_eq!(
            f.tail_wait(t(50), t(0)),
            Duration::from_secs(900),
            "mtime ahead"
        );
        let f = feed(&format!("{base}complete_when = \"done_marker\"\n")).unwrap();
        assert_eq!(f.tail_wait(t(0), t(1)), Duration::ZERO);
    }

    #[tokio::test]
    async fn watcher_sends_a_file_once_its_marker_exists() {
        let spool = tempfile::tempdir().unwrap();
        let f = Feed {
            name: "t".into(),
            spool_dir: spool.path().to_owned(),
            glob: "*.csv".into(),
            format: "x".into(),
            after: AfterKind::Keep,
            done_dir: None,
            raw_retention_hours: None,
            complete_when: CompleteWhen::DoneMarker,
            quiet_seconds: 5,
            rescan_seconds: 1,
            tail_quiet_seconds: 900,
            limits: LimitsConfig::default(),
        };
        std::fs::write(spool.path().join("ignored.txt"), b"x").unwrap();
        let path = spool.path().join("a.csv");
        std::fs::write(&path, b"x\n").unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let task = spawn(f, tx).unwrap();
        std::fs::write(marker_path(&path), b"").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap();
        assert_eq!(got, Some(path));
        task.abort();
    }
}
