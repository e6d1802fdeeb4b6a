//! Reading a config file: TOML text → typed tree → validation, with every problem located by key
//! path and line so an operator can fix the file without guessing.

use std::fmt;
use std::path::Path;

use super::model::Config;
use super::validate;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `numbers.pool[2].campaign`.
    pub path: String,
    /// 1-based line, when the key can be found in the file.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", display_problems(.0))]
    Invalid(Vec<Problem>),
}

fn display_problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text)
}

/// [`load`], plus the warnings about valid settings that defeat a safe default (located like
/// problems).
pub fn load_with_warnings(path: &Path) -> Result<(Config, Vec<Problem>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let config = parse(&text)?;
    let warnings = located(&text, validate::warnings(&config));
    Ok((config, warnings))
}

fn located(text: &str, found: Vec<(String, String)>) -> Vec<Problem> {
    found
        .into_iter()
        .map(|(path, message)| Problem {
            line: line_of_path(text, &path),
            path,
            message,
        })
        .collect()
}

/// Parses and validates config text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let line = inner
            .span()
            .map(|span| line_of_offset(text, span.start))
            .or_else(|| line_of_path(text, &path));
        ConfigError::Invalid(vec![Problem {
            path: if path == "." {
                "(top level)".to_owned()
            } else {
                path
            },
            line,
            message: inner.message().trim().to_owned(),
        }])
    })?;
    let problems = located(text, validate::validate(&config));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Finds the line of a dotted path (`a.b[2].c`) in the TOML text, falling back to the nearest
/// enclosing key that exists in the file (a missing key is reported at its table).
fn line_of_path(text: &str, path: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut best = None;
    for segment in split_path(path) {
        let next = match segment {
            Segment::Key(key) => item.get(key.as_str()),
            Segment::Index(index) => item.get(index),
        };
        match next {
            Some(found) => {
                item = found;
                if let Some(span) = found.span().or_else(|| key_span(found)) {
                    best = Some(line_of_offset(text, span.start));
                }
            }
            None => break,
        }
    }
    best
}

fn key_span(item: &toml_edit::Item) -> Option<std::ops::Range<usize>> {
    item.as_table().and_then(toml_edit::Table::span)
}

enum Segment {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            segments.push(Segment::Key(key.to_owned()));
        }
        for index in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                segments.push(Segment::Index(i));
            }
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[numbers]
default_region = "DE"

[[numbers.pool]]
number = "+49 30 5550 1000"
campaign = "spring"

