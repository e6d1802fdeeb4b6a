//! Privacy on every path, through the real daemon: withheld callers in each header form and
//! through the CDR join, only informed callers identified, objections that cannot be forged and
//! are remembered, and the data-subject requests over the control socket. Each test ends with a
//! scan of everything the daemon wrote for the caller's raw identifiers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::uac::{Uac, send_dtmf_from};
use common::*;

/// The number every `Uac` calls from, in E.164.
const CALLER: &str = "+4917612345678";

/// Calls with announcements share the machine's time; one at a time keeps them on schedule.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every file under the data dir but the quarantine and the raw CDR store (the carrier's own
/// files, private and deleted after `raw_retention_hours`), and the log: none may hold the
/// caller's digits, a Call-ID of ours, a display name or a user agent.
fn assert_no_raw_identifiers(daemon: &Daemon, call_ids: &[&str]) {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                let cdr_dir = path.parent().is_some_and(|p| p.ends_with("cdr"));
                if name == "quarantine" || (cdr_dir && name == "raw") {
                    continue;
                }
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&daemon.data_dir(), &mut files);
    assert!(
        files.len() > 3,
        "the scan sees the daemon's files: {files:?}"
    );
    let mut needles = vec![
        CALLER_DIGITS.to_owned(),
        "Erika".to_owned(),
        CALLER_AGENT.to_owned(),
    ];
    needles.extend(call_ids.iter().map(|c| (*c).to_owned()));
    let log = daemon.log();
    for needle in &needles {
        assert!(!log.contains(needle.as_str()), "the log holds {needle}");
        for file in &files {
            let Ok(bytes) = std::fs::read(file) else {
                continue;
            };
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} holds {needle}",
                file.display()
            );
        }
    }
}

fn call_events<'a>(events: &'a [serde_json::Value], call_key: &str) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| e["call_key"] == call_key)
        .collect()
}

/// One announced call to `number` that hears the notice and is redirected; its events.
fn announced_call(daemon: &Daemon, uac: &Uac, extra_headers: &str) -> Vec<serde_json::Value> {
    let before = daemon.events().len();
    uac.invite_with("0 101", extra_headers);
    uac.expect(302, "INVITE");
    uac.ack();
    let events = daemon.wait_events(before + 3);
    events[before..].to_vec()
}

#[test]
fn withheld_callers_in_every_header_form_get_no_identifier() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let forms = [
        (
            "two Privacy lines",
            "Privacy: user\r\nPrivacy: id\r\n",
            None,
        ),
        ("one comma list", "Privacy: user, id\r\n", None),
        (
            "P-Asserted-Identity with Privacy: id",
            "P-Asserted-Identity: <sip:+4917612345678@carrier.example>\r\nPrivacy: id\r\n",
            None,
        ),
        (
            "Remote-Party-ID privacy=full",
            "Remote-Party-ID: \"Erika\" <sip:+4917612345678@carrier.example>;party=calling;privacy=full;screen=yes\r\n",
            None,
        ),
        (
            "P-Preferred-Identity with an anonymous From",
            "P-Preferred-Identity: <sip:+4917612345678@carrier.example>\r\n",
            Some("\"Anonymous\" <sip:anonymous@anonymous.invalid>"),
        ),
    ];
    let mut call_ids = Vec::new();
    for (what, headers, from) in forms {
        let mut uac = Uac::new(daemon.addr, POOL_NUMBER);
        if let Some(from) = from {
            uac = uac.with_from(from);
        }
        let events = announced_call(&daemon, &uac, headers);
        assert_eq!(events.len(), 3, "{what}: {events:#?}");
        for e in &events {
            assert_eq!(e["caller_withheld"], true, "{what}: {e}");
            assert!(e.get("caller_pseudonym").is_none(), "{what}: {e}");
            assert!(e.get("caller_region").is_none(), "{what}: {e}");
        }
        call_ids.push(uac.call_id.clone());
    }
    // The control: the same call without a privacy request is identified.
    let uac = Uac::new(daemon.addr, POOL_NUMBER);
    let events = announced_call(
        &daemon,
        &uac,
        &format!("Privacy: none\r\nUser-Agent: {CALLER_AGENT}/2.1\r\n"),
    );
    assert!(
        events.iter().all(|e| e["caller_pseudonym"].is_string()),
        "{events:#?}"
    );
    call_ids.push(uac.call_id.clone());
    let ids: Vec<&str> = call_ids.iter().map(String::as_str).collect();
    assert_no_raw_identifiers(&daemon, &ids);
}

