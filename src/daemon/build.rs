//! The runtime objects a validated config builds: the data directory, disclosure plans with
//! their announcements, the number pool, the normalizer, the recorder with its policies and
//! suppression list, the keyring, the outbox, the correlator and the CDR ingestor. The daemon
//! and the CLI's offline commands (`cdr import`, `keys`, `subject find`) share them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::StartError;
use crate::call::correlate::{self, Correlator};
use crate::call::disclosure::Plan;
use crate::call::suppression::Suppression;
use crate::call::{CallerPolicy, E164, Keyring, Normalizer, Policy, Recorder};
use crate::cdr::complete::Completer;
use crate::cdr::service::Ingestor;
use crate::config::Config;
use crate::media::announcements::Announcements;
use crate::outbox::Outbox;
use crate::sip::uas::{Route, Routing};

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
pub(super) fn tracking_numbers(config: &Config) -> Result<Vec<E164>, StartError> {
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

pub(super) fn number_normalizer(config: &Config) -> Result<Normalizer, StartError> {
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
