//! Checks that serde cannot express: references between sections, number forms, bounds.
//! Each problem is a (key path, message) pair; `load` adds the line. `warnings` are settings
//! that are valid but defeat a safe default; they are printed, not refused.

use std::collections::HashMap;

use super::model::Config;
use crate::call::Normalizer;

pub(super) fn validate(config: &Config) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut problem = |path: String, message: &str| problems.push((path, message.to_owned()));

    if config.sip.listen.is_empty() {
        problem(
            "sip.listen".into(),
            "at least one listen address is required",
        );
    }
    if config.sip.transports.is_empty() {
        problem(
            "sip.transports".into(),
            "at least one transport is required",
        );
    }
    if !(1500..=1024 * 1024).contains(&config.sip.max_message_bytes) {
        problem(
            "sip.max_message_bytes".into(),
            "must be between 1500 and 1048576",
        );
    }
    if config.sip.max_transactions == 0 {
        problem("sip.max_transactions".into(), "must be at least 1");
    }
    if config.sip.max_transaction_bytes < 64 * 1024 {
        problem("sip.max_transaction_bytes".into(), "must be at least 65536");
    }
    within("sip.timers", config.sip.timers.validate(), &mut problems);
    within("sip.limits", config.sip.limits.validate(), &mut problems);
    if let Some(tls) = &config.sip.tls {
        within("sip.tls", tls.validate(), &mut problems);
    }
    within("media", config.media.validate(), &mut problems);
    within("outbox", config.outbox.validate(), &mut problems);

    match config.numbers.normalizer() {
        Err(_) => problems.push((
            "numbers.default_region".into(),
            "not a known ISO 3166 region code (e.g. \"DE\")".to_owned(),
        )),
        Ok(normalizer) => {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (i, entry) in config.numbers.pool.iter().enumerate() {
                match normalizer.normalize(&entry.number) {
                    Ok(number) => {
                        if let Some(first) = seen.insert(number.as_str().to_owned(), i) {
                            problems.push((
                                format!("numbers.pool[{i}].number"),
                                format!("the same number as numbers.pool[{first}]"),
                            ));
                        }
                    }
                    Err(_) => problems.push((
                        format!("numbers.pool[{i}].number"),
                        "not a valid phone number for the default region".to_owned(),
                    )),
                }
                if !config.campaigns.contains_key(&entry.campaign) {
                    problems.push((
                        format!("numbers.pool[{i}].campaign"),
                        "no such campaign in [campaigns]".to_owned(),
                    ));
                }
            }
        }
    }

    for (id, campaign) in &config.campaigns {
        campaign_problems(config, id, campaign, &mut problems);
    }
    for (id, announcement) in &config.announcements {
        let files = std::iter::once((format!("announcements.{id}.file"), &announcement.file))
            .chain(
                announcement
                    .variants
                    .iter()
                    .map(|(code, file)| (format!("announcements.{id}.variants.{code}"), file)),
            );
        let point = announcement.informed_after_seconds;
        if point.is_some_and(|p| !p.is_finite() || p <= 0.0) {
            problems.push((
                format!("announcements.{id}.informed_after_seconds"),
                "must be a positive number of seconds".to_owned(),
            ));
        }
        for (path, file) in files {
            match crate::media::wav::load(file, id, &announcement.version) {
                Err(err) => problems.push((path, err.to_string())),
                // A point the recording never reaches would make "informed" mean "the whole
                // notice" silently; say so instead.
                Ok(loaded) if point.is_some_and(|p| p > loaded.duration.as_secs_f64()) => {
                    problems.push((
                        format!("announcements.{id}.informed_after_seconds"),
                        "is later than the end of this announcement's recording".to_owned(),
                    ));
                }
                Ok(_) => {}
            }
        }
        for code in announcement.variants.keys() {
            if code.is_empty() || code.len() > 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
                problems.push((
                    format!("announcements.{id}.variants.{code}"),
                    "variant keys are country calling codes, e.g. \"49\"".to_owned(),
                ));
            }
        }
        if announcement.version.trim().is_empty() || announcement.version.len() > 64 {
            problems.push((
                format!("announcements.{id}.version"),
                "must be 1 to 64 characters".to_owned(),
            ));
        }
    }
    let formats = config.cdr.all_formats();
    for (name, format) in &config.cdr.formats {
        if let Err(err) = format.validate() {
            problems.push((format!("cdr.formats.{name}"), err.to_string()));
        }
    }
    let limits = config.cdr.limits.over(crate::cdr::Limits::default());
    if let Err(err) = limits.validate() {
        problems.push((
            format!("cdr.limits.{}", err.key()),
            err.message().to_owned(),
        ));
    }
    for (i, feed) in config.cdr.feeds.iter().enumerate() {
        if let Err(err) = feed.validate() {
            problems.push((
                format!("cdr.feeds[{i}].{}", err.key()),
                err.message().to_owned(),
            ));
        }
        if let Err(err) = feed.limits.over(limits).validate() {
            problems.push((
                format!("cdr.feeds[{i}].limits.{}", err.key()),
                err.message().to_owned(),
            ));
        }
        if !formats.contains_key(&feed.format) {
            problems.push((
                format!("cdr.feeds[{i}].format"),
                "no such format in [cdr.formats] or the presets".to_owned(),
            ));
        }
        if let Some(first) = config.cdr.feeds[..i]
            .iter()
            .position(|f| f.name == feed.name)
        {
            // One name, one raw store and one scope of record ids.
            problems.push((
                format!("cdr.feeds[{i}].name"),
                format!("the same name as cdr.feeds[{first}]"),
            ));
        }
        // A kept file must go before its checkpoint (pruned after quarantine_days), or the next
        // scan after a restart would ingest it again.
        if feed.after == crate::cdr::watch::AfterKind::Keep
            && let Some(hours) = feed.raw_retention_hours
            && hours >= config.cdr.quarantine_days.saturating_mul(24)
        {
            problems.push((
                format!("cdr.feeds[{i}].raw_retention_hours"),
                "with after = \"keep\" must be below cdr.quarantine_days × 24, which is how long checkpoints remember an ingested file".to_owned(),
            ));
        }
    }
    if config.cdr.correlation_capacity == 0 || config.cdr.quarantine_days == 0 {
        problems.push((
            "cdr".into(),
            "correlation_capacity and quarantine_days must be at least 1".to_owned(),
        ));
    }
    // Bounded so every window is a valid time span: an unbounded one would crash the daemon at
    // the first purge or join instead of being refused here with its key and line.
    let c = &config.cdr;
    for (key, value, max, unit) in [
        ("quarantine_days", c.quarantine_days, 3650, "days"),
        (
            "duplicate_window_days",
            c.duplicate_window_days,
            3650,
            "days",
        ),
        ("correlation_hours", c.correlation_hours, 24 * 366, "hours"),
        (
            "correlation_tolerance_seconds",
            c.correlation_tolerance_seconds,
            86_400,
            "seconds",
        ),
    ] {
        if value > max {
            problems.push((
                format!("cdr.{key}"),
                format!("must be at most {max} ({unit})"),
            ));
        }
    }
    if let Some(kafka) = &config.kafka
        && let Err(err) = kafka.validate()
    {
        problems.push((format!("kafka.{}", err.key()), err.message()));
    }
    if config.privacy.keep_keys == 0 {
        problems.push((
            "privacy.keep_keys".into(),
            "must keep at least the current key".to_owned(),
        ));
    }
    if tracing_subscriber::EnvFilter::try_new(&config.log.level).is_err() {
        problems.push((
            "log.level".into(),
            "not a valid log filter (e.g. \"info\")".to_owned(),
        ));
    }
    problems
}