#[test]
fn only_callers_who_heard_the_notice_to_its_informing_point_are_identified() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(&dir.path().join("var")).replace(
        "version = \"long-1\"",
        "version = \"long-1\"\ninformed_after_seconds = 1.0",
    );
    let daemon = Daemon::start_with(dir, &config);
    let hang_up_after = |ms: u64| {
        let uac = Uac::new(daemon.addr, LONG_NUMBER);
        let before = daemon.events().len();
        uac.invite("0 101");
        uac.expect(183, "INVITE");
        std::thread::sleep(Duration::from_millis(ms));
        uac.cancel();
        uac.expect(487, "INVITE");
        uac.ack();
        daemon.wait_events(before + 3)[before..].to_vec()
    };
    let early = hang_up_after(300);
    assert_eq!(early.len(), 3, "{early:#?}");
    assert!(early.iter().any(|e| e["event_type"] == "call.abandoned"));
    for e in &early {
        assert!(e.get("caller_pseudonym").is_none(), "not informed: {e}");
        assert!(e.get("caller_region").is_none(), "not informed: {e}");
        assert_eq!(e["consent"], "unknown");
        assert_eq!(e["caller_withheld"], false);
    }
    let late = hang_up_after(1500);
    assert_eq!(late.len(), 3, "{late:#?}");
    for e in &late {
        assert!(
            e["caller_pseudonym"].is_string(),
            "past the informing point: {e}"
        );
        assert_eq!(e["consent"], "informed");
    }
}

/// One voice packet from `socket`, so the daemon latches to it as the caller's stream.
fn voice_packet(socket: &std::net::UdpSocket, to: std::net::SocketAddr) {
    let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 0xa0, 0x12, 0x34, 0x56, 0x78];
    p.extend_from_slice(&[0xffu8; 160]);
    socket.send_to(&p, to).unwrap();
}

/// The daemon's RTP source for this call (the first announcement packet), bounded.
fn daemon_media(uac: &Uac) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    loop {
        assert!(Instant::now() < deadline, "no RTP");
        if let Ok((_, from)) = uac.media.peek_from(&mut buf) {
            return from;
        }
    }
}

#[test]
fn objections_cannot_be_forged_from_outside_the_call() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let uac = Uac::new(daemon.addr, LONG_NUMBER);
    let before = daemon.events().len();
    uac.invite("0 101");
    uac.expect(183, "INVITE");
    // INFO with the Call-ID but another From tag, or the INVITE's own CSeq: not the dialog.
    uac.info_digit_as('9', "forger", 2);
    uac.expect(481, "INFO");
    uac.info_digit_as('9', "uac", 1);
    uac.expect(481, "INFO");
    // RFC 4733 from another socket once the caller's stream is latched.
    let media = daemon_media(&uac);
    voice_packet(&uac.media, media);
    let forger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    send_dtmf_from(&forger, media, 9);
    uac.expect(302, "INVITE");
    uac.ack();
    let events = daemon.wait_events(before + 3)[before..].to_vec();
    let disclosed = events_of_type(&events, "call.disclosed");
    assert_eq!(disclosed.len(), 1, "{events:#?}");
    assert_eq!(
        disclosed[0]["complete"], true,
        "the forged keys did not stop it"
    );
    assert!(
        events.iter().all(|e| e["consent"] == "informed"),
        "{events:#?}"
    );
    let metrics_log = daemon.log();
    assert!(!metrics_log.contains("forger"), "tags are not logged");
}

#[test]
fn an_objection_is_remembered_and_the_next_call_is_not_asked_again() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let first = Uac::new(daemon.addr, LONG_NUMBER);
    first.invite("0 101");
    first.expect(183, "INVITE");
    first.info_digit('9');
    first.expect(200, "INFO");
    first.expect(302, "INVITE");
    first.ack();
    let objected = daemon.wait_events(3);
    assert!(
        objected.iter().all(|e| e["consent"] == "objected"),
        "{objected:#?}"
    );

    let list =
        std::fs::read_to_string(daemon.data_dir().join("privacy/suppression.jsonl")).unwrap();
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(!list.contains(CALLER_DIGITS));

    // The next call from the same number: no 183, no announcement, no identifier.
    let second = Uac::new(daemon.addr, POOL_NUMBER);
    second.invite("0 101");
    let seen = second.invite_statuses();
    second.ack();
    assert_eq!(seen.last(), Some(&302), "{seen:?}");
    assert!(!seen.contains(&183), "not asked again: {seen:?}");
    let events = daemon.wait_events(5)[3..].to_vec();
    assert_eq!(events.len(), 2, "offered and routed: {events:#?}");
    for e in &events {
        assert_eq!(e["consent"], "objected_earlier", "{e}");
        assert_eq!(e["disclosure"], "skipped", "{e}");
        assert!(e.get("caller_pseudonym").is_none(), "{e}");
    }
    // Another caller is still asked.
    let other = Uac::new(daemon.addr, POOL_NUMBER).with_from("<sip:+4915112345678@127.0.0.1>");
    other.invite("0 101");
    other.expect(183, "INVITE");
    other.expect(302, "INVITE");
    other.ack();
    assert_no_raw_identifiers(&daemon, &[&first.call_id, &second.call_id]);
}

