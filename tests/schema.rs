//! The published JSON Schema (schema/call-event.v1.json) accepts every event the daemon really
//! writes: offered, disclosed, routed, abandoned, completed from CDRs, restricted and
//! objected-earlier calls, and the data-subject request and audit events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::uac::Uac;
use common::*;

#[test]
fn every_emitted_event_type_validates_against_the_published_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schema/call-event.v1.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema itself is valid");

    let daemon = Daemon::start("");
    // offered + disclosed + routed
    let out = sipp("uac_redirect.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
    assert_sipp_ok(&out, "announced call");
    // offered + routed without notice
    let out = sipp("uac_redirect.xml", "u1", daemon.addr, QUIET_NUMBER, &[]);
    assert_sipp_ok(&out, "quiet call");
    // abandoned
    let uac = Uac::new(daemon.addr, LONG_NUMBER);
    uac.invite("0 101");
    uac.expect(183, "INVITE");
    std::thread::sleep(Duration::from_millis(200));
    uac.cancel();
    uac.expect(487, "INVITE");
    uac.ack();
    let mut events = daemon.wait_events(8);
    assert_eq!(events.len(), 8, "{events:#?}");
    // A restricted caller's call, then the data-subject requests' own events, then a call from
    // a caller on the suppression list.
    let number = "+4917612345678\n";
    for request in ["restrict", "erase", "object"] {
        let out = daemon.cli(&["subject", request], number);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = sipp("uac_redirect.xml", "u1", daemon.addr, POOL_NUMBER, &[]);
        assert_sipp_ok(&out, "call after a subject request");
    }
    let export = daemon.dir.path().join("export.json");
    let out = daemon.cli(
        &["subject", "export", "--output", export.to_str().unwrap()],
        number,
    );
    assert!(out.status.success());
    let events_after = daemon.wait_events(8 + 3 + 2 + 3 + 2 + 2 + 2 + 1);
    assert!(events_after.iter().any(|e| e["restricted"] == true));
    assert!(
        events_after
            .iter()
            .any(|e| e["consent"] == "objected_earlier")
    );
    events = events_after;

    // completed, from a CDR
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[numbers.pool]]\nnumber = \"+493055511000\"\ncampaign = \"{POOL_CAMPAIGN}\"\n",
        base_config(&dir.path().join("var"))
    );
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap();
    // A copy: the import moves what it ingests into the raw store.
    let sample = dir.path().join("sipcarrier-sample.csv");
    std::fs::copy(repo().join("fixtures/cdr/sipcarrier-sample.csv"), &sample).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_calltrackd"))
        .args([
            "cdr",
            "import",
            "--config",
            path.to_str().unwrap(),
            "--format",
            "sipcarrier-csv",
        ])
        .arg(&sample)
        .output()
        .unwrap();
    assert!(out.status.success());
    events.extend(read_events(&dir.path().join("var/outbox")));

    let mut types: Vec<String> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    types.dedup();
    assert_eq!(
        types,
        [
            "audit.subject_request",
            "call.abandoned",
            "call.completed",
            "call.disclosed",
            "call.offered",
            "call.routed",
            "subject.erasure_requested",
            "subject.objection_recorded",
            "subject.restriction_requested",
        ]
    );
    for event in &events {
        let errors: Vec<String> = validator
            .iter_errors(event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{event}\n{errors:#?}");
    }
    // And the schema is not a rubber stamp: an unknown field is refused.
    let mut tampered = events[0].clone();
    tampered["caller_number"] = serde_json::json!("+4917612345678");
    assert!(!validator.is_valid(&tampered));
    let audit = events
        .iter()
        .find(|e| e["event_type"] == "audit.subject_request")
        .unwrap();
    let mut leaky = audit.clone();
    leaky["caller_pseudonyms"] = serde_json::json!([]);
    assert!(
        !validator.is_valid(&leaky),
        "an audit event carries no pseudonyms"
    );
}
