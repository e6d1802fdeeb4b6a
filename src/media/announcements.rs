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

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(path: &Path, ms: u32) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for _ in 0..ms * 8 {
            w.write_sample(0i16).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn caller_country_picks_the_variant_and_others_get_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let (en, de) = (dir.path().join("en.wav"), dir.path().join("de.wav"));
        wav(&en, 100);
        wav(&de, 200);
        let variants = BTreeMap::from([("49".to_owned(), de)]);
        let set = Announcements::load("notice", "v1", &en, &variants).unwrap();
        assert_eq!(set.for_caller(Some(49)).duration.as_millis(), 200);
        assert_eq!(set.for_caller(Some(33)).duration.as_millis(), 100);
        assert_eq!(
            set.for_caller(None).duration.as_millis(),
            100,
            "withheld callers hear the default"
        );
    }
}
