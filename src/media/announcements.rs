//! The announcements a campaign can play, loaded and encoded once at start-up, with the language
//! variant chosen by the caller's country calling code.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::wav::{self, Announcement, WavError};

/// One configured announcement with its language variants.
#[derive(Debug)]
pub struct Announcements {
    default: Arc<Announcement>,
    by_country: HashMap<u16, Arc<Announcement>>,
}

impl Announcements {
    /// Loads the default file and every variant; the first bad file is the error.
    pub fn load(
        id: &str,
        version: &str,
        file: &Path,
        variants: &BTreeMap<String, PathBuf>,
    ) -> Result<Self, WavError> {
        let default = Arc::new(wav::load(file, id, version)?);
        let mut by_country = HashMap::new();
        for (code, path) in variants {
            if let Ok(code) = code.parse::<u16>() {
                by_country.insert(code, Arc::new(wav::load(path, id, version)?));
            }
        }
        Ok(Self {
            default,
            by_country,
        })
    }

    /// The recording for a caller from `country_code` (the default when unknown or withheld).
    pub fn for_caller(&self, country_code: Option<u16>) -> Arc<Announcement> {
        country_code
            .and_then(|c| self.by_country.get(&c))
            .unwrap_or(&self.default)
            .clone()
    }
}
