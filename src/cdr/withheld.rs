//! Sans-IO CLIR rule for CDR rows: did the caller withhold their number?
//!
//! Carriers export the real A-number even when the caller restricted its presentation (CLIR,
//! the ISUP address presentation restricted indicator of ITU-T Q.763, RFC 3323 `Privacy`), and
//! mark the restriction in one of two ways, both declared per format:
//!
//! - a presentation column whose value is one of `presentation_restricted` (whole trimmed cell,
//!   case-insensitive);
//! - words in the calling-number cell itself (`anonymous`, `CLIR +49…`): one of
//!   `withheld_words`, case-insensitive, as the whole trimmed cell or as a word inside it (not
//!   preceded or followed by a letter or digit, so `anonym` does not fire inside `anonymous`
//!   and `restricted` does not fire inside `unrestricted`).
//!
//! An empty calling cell is withheld too. The raw cell stays in the row for the quarantine; a
//! withheld row's number must never reach an event, which `complete` ensures.

/// The compiled rule of one format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Lowercased, trimmed.
    words: Vec<String>,
    /// Lowercased, trimmed.
    restricted: Vec<String>,
}

impl Rule {
    pub fn new(withheld_words: &[String], presentation_restricted: &[String]) -> Self {
        let fold = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect()
        };
        Self {
            words: fold(withheld_words),
            restricted: fold(presentation_restricted),
        }
    }

    /// Whether the row's caller is withheld, from its calling cell and its presentation cell
    /// (`None` when the format has no presentation column or the row is short of it).
    pub fn withheld(&self, calling: &str, presentation: Option<&str>) -> bool {
        self.presentation_restricted(presentation) || self.calling_withheld(calling)
    }

    fn presentation_restricted(&self, cell: Option<&str>) -> bool {
        let Some(cell) = cell.map(str::trim).filter(|c| !c.is_empty()) else {
            return false;
        };
        let cell = cell.to_lowercase();
        self.restricted.contains(&cell)
    }

    fn calling_withheld(&self, cell: &str) -> bool {
        let cell = cell.trim();
        if cell.is_empty() {
            return true;
        }
        let cell = cell.to_lowercase();
        self.words.iter().any(|w| contains_word(&cell, w))
    }
}

/// Whether `needle` occurs in `haystack` with no letter or digit right before or after it.
fn contains_word(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::format::{DEFAULT_PRESENTATION_RESTRICTED, DEFAULT_WITHHELD_WORDS};

    fn owned(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn default_rule() -> Rule {
        Rule::new(
            &owned(&DEFAULT_WITHHELD_WORDS),
            &owned(&DEFAULT_PRESENTATION_RESTRICTED),
        )
    }

    #[test]
    fn a_number_alone_is_not_withheld() {
        let r = default_rule();
        for cell in [
            "+4917612345678",
            "0176 12345678",
            "004917612345678",
            "tel:+4930555",
        ] {
            assert!(!r.withheld(cell, None), "{cell}");
        }
    }

    #[test]
    fn whole_words_match_in_any_case_and_inside_the_cell() {
        let r = default_rule();
        for cell in [
            "anonymous",
            " Anonymous ",
            "ANONYM",
            "CLIR +4917612345678",
            "+4917612345678;clir",
            "Anonymous <sip:anonymous@anonymous.invalid>",
            "restricted-number",
            "(unknown)",
        ] {
            assert!(r.withheld(cell, None), "{cell}");
        }
    }

    #[test]
    fn a_word_inside_a_longer_word_does_not_match() {
        let r = Rule::new(&owned(&["anonym", "restricted"]), &[]);
        assert!(!r.withheld("anonymously", None));
        assert!(!r.withheld("unrestricted +49176", None));
        assert!(r.withheld("anonym", None));
    }

    #[test]
    fn empty_calling_cell_is_withheld() {
        let r = default_rule();
        assert!(r.withheld("", None));
        assert!(r.withheld("  \t", None));
    }

    #[test]
    fn presentation_cell_is_matched_whole_and_case_insensitively() {
        let r = default_rule();
        for v in DEFAULT_PRESENTATION_RESTRICTED {
            assert!(r.withheld("+4917612345678", Some(v)), "{v}");
            assert!(
                r.withheld("+4917612345678", Some(&format!(" {} ", v.to_uppercase()))),
                "{v} upper"
            );
        }
        for v in ["0", "n", "no", "false", "allowed", "", "10"] {
            assert!(!r.withheld("+4917612345678", Some(v)), "{v}");
        }
    }

    #[test]
    fn custom_lists_replace_the_defaults() {
        let r = Rule::new(&owned(&["Unterdrückt", "keine Rufnummer"]), &owned(&["J"]));
        assert!(r.withheld("UNTERDRÜCKT", None));
        assert!(r.withheld("keine rufnummer", None));
        assert!(!r.withheld("anonymous", None), "defaults no longer apply");
        assert!(r.withheld("+49176", Some("j")));
        assert!(!r.withheld("+49176", Some("1")));
    }
}
