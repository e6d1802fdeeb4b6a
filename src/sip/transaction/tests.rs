use super::*;

fn key(branch: &str) -> Key {
    Key::rfc3261(branch, "192.0.2.1:5060", MethodClass::Invite)
}

fn resp(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

fn table() -> Transactions<&'static str> {
    Transactions::new(Timers::default(), 100)
}

#[tokio::test(start_paused = true)]
async fn retransmitted_invite_gets_the_last_response_and_no_new_transaction() {
    let mut t = table();
    let k = key("z9hG4bK1");
    assert_eq!(
        t.on_request(k.clone(), "peer", false, Instant::now()),
        Received::New
    );
    assert_eq!(
        t.on_request(k.clone(), "peer", false, Instant::now()),
        Received::Retransmission(None),
        "nothing sent yet, nothing to resend"
    );
    t.respond(&k, 100, resp("100"), Instant::now()).unwrap();
    assert_eq!(
        t.on_request(k.clone(), "peer", false, Instant::now()),
        Received::Retransmission(Some(("peer", resp("100"))))
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().retransmissions_absorbed, 2);
}

#[tokio::test(start_paused = true)]
async fn non_2xx_final_over_udp_is_retransmitted_with_timer_g_until_timer_h() {
    let mut t = table();
    let k = key("z9hG4bK2");
    t.on_request(k.clone(), "peer", false, Instant::now());
    t.respond(&k, 302, resp("302"), Instant::now()).unwrap();
    let start = Instant::now();
    let mut sends = Vec::new();
    // Walk the paused clock in 100 ms steps for 40 s.
    for _ in 0..400 {
        tokio::time::advance(Duration::from_millis(100)).await;
        for _ in t.poll(Instant::now()) {
            sends.push(Instant::now() - start);
        }
    }
    let secs: Vec<f64> = sends
        .iter()
        .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0)
        .collect();
    // Timer G: 0.5, then +1, +2, +4, +4, ... (capped at T2 = 4 s) until Timer H at 32 s.
    assert_eq!(&secs[..5], &[0.5, 1.5, 3.5, 7.5, 11.5]);
    assert!(secs.iter().all(|s| *s < 32.0));
    assert!(t.is_empty(), "Timer H must end the transaction");
    assert_eq!(t.stats().ack_timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn ack_stops_retransmissions_and_timer_i_ends_the_transaction() {
    let mut t = table();
    let k = key("z9hG4bK3");
    t.on_request(k.clone(), "peer", false, Instant::now());
    t.respond(&k, 404, resp("404"), Instant::now()).unwrap();
    assert_eq!(t.on_ack(&k, Instant::now()), Received::Ack);
    assert_eq!(
        t.on_ack(&k, Instant::now()),
        Received::Ack,
        "ACK retransmission absorbed"
    );
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(
        t.poll(Instant::now()).is_empty(),
        "no retransmission after the ACK"
    );
    assert_eq!(t.len(), 1, "Timer I (T4) not yet fired");
    tokio::time::advance(Duration::from_secs(2)).await;
    t.poll(Instant::now());
    assert!(t.is_empty());
    assert_eq!(t.on_ack(&k, Instant::now()), Received::StrayAck);
}

#[test]
fn reliable_transport_sends_no_retransmissions_and_ack_ends_at_once() {
    let mut t = table();
    let k = key("z9hG4bK4");
    let now = Instant::now();
    t.on_request(k.clone(), "conn", true, now);
    t.respond(&k, 302, resp("302"), now).unwrap();
    assert!(t.poll(now + Duration::from_secs(10)).is_empty());
    assert_eq!(t.on_ack(&k, now), Received::Ack);
    assert!(t.is_empty());
}

#[test]
fn non_invite_final_is_absorbed_until_timer_j_over_udp() {
    let mut t = table();
    let k = Key::rfc3261(
        "z9hG4bK5",
        "192.0.2.1:5060",
        MethodClass::Other("OPTIONS".into()),
    );
    let now = Instant::now();
    t.on_request(k.clone(), "peer", false, now);
    t.respond(&k, 200, resp("200"), now).unwrap();
    assert!(
        t.poll(now + Duration::from_secs(5)).is_empty(),
        "non-INVITE finals are never retransmitted by timer"
    );
    assert_eq!(
        t.on_request(k.clone(), "peer", false, now + Duration::from_secs(5)),
        Received::Retransmission(Some(("peer", resp("200"))))
    );
    t.poll(now + Duration::from_secs(33));
    assert!(t.is_empty(), "Timer J = 64*T1");
}

#[test]
fn non_invite_over_tcp_ends_with_its_final() {
    let mut t = table();
    let k = Key::rfc3261("z9hG4bK6", "h:5060", MethodClass::Other("OPTIONS".into()));
    let now = Instant::now();
    t.on_request(k.clone(), "conn", true, now);
    t.respond(&k, 200, resp("200"), now).unwrap();
    assert!(t.is_empty());
}

#[test]
fn full_table_refuses_new_transactions_but_serves_known_ones() {
    let mut t: Transactions<&str> = Transactions::new(Timers::default(), 2);
    let now = Instant::now();
    assert_eq!(t.on_request(key("a"), "p", false, now), Received::New);
    assert_eq!(t.on_request(key("b"), "p", false, now), Received::New);
    assert_eq!(
        t.on_request(key("c"), "p", false, now),
        Received::Overloaded
    );
    assert_eq!(
        t.on_request(key("a"), "p", false, now),
        Received::Retransmission(None)
    );
}

#[test]
fn second_final_is_refused() {
    let mut t = table();
    let k = key("z9hG4bK7");
    let now = Instant::now();
    t.on_request(k.clone(), "p", false, now);
    assert!(t.is_proceeding(&k));
    t.respond(&k, 487, resp("487"), now).unwrap();
    assert!(!t.is_proceeding(&k));
    assert_eq!(
        t.respond(&k, 302, resp("302"), now),
        Err(RespondError::AlreadyFinal)
    );
    assert_eq!(
        t.respond(&key("nope"), 302, resp("302"), now),
        Err(RespondError::Unknown)
    );
}

#[test]
fn cancel_finds_its_invite_by_key() {
    let cancel = Key::rfc3261("z9hG4bK8", "h:5060", MethodClass::Cancel);
    assert_eq!(
        cancel.invite_of_cancel(),
        Key::rfc3261("z9hG4bK8", "H:5060", MethodClass::Invite)
    );
}

#[test]
fn unanswered_transactions_are_swept_so_memory_stays_bounded() {
    let mut t = table();
    let now = Instant::now();
    for i in 0..50 {
        t.on_request(key(&format!("z9hG4bKs{i}")), "p", false, now);
    }
    t.poll(now + PROCEEDING_LIMIT - Duration::from_secs(1));
    assert_eq!(t.len(), 50);
    t.poll(now + PROCEEDING_LIMIT + Duration::from_secs(2));
    assert!(t.is_empty());
    assert_eq!(t.stats().proceeding_timeouts, 50);
    assert_eq!(t.next_deadline(), None, "nothing left to wake up for");
}

#[test]
fn a_thousand_unacked_calls_leave_nothing_behind() {
    let mut t: Transactions<&str> = Transactions::new(Timers::default(), 10_000);
    let now = Instant::now();
    for i in 0..1000 {
        let k = key(&format!("z9hG4bKu{i}"));
        t.on_request(k.clone(), "p", false, now);
        t.respond(&k, 302, resp("302"), now).unwrap();
    }
    let mut at = now;
    while let Some(next) = t.next_deadline() {
        at = next.max(at);
        t.poll(at);
        assert!(at < now + Duration::from_secs(40), "timers must converge");
    }
    assert!(t.is_empty());
    assert!(t.ids.is_empty() && t.deadlines.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_second_branch_of_the_same_request_is_merged_until_the_first_ends() {
    let mut t = table();
    let (first, second) = (key("z9hG4bKfork1"), key("z9hG4bKfork2"));
    let origin = t.origin("tag-a", "call-1@x", 1, "INVITE");
    t.on_request(first.clone(), "peer", false, Instant::now());
    assert_eq!(t.claim_origin(&first, origin), Claim::First);
    assert_eq!(
        t.claim_origin(&first, origin),
        Claim::First,
        "its own claim again"
    );
    t.on_request(second.clone(), "peer", false, Instant::now());
    assert_eq!(t.claim_origin(&second, origin), Claim::Merged);
    let other = t.origin("tag-a", "call-1@x", 2, "INVITE");
    assert_eq!(t.claim_origin(&second, other), Claim::First, "another CSeq");
    // Once the first transaction is gone (final, ACK, Timer I), the origin is free again.
    t.respond(&first, 302, resp("302"), Instant::now()).unwrap();
    t.on_ack(&first, Instant::now());
    tokio::time::advance(Duration::from_secs(6)).await;
    let _ = t.poll(Instant::now());
    assert!(!t.contains(&first));
    let third = key("z9hG4bKfork3");
    t.on_request(third.clone(), "peer", false, Instant::now());
    assert_eq!(t.claim_origin(&third, origin), Claim::First);
}

#[test]
fn debug_shows_no_wire_values() {
    let keys = [
        Key::rfc3261(
            "z9hG4bK-secret-branch",
            "10.9.8.7:5060",
            MethodClass::Invite,
        ),
        Key::rfc2543(
            "secret-call-id@10.9.8.7",
            1,
            "tag-erika",
            "SIP/2.0/UDP 10.9.8.7",
            MethodClass::Other("SECRETMETHOD".into()),
        ),
    ];
    let resent: Received<&str> =
        Received::Retransmission(Some(("peer", resp("SIP/2.0 302 +4917612345678"))));
    let shown = format!("{keys:?} {keys:#?} {resent:?} {resent:#?}");
    for raw in [
        "secret",
        "10.9.8.7",
        "erika",
        "SECRETMETHOD",
        "4917612345678",
    ] {
        assert!(!shown.contains(raw), "{raw} in {shown}");
    }
    assert!(shown.contains("rfc2543") && shown.contains("Retransmission("));
}

fn sized(n: usize) -> Bytes {
    Bytes::from(vec![b'x'; n])
}

#[tokio::test(start_paused = true)]
async fn held_bytes_follow_the_retained_responses() {
    let mut t = table();
    let now = Instant::now();
    let (a, b) = (key("z9hG4bKa"), key("z9hG4bKb"));
    t.on_request(a.clone(), "peer", false, now);
    t.on_request(b.clone(), "peer", true, now);
    t.respond(&a, 100, sized(300), now).unwrap();
    assert_eq!(t.held_bytes(), 300);
    t.respond(&a, 302, sized(500), now).unwrap();
    assert_eq!(t.held_bytes(), 500, "the 302 replaces the 100");
    t.respond(&b, 404, sized(200), now).unwrap();
    assert_eq!(t.held_bytes(), 700);
    assert_eq!(t.on_ack(&a, now), Received::Ack);
    assert_eq!(t.held_bytes(), 200, "Confirmed keeps no response");
    assert_eq!(t.on_ack(&b, now), Received::Ack);
    assert_eq!(t.held_bytes(), 0, "a reliable transaction ends at its ACK");
}

#[tokio::test(start_paused = true)]
async fn over_the_byte_budget_new_invites_are_refused_but_other_requests_pass() {
    let mut t = table().with_byte_budget(1000);
    let now = Instant::now();
    for i in 0..3 {
        let k = key(&format!("z9hG4bKbig{i}"));
        assert_eq!(t.on_request(k.clone(), "peer", false, now), Received::New);
        t.respond(&k, 302, sized(400), now).unwrap();
    }
    assert_eq!(t.held_bytes(), 1200);
    assert_eq!(
        t.on_request(key("z9hG4bKnew"), "peer", false, now),
        Received::OverBudget
    );
    assert_eq!(t.stats().budget_refusals(), 1);
    let cancel = Key::rfc3261("z9hG4bKbig0", "192.0.2.1:5060", MethodClass::Cancel);
    assert_eq!(t.on_request(cancel, "peer", false, now), Received::New);
    let options = Key::rfc3261(
        "z9hG4bKopt",
        "192.0.2.1:5060",
        MethodClass::Other("OPTIONS".into()),
    );
    assert_eq!(t.on_request(options, "peer", false, now), Received::New);
    // A retransmission of a live INVITE is still absorbed, never refused.
    assert!(matches!(
        t.on_request(key("z9hG4bKbig1"), "peer", false, now),
        Received::Retransmission(Some(_))
    ));
    // Timer H frees the bytes and new INVITEs are taken again.
    tokio::time::advance(Duration::from_secs(33)).await;
    t.poll(Instant::now());
    assert_eq!(t.held_bytes(), 0);
    assert_eq!(
        t.on_request(key("z9hG4bKlater"), "peer", false, Instant::now()),
        Received::New
    );
}

#[tokio::test(start_paused = true)]
async fn swept_transactions_release_their_bytes() {
    let mut t = table();
    let k = key("z9hG4bKstuck");
    t.on_request(k.clone(), "peer", false, Instant::now());
    t.respond(&k, 183, sized(250), Instant::now()).unwrap();
    assert_eq!(t.held_bytes(), 250);
    tokio::time::advance(PROCEEDING_LIMIT + Duration::from_secs(2)).await;
    t.poll(Instant::now());
    assert!(t.is_empty());
    assert_eq!(t.held_bytes(), 0);
}