[campaigns.spring]
destination = "sip:+4930555090@pbx.example.net"
caller = "drop"
"#;

    #[test]
    fn minimal_config_loads_with_safe_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.sip.listen[0].to_string(), "127.0.0.1:5060");
        assert!(config.sip.acl.allow.is_empty());
        assert_eq!(config.outbox.sync_interval_ms, 10);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = format!("{MINIMAL}\n[outbox]\nsegmnet_bytes = 5\n");
        let ConfigError::Invalid(problems) = parse(&text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.contains("segmnet_bytes"),
            "{:?}",
            problems[0]
        );
        assert_eq!(problems[0].line, Some(text.lines().count()));
    }

    #[test]
    fn wrong_type_names_the_key_path_and_line() {
        let text = MINIMAL.replace("default_region = \"DE\"", "default_region = 49");
        let ConfigError::Invalid(problems) = parse(&text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems[0].path, "numbers.default_region");
        assert_eq!(problems[0].line, Some(3));
    }

    #[test]
    fn campaign_without_notice_must_drop_the_caller() {
        let text = MINIMAL.replace("caller = \"drop\"", "caller = \"pseudonymize\"");
        let ConfigError::Invalid(problems) = parse(&text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems[0].path, "campaigns.spring.caller");
        assert_eq!(problems[0].line, Some(11));
    }

    #[test]
    fn cdr_windows_beyond_a_valid_time_span_are_refused_with_key_and_line() {
        let text = format!("{MINIMAL}\n[cdr]\nquarantine_days = 1000000000000\n");
        let ConfigError::Invalid(problems) = parse(&text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems[0].path, "cdr.quarantine_days");
        assert_eq!(problems[0].message, "must be at most 3650 (days)");
        assert_eq!(problems[0].line, Some(text.lines().count()));
    }

    #[test]
    fn abuse_limits_default_and_a_bad_rate_names_its_key_and_line() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.sip.limits.untrusted_burst, 16.0);
        assert!(config.media.allowed_networks.is_none());
        let text = format!("{MINIMAL}\n[sip.limits]\ntrusted_per_second = 0\n");
        let ConfigError::Invalid(problems) = parse(&text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems[0].path, "sip.limits.trusted_per_second");
        assert_eq!(problems[0].line, Some(text.lines().count()));
    }

    #[test]
    fn media_networks_default_to_the_acl_and_may_be_set() {
        let text = format!("{MINIMAL}\n[sip.acl]\nallow = [\"192.0.2.0/28\"]\n");
        let config = parse(&text).unwrap();
        let nets = config.media.allowed_networks(&config.sip.acl.allow);
        assert_eq!(nets, ["192.0.2.0/28".parse::<ipnet::IpNet>().unwrap()]);
        let text = format!("{text}[media]\nallowed_networks = [\"198.51.100.0/24\"]\n");
        let config = parse(&text).unwrap();
        let nets = config.media.allowed_networks(&config.sip.acl.allow);
        assert_eq!(nets, ["198.51.100.0/24".parse::<ipnet::IpNet>().unwrap()]);
    }

    const FEED: &str = "\n[[cdr.feeds]]\nname = \"carrier-a\"\nspool_dir = \"/srv/spool\"\nglob = \"*.csv\"\nformat = \"sipcarrier-csv\"\n";

    fn warnings_of(text: &str) -> Vec<Problem> {
        let config = parse(text).unwrap();
        located(text, validate::warnings(&config))
    }

    #[test]
    fn a_feed_keeping_raw_files_without_retention_is_warned_about_by_key_and_line() {
        let text = format!("{MINIMAL}{FEED}after = \"keep\"\n");
        let warnings = warnings_of(&text);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].path, "cdr.feeds[0].after");
        assert_eq!(warnings[0].line, Some(text.lines().count()));
        assert!(!warnings[0].message.contains("/srv/spool"));
        for fine in [
            String::new(),
            "after = \"keep\"\nraw_retention_hours = 24\n".to_owned(),
            "after = \"move\"\ndone_dir = \"/srv/done\"\n".to_owned(),
            "after = \"delete\"\n".to_owned(),
        ] {
            assert_eq!(warnings_of(&format!("{MINIMAL}{FEED}{fine}")), [], "{fine}");
        }
    }

    #[test]
    fn a_kept_file_must_go_before_its_checkpoint() {
        let text = format!("{MINIMAL}{FEED}after = \"keep\"\nraw_retention_hours = 720\n");
        let ConfigError::Invalid(problems) = parse(&text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems[0].path, "cdr.feeds[0].raw_retention_hours");
        assert_eq!(problems[0].line, Some(text.lines().count()));
        let text = text.replace("720", "719");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn cdr_limits_errors_name_the_key_and_line() {
        let text = format!("{MINIMAL}{FEED}[cdr.feeds.limits]\nmax_fields = 0\n");
        let ConfigError::Invalid(problems) = parse(&text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems[0].path, "cdr.feeds[0].limits.max_fields");
        assert_eq!(problems[0].message, "must be above 0");
        assert_eq!(problems[0].line, Some(text.lines().count()));
        let text = format!("{MINIMAL}\n[cdr.limits]\nmax_line_bytes = 100000\n");
        let ConfigError::Invalid(problems) = parse(&text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems[0].path, "cdr.limits.max_record_bytes");
        let text = format!("{MINIMAL}\n[cdr.limits]\nmax_past_days = 3650\n{FEED}");
        let config = parse(&text).unwrap();
        assert_eq!(config.cdr.limits().max_past_days, 3650);
        assert_eq!(config.cdr.limits().max_fields, 256);
    }

    fn only_problem(text: &str) -> Problem {
        let ConfigError::Invalid(problems) = parse(text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        problems.into_iter().next().unwrap()
    }

    #[test]
    fn a_section_validated_by_its_component_names_its_key_path_once() {
        let kafka = "\n[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\ntopic = \"\"\n";
        let text = format!("{MINIMAL}{kafka}");
        let problem = only_problem(&text);
        assert_eq!(problem.path, "kafka.topic");
        assert_eq!(problem.message, "must not be empty");
        assert_eq!(problem.line, Some(text.lines().count()));
        assert!(
            problem
                .to_string()
                .ends_with(": kafka.topic: must not be empty")
        );

        let text = format!(
            "{MINIMAL}{}[kafka.schema_registry]\nurl = \"http://r\"\nusername = \"u\"\npassword_file = \"a/b\"\n",
            kafka.replace("topic = \"\"", "topic = \"t\"")
        );
        let problem = only_problem(&text);
        assert_eq!(problem.path, "kafka.schema_registry.password_file");
        assert_eq!(
            problem.message,
            "not an absolute path nor a credential name"
        );
        assert_eq!(problem.line, Some(text.lines().count()));

        let text = format!("{MINIMAL}{}", FEED.replace("*.csv", "[*.csv"));
        let problem = only_problem(&text);
        assert_eq!(problem.path, "cdr.feeds[0].glob");
        assert_eq!(problem.message, "is not a valid glob pattern");
        assert_eq!(problem.line, Some(text.lines().count() - 1));

        let text = format!("{MINIMAL}\n[sip.timers]\nt1_ms = 0\n");
        assert_eq!(only_problem(&text).path, "sip.timers");
        let text = format!("{MINIMAL}\n[outbox]\nsync_interval_ms = 0\n");
        assert_eq!(only_problem(&text).path, "outbox.sync_interval_ms");
        let text = format!("{MINIMAL}\n[media]\nrefresh_seconds = 0\n");
        assert_eq!(only_problem(&text).path, "media.refresh_seconds");
    }

    #[test]
    fn feed_names_are_unique() {
        let text = format!("{MINIMAL}{FEED}{FEED}");
        let ConfigError::Invalid(problems) = parse(&text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems[0].path, "cdr.feeds[1].name");
        assert_eq!(problems[0].message, "the same name as cdr.feeds[0]");
    }

    #[test]
    fn validation_problem_points_at_the_offending_entry() {
        let text = MINIMAL.replace("campaign = \"spring\"", "campaign = \"autumn\"");
        let ConfigError::Invalid(problems) = parse(&text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems[0].path, "numbers.pool[0].campaign");
        assert_eq!(problems[0].line, Some(7));
        assert!(
            problems[0]
                .to_string()
                .starts_with("line 7: numbers.pool[0].campaign")
        );
    }
}