#[test]
fn cdr_rows_of_withheld_or_uninformed_sip_calls_stay_unidentified() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let legacy_spool = dir.path().join("spool-legacy");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::create_dir_all(&legacy_spool).unwrap();
    let feeds = format!(
        "\n[[cdr.feeds]]\nname = \"carrier\"\nspool_dir = \"{}\"\nglob = \"*.csv\"\nformat = \"sipcarrier-csv\"\nquiet_seconds = 1\nrescan_seconds = 1\n\n[[cdr.feeds]]\nname = \"legacy\"\nspool_dir = \"{}\"\nglob = \"*.txt\"\nformat = \"legacy-noheader\"\nquiet_seconds = 1\nrescan_seconds = 1\n",
        spool.display(),
        legacy_spool.display()
    );
    let config = format!("{}\n{feeds}", base_config(&dir.path().join("var")));
    let daemon = Daemon::start_with(dir, &config);

    // A withheld call that hears the notice, and an identified caller who hangs up early.
    let withheld = Uac::new(daemon.addr, POOL_NUMBER);
    let withheld_events = announced_call(&daemon, &withheld, "Privacy: id\r\n");
    let uninformed = Uac::new(daemon.addr, LONG_NUMBER);
    uninformed.invite("0 101");
    uninformed.expect(183, "INVITE");
    std::thread::sleep(Duration::from_millis(200));
    uninformed.cancel();
    uninformed.expect(487, "INVITE");
    uninformed.ack();
    let sip = daemon.wait_events(6);
    assert_eq!(sip.len(), 6, "{sip:#?}");

    // The carrier exports the real A-number for both, with the Call-IDs.
    let now = chrono::Utc::now();
    let t = |s: i64| {
        (now + chrono::TimeDelta::seconds(s))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let mut csv = String::from(
        "cdr_id,call_id,setup_time,connect_time,disconnect_time,duration_ms,from_number,to_number,sip_status,trunk_group\n",
    );
    csv.push_str(&format!(
        "W1,{},{},{},{},30000,{CALLER},{POOL_NUMBER},200,tg\n",
        withheld.call_id,
        t(-5),
        t(0),
        t(30)
    ));
    csv.push_str(&format!(
        "U1,{},{},,{},0,{CALLER},{LONG_NUMBER},487,tg\n",
        uninformed.call_id,
        t(-3),
        t(0)
    ));
    std::fs::write(spool.join("rows.tmp"), csv).unwrap();
    std::fs::rename(spool.join("rows.tmp"), spool.join("rows.csv")).unwrap();
    // A legacy row without Call-ID at the withheld call's number and time: the heuristic join
    // finds the withheld call and keeps it withheld.
    let epoch = now.timestamp();
    let legacy = format!(
        "H1|{}|{}|{}|{CALLER}|{POOL_NUMBER}|ANSWERED|E1-0\n",
        epoch - 3,
        epoch,
        epoch + 40
    );
    std::fs::write(legacy_spool.join("heur.tmp"), legacy).unwrap();
    std::fs::rename(legacy_spool.join("heur.tmp"), legacy_spool.join("heur.txt")).unwrap();

    let events = daemon.wait_events(9);
    let completed = events_of_type(&events, "call.completed");
    assert_eq!(completed.len(), 3, "{events:#?}");
    let withheld_key = &withheld_events[0]["call_key"];
    for e in &completed {
        assert!(e.get("caller_pseudonym").is_none(), "{e}");
        assert!(e.get("caller_region").is_none(), "{e}");
        if &e["call_key"] == withheld_key {
            assert_eq!(e["caller_withheld"], true, "stays withheld: {e}");
        }
    }
    let joined_withheld: Vec<_> = completed
        .iter()
        .filter(|e| &e["call_key"] == withheld_key)
        .collect();
    assert_eq!(
        joined_withheld.len(),
        2,
        "by Call-ID and by heuristic: {completed:#?}"
    );
    assert!(
        joined_withheld
            .iter()
            .any(|e| e["correlated"] == "heuristic")
    );
    assert_eq!(
        call_events(&events, withheld_key.as_str().unwrap()).len(),
        5,
        "three SIP events, two CDR completions"
    );
    assert_no_raw_identifiers(&daemon, &[&withheld.call_id, &uninformed.call_id]);
}

