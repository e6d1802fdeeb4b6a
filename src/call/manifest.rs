//! The privacy manifest (`schema/privacy-manifest.json`): every event field with its purpose,
//! legal basis, retention and whether it is personal data, and the campaign settings under
//! which a field may be emitted at all. `check-config` asks it whether a campaign's settings
//! would emit a field it does not allow; the tests keep it, the event schema and
//! docs/privacy.md in step.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{CallerPolicy, Hook};

/// The manifest as compiled into this binary.
pub const TEXT: &str = include_str!("../../schema/privacy-manifest.json");

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub fields: BTreeMap<String, Field>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Field {
    /// Event types (or `call.*`, `subject.*`, `*`) that carry the field.
    pub events: Vec<String>,
    pub description: String,
    pub purpose: String,
    pub legal_basis: String,
    pub personal_data: bool,
    pub retention: String,
    /// Campaign settings under which the field may be emitted; absent: always.
    #[serde(default)]
    pub allowed_when: Option<Allowed>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Allowed {
    #[serde(default)]
    pub caller: Option<Vec<CallerPolicy>>,
    #[serde(default)]
    pub disclosure: Option<Vec<Hook>>,
}

impl Manifest {
    /// The compiled-in manifest. It is checked by the tests, so failing here is a build defect.
    pub fn builtin() -> Self {
        #[allow(clippy::expect_used)]
        serde_json::from_str(TEXT).expect("schema/privacy-manifest.json parses")
    }

    /// The fields a campaign with these settings would emit that the manifest does not allow
    /// for it, each with the settings that would allow it.
    pub fn refused(&self, caller: CallerPolicy, hook: Hook) -> Vec<(&str, &Allowed)> {
        self.fields
            .iter()
            .filter(|_| caller == CallerPolicy::Pseudonymize)
            .filter_map(|(name, field)| Some((name.as_str(), field.allowed_when.as_ref()?)))
            .filter(|(_, allowed)| {
                let caller_ok = allowed.caller.as_ref().is_none_or(|c| c.contains(&caller));
                let hook_ok = allowed
                    .disclosure
                    .as_ref()
                    .is_none_or(|h| h.contains(&hook));
                !(caller_ok && hook_ok)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_campaign_without_notice_may_not_pseudonymize_callers() {
        let m = Manifest::builtin();
        assert_eq!(m.manifest_version, 1);
        let refused: Vec<_> = m
            .refused(CallerPolicy::Pseudonymize, Hook::None)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(refused, ["caller_pseudonym", "caller_region"]);
        assert!(m.refused(CallerPolicy::Drop, Hook::None).is_empty());
        assert!(
            m.refused(CallerPolicy::Pseudonymize, Hook::EarlyMedia)
                .is_empty()
        );
        assert!(
            m.refused(CallerPolicy::Pseudonymize, Hook::External)
                .is_empty()
        );
    }
}
