//! Each default is declared once: a section's `Default` (what the tree holds when the section is
//! absent) and its serde defaults (what an empty section gives) must be the same values.

#![allow(clippy::unwrap_used)]

use std::fmt::Debug;

use serde::de::DeserializeOwned;

use super::model::{Cdr, Log, Media, Ops, Outbox, Privacy, Sip};

/// `Debug` shows every field, so equal text is equal settings (not every section is `PartialEq`).
fn empty_is_default<T: DeserializeOwned + Default + Debug>() {
    let empty: T = toml::from_str("").unwrap();
    assert_eq!(
        format!("{empty:?}"),
        format!("{:?}", T::default()),
        "{}",
        std::any::type_name::<T>()
    );
}

#[test]
fn an_empty_section_holds_the_same_defaults_as_an_absent_one() {
    empty_is_default::<Sip>();
    empty_is_default::<crate::sip::transaction::TimerSettings>();
    empty_is_default::<crate::sip::limit::Settings>();
    empty_is_default::<Media>();
    empty_is_default::<Outbox>();
    empty_is_default::<Privacy>();
    empty_is_default::<Cdr>();
    empty_is_default::<crate::cdr::LimitsConfig>();
    empty_is_default::<Log>();
    empty_is_default::<Ops>();
}

#[test]
fn kafka_new_holds_the_defaults_of_a_section_naming_only_brokers() {
    let parsed: crate::sink::Kafka = toml::from_str("bootstrap_servers = \"b:9092\"").unwrap();
    assert_eq!(parsed, crate::sink::Kafka::new("b:9092"));
}

#[test]
fn the_runtime_defaults_are_the_config_defaults() {
    assert_eq!(
        crate::outbox::Options::default(),
        Outbox::default().options()
    );
    let timers = crate::sip::transaction::Timers::default();
    let from_config =
        crate::sip::transaction::Timers::from(crate::sip::transaction::TimerSettings::default());
    assert_eq!(
        (timers.t1, timers.t2, timers.t4),
        (from_config.t1, from_config.t2, from_config.t4)
    );
    let campaign: super::model::Campaign = toml::from_str("destination = \"sip:a@b\"").unwrap();
    let none = crate::call::disclosure::Plan::none();
    assert_eq!(campaign.objection_digit, none.objection_digit);
    assert_eq!(campaign.without_sdp, none.without_sdp);
}