fn receipt(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("receipt "), "{stdout}");
    stdout
}

#[test]
fn data_subject_requests_work_beside_the_running_daemon() {
    let _serial = serial();
    let daemon = Daemon::start("");
    let number = format!("{CALLER}\n");
    let first = announced_call(&daemon, &Uac::new(daemon.addr, POOL_NUMBER), "");
    let pseudonym = first[0]["caller_pseudonym"].as_str().unwrap().to_owned();

    // Art. 15/20: the export holds the call's events and what each field means.
    let export = daemon.dir.path().join("export.json");
    let out = daemon.cli(
        &["subject", "export", "--output", export.to_str().unwrap()],
        &number,
    );
    receipt(&out);
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
    assert_eq!(file["events"].as_array().unwrap().len(), 3, "{file:#}");
    assert!(file["fields"]["caller_pseudonym"]["description"].is_string());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&export).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Art. 18: restricted until lifted.
    receipt(&daemon.cli(&["subject", "restrict"], &number));
    let restricted = announced_call(&daemon, &Uac::new(daemon.addr, POOL_NUMBER), "");
    assert!(
        restricted.iter().all(|e| e["restricted"] == true),
        "{restricted:#?}"
    );
    receipt(&daemon.cli(&["subject", "unrestrict"], &number));
    let lifted = announced_call(&daemon, &Uac::new(daemon.addr, POOL_NUMBER), "");
    assert!(
        lifted.iter().all(|e| e.get("restricted").is_none()),
        "{lifted:#?}"
    );

    // Art. 17: every local event loses the pseudonym and region; downstream is told.
    let out = daemon.cli(&["subject", "erase"], &number);
    let text = receipt(&out);
    assert!(text.contains("9 events found"), "{text}");
    let events = daemon.events();
    let calls: Vec<_> = events
        .iter()
        .filter(|e| e["event_type"].as_str().unwrap().starts_with("call."))
        .collect();
    assert_eq!(calls.len(), 9);
    assert!(
        calls
            .iter()
            .all(|e| e.get("caller_pseudonym").is_none() && e.get("caller_region").is_none()),
        "{calls:#?}"
    );
    let erasure = events_of_type(&events, "subject.erasure_requested");
    assert_eq!(erasure.len(), 1, "{events:#?}");
    assert_eq!(
        erasure[0]["caller_pseudonyms"][0]["pseudonym"],
        pseudonym.as_str()
    );
    let audits = events_of_type(&events, "audit.subject_request");
    assert_eq!(audits.len(), 4, "export, restrict, unrestrict, erase");
    for audit in &audits {
        assert!(
            !audit.to_string().contains(&pseudonym),
            "no pseudonym in audits: {audit}"
        );
    }
    let find = daemon.cli(&["subject", "find"], &number);
    assert!(String::from_utf8_lossy(&find.stderr).contains("0 events"));

    // Art. 21: objection by request; the next call is not asked.
    receipt(&daemon.cli(&["subject", "object"], &number));
    let uac = Uac::new(daemon.addr, POOL_NUMBER);
    let before = daemon.events().len();
    uac.invite("0 101");
    uac.expect(302, "INVITE");
    uac.ack();
    let after = daemon.wait_events(before + 2)[before..].to_vec();
    assert!(
        after.iter().all(|e| e["consent"] == "objected_earlier"),
        "{after:#?}"
    );
    assert_eq!(
        events_of_type(&daemon.events(), "subject.objection_recorded").len(),
        1
    );

    // A number that is not one gets a clear refusal, without the input echoed.
    let bad = daemon.cli(&["subject", "erase"], "call me maybe\n");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("not a phone number") && !stderr.contains("maybe"),
        "{stderr}"
    );
    assert_no_raw_identifiers(&daemon, &[]);
}