/// A section's own problems (keys relative to it) under the section's path, which is named once
/// here; an empty key is the section itself.
fn within(section: &str, found: Vec<(String, String)>, problems: &mut Vec<(String, String)>) {
    problems.extend(found.into_iter().map(|(key, message)| {
        let path = if key.is_empty() {
            section.to_owned()
        } else {
            format!("{section}.{key}")
        };
        (path, message)
    }));
}

/// Valid settings that defeat a safe default, as (key path, message) pairs.
pub(super) fn warnings(config: &Config) -> Vec<(String, String)> {
    let mut warnings = Vec::new();
    for (i, feed) in config.cdr.feeds.iter().enumerate() {
        if feed.keeps_raw_forever() {
            warnings.push((
                format!("cdr.feeds[{i}].after"),
                "\"keep\" without raw_retention_hours keeps every ingested raw CDR file (every caller's number) in the spool for good; set raw_retention_hours, or use the default after = \"move\" (72 hours). After cdr.quarantine_days the file's checkpoint is forgotten and a restart would ingest it again".to_owned(),
            ));
        }
    }
    warnings
}

impl super::model::Numbers {
    /// The number normalizer this section describes.
    pub fn normalizer(&self) -> Result<Normalizer, crate::call::NumberError> {
        Normalizer::new(&self.default_region)
            .map(|n| n.assume_international_without_plus(self.assume_international_without_plus))
    }
}

fn is_uri(value: &str) -> bool {
    let scheme_ok = ["sip:", "sips:", "tel:"]
        .iter()
        .any(|s| value.to_ascii_lowercase().starts_with(s));
    scheme_ok && !value.contains(['<', '>', '\r', '\n', ' '])
}

fn campaign_problems(
    config: &Config,
    id: &str,
    campaign: &super::model::Campaign,
    problems: &mut Vec<(String, String)>,
) {
    use crate::call::Hook;
    let mut problem = |key: &str, message: &str| {
        problems.push((format!("campaigns.{id}.{key}"), message.to_owned()))
    };
    if !is_uri(&campaign.destination) {
        problem(
            "destination",
            "must be a sip:, sips: or tel: URI without spaces or angle brackets",
        );
    }
    if let Some(announcement) = &campaign.announcement
        && !config.announcements.contains_key(announcement)
    {
        problem("announcement", "no such announcement in [announcements]");
    }
    match campaign.hook() {
        Hook::EarlyMedia if campaign.announcement.is_none() => {
            problem("announcement", "the early-media hook needs an announcement");
        }
        Hook::External if !campaign.external_uri.as_deref().is_some_and(is_uri) => {
            problem(
                "external_uri",
                "the external hook needs a sip:, sips: or tel: URI",
            );
        }
        _ => {}
    }
    // The privacy manifest says which fields a campaign may emit (GDPR Art. 13: no notice, no
    // identifier); a campaign whose settings would emit another is refused.
    let manifest = crate::call::manifest::Manifest::builtin();
    if let Some((field, _)) = manifest.refused(campaign.caller, campaign.hook()).first() {
        problem(
            "caller",
            &format!(
                "would emit {field}, which the privacy manifest allows only with a disclosure \
                 (early-media or external); a campaign without a disclosure must set \
                 caller = \"drop\""
            ),
        );
    }
    if !"0123456789*#".contains(campaign.objection_digit) {
        problem("objection_digit", "must be one of 0-9, * or #");
    }
}
