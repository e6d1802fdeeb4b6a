//! Behaviour tests of the outbox against a real temporary directory.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use super::*;

fn opts() -> Options {
    Options::default()
}

fn line(i: u64) -> Vec<u8> {
    format!("{{\"n\":{i}}}").into_bytes()
}

fn seg_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    names
}

async fn read_all(r: &mut Reader) -> Vec<Record> {
    let mut all = Vec::new();
    loop {
        let batch = r.try_next_batch(7).unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

#[tokio::test]
async fn appended_lines_read_back_with_consecutive_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = Outbox::open(tmp.path(), opts()).unwrap();
    assert_eq!(ob.append(b"{\"a\":1}").await.unwrap(), Position(0));
    let span = ob.append_batch(&[b"{\"b\":2}", b"[3]"]).await.unwrap();
    assert_eq!(
        span,
        Span {
            first: Position(1),
            count: 2
        }
    );
    assert_eq!(span.last(), Some(Position(2)));

    let mut r = ob.reader("kafka").unwrap();
    let got = r.next_batch(10).await.unwrap();
    let lines: Vec<_> = got.iter().map(|r| (r.position.0, &r.line[..])).collect();
    assert_eq!(
        lines,
        vec![(0, &b"{\"a\":1}"[..]), (1, b"{\"b\":2}"), (2, b"[3]")]
    );
    assert_eq!(ob.stats().appended(), 3);
    assert_eq!(ob.stats().bytes(), 8 + 8 + 4);
    let on_disk = std::fs::read(tmp.path().join("00000000000000000000.jsonl")).unwrap();
    assert_eq!(on_disk, b"{\"a\":1}\n{\"b\":2}\n[3]\n");
}

#[tokio::test]
async fn invalid_lines_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = Outbox::open(tmp.path(), opts()).unwrap();
    assert!(matches!(
        ob.append(b"{\"a\":\n1}").await,
        Err(Error::Newline)
    ));
    assert!(matches!(ob.append(b"").await, Err(Error::Empty)));
    assert!(matches!(ob.append(b"{\"a\":").await, Err(Error::NotJson)));
    let batch: [&[u8]; 2] = [b"{}", b"{\n}"];
    assert!(matches!(ob.append_batch(&batch).await, Err(Error::Newline)));
    assert_eq!(ob.end().unwrap(), Position(0));
    assert_eq!(
        std::fs::metadata(tmp.path().join("00000000000000000000.jsonl"))
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn restart_continues_the_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let ob = Outbox::open(tmp.path(), opts()).unwrap();
        for i in 0..5 {
            ob.append(&line(i)).await.unwrap();
        }
    }
    let ob = Outbox::open(tmp.path(), opts()).unwrap();
    assert_eq!(ob.open_report().next, Position(5));
    assert_eq!(ob.append(&line(5)).await.unwrap(), Position(5));
    let mut r = ob.reader("t").unwrap();
    let got = read_all(&mut r).await;
    assert_eq!(got.len(), 6);
    assert_eq!(got[5].line, line(5));
}

#[tokio::test]
async fn torn_last_line_is_cut_and_counted_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let ob = Outbox::open(tmp.path(), opts()).unwrap();
        ob.append(&line(0)).await.unwrap();
        ob.append(&line(1)).await.unwrap();
    }
    let seg = tmp.path().join("00000000000000000000.jsonl");
    let mut bytes = std::fs::read(&seg).unwrap();
    let good_len = bytes.len() as u64;
    bytes.extend_from_slice(b"{\"n\":2,\"trunc");
    std::fs::write(&seg, &bytes).unwrap();

    // A concurrent CLI scan must not report the partial line either.
    let scanned: Vec<_> = scan(tmp.path(), Position(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(scanned.len(), 2);

    let ob = Outbox::open(tmp.path(), opts()).unwrap();
    assert_eq!(ob.open_report().torn_lines_cut, 1);
    assert_eq!(ob.stats().torn_lines_cut(), 1);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
    assert_eq!(ob.append(&line(2)).await.unwrap(), Position(2));
    let mut r = ob.reader("t").unwrap();
    let got = read_all(&mut r).await;
    assert_eq!(
        got.iter().map(|r| r.line.to_vec()).collect::<Vec<_>>(),
        vec![line(0), line(1), line(2)]
    );
}

#[tokio::test]
async fn garbled_last_line_with_newline_is_cut_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Outbox::open(tmp.path(), opts()).unwrap());
    let seg = tmp.path().join("00000000000000000000.jsonl");
    std::fs::write(&seg, b"{\"n\":0}\n\0\0\0\0\n").unwrap();
    let ob = Outbox::open(tmp.path(), opts()).unwrap();
    assert_eq!(ob.open_report().torn_lines_cut, 1);
    assert_eq!(ob.end().unwrap(), Position(1));
}

#[tokio::test]
async fn full_refusal_leaves_the_log_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = Outbox::open(
        tmp.path(),
        Options {
            max_bytes: 30,
            ..opts()
        },
    )
    .unwrap();
    // Each line is 7 bytes + '\n' = 8: three fit in 30, the fourth does not.
    for i in 0..3 {
        ob.append(&line(i)).await.unwrap();
    }
    let seg = tmp.path().join("00000000000000000000.jsonl");
    let before = std::fs::read(&seg).unwrap();
    assert!(matches!(ob.append(&line(3)).await, Err(Error::Full)));
    // Neither may a batch whose parts would fit alone: 24 + 6 + 2 > 30.
    let batch: [&[u8]; 2] = [b"12345", b"1"];
    assert!(matches!(ob.append_batch(&batch).await, Err(Error::Full)));
    assert_eq!(ob.stats().full_refusals(), 2);
    assert_eq!(std::fs::read(&seg).unwrap(), before);
    // A line that still fits is accepted (24 + 2 bytes <= 30).
    assert_eq!(ob.append(b"7").await.unwrap(), Position(3));
    drop(ob);
    let ob = Outbox::open(
        tmp.path(),
        Options {
            max_bytes: 30,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(ob.open_report().torn_lines_cut, 0);
    assert_eq!(ob.end().unwrap(), Position(4));
}

#[tokio::test]
async fn segments_roll_and_readers_cross_them() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Options {
        segment_bytes: 20,
        ..opts()
    };
    let ob = Outbox::open(tmp.path(), o).unwrap();
    for i in 0..7 {
        ob.append(&line(i)).await.unwrap();
    }
    // 8-byte lines, 20-byte segments: two lines per segment.
    assert_eq!(
        seg_files(tmp.path()),
        vec![
            "00000000000000000000.jsonl",
            "00000000000000000002.jsonl",
            "00000000000000000004.jsonl",
            "00000000000000000006.jsonl"
        ]
    );
    let mut r = ob.reader("t").unwrap();
    let got = read_all(&mut r).await;
    assert_eq!(
        got.iter().map(|r| r.position.0).collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, r)| r.line == line(i as u64))
    );

    let scanned: Vec<_> = scan(tmp.path(), Position(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        scanned.iter().map(|r| r.position.0).collect::<Vec<_>>(),
        vec![3, 4, 5, 6]
    );
    assert_eq!(scanned[0].line, line(3));

    drop((r, ob));
    let ob = Outbox::open(tmp.path(), o).unwrap();
    assert_eq!(ob.open_report().segments, 4);
    assert_eq!(ob.append(&line(7)).await.unwrap(), Position(7));
}

#[tokio::test]
async fn reader_commit_persists_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let ob = Outbox::open(tmp.path(), opts()).unwrap();
        for i in 0..5 {
            ob.append(&line(i)).await.unwrap();
        }
        let mut r = ob.reader("kafka").unwrap();
        let got = r.next_batch(3).await.unwrap();
        assert_eq!(got.len(), 3);
        assert!(matches!(
            r.commit(Position(3)).await,
            Err(Error::CommitAhead)
        ));
        r.commit(got[2].position).await.unwrap();
    }
    let raw = std::fs::read(tmp.path().join("readers/kafka.pos")).unwrap();
    assert_eq!(raw, b"3\n");
    let ob = Outbox::open(tmp.path(), opts()).unwrap();
    let mut r = ob.reader("kafka").unwrap();
    assert_eq!(r.position(), Position(3));
    let got = r.next_batch(10).await.unwrap();
    assert_eq!(
        got.iter().map(|r| r.position.0).collect::<Vec<_>>(),
        vec![3, 4]
    );
    // Another reader name starts at the beginning.
    let mut other = ob.reader("tail").unwrap();
    assert_eq!(other.next_batch(1).await.unwrap()[0].position, Position(0));
}

#[tokio::test]
async fn reader_names_are_exclusive_and_positions_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = Outbox::open(tmp.path(), opts()).unwrap();
    let r = ob.reader("kafka").unwrap();
    assert!(matches!(ob.reader("kafka"), Err(Error::ReaderBusy)));
    drop(r);
    assert!(ob.reader("kafka").is_ok());
    assert!(matches!(ob.reader("../x"), Err(Error::ReaderName)));
}

#[tokio::test]
async fn unusable_position_files_restart_the_reader_at_the_oldest_segment_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = Outbox::open(tmp.path(), opts()).unwrap();
    for i in 0..3 {
        ob.append(&line(i)).await.unwrap();
    }
    // Beyond the end, garbage, torn (no line feed), empty: a power loss or a replaced outbox.
    let bad: [(&str, &[u8]); 4] = [
        ("ahead", b"99\n"),
        ("junk", b"x\n"),
        ("torn", b"2"),
        ("empty", b""),
    ];
    for (i, (name, text)) in bad.iter().enumerate() {
        std::fs::write(tmp.path().join(format!("readers/{name}.pos")), text).unwrap();
        let mut r = ob.reader(name).unwrap();
        assert_eq!(r.position(), Position(0), "{name}");
        assert_eq!(
            read_all(&mut r).await.len(),
            3,
            "{name} reads everything again"
        );
        assert_eq!(ob.stats().reader_position_resets(), i as u64 + 1);
    }
    std::fs::write(tmp.path().join("readers/good.pos"), b"2\n").unwrap();
    assert_eq!(ob.reader("good").unwrap().position(), Position(2));
    assert_eq!(
        ob.stats().reader_position_resets(),
        4,
        "a good file is no reset"
    );
}

#[tokio::test]
async fn retention_deletes_only_committed_old_sealed_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = Outbox::open(
        tmp.path(),
        Options {
            segment_bytes: 20,
            ..opts()
        },
    )
    .unwrap();
    for i in 0..7 {
        ob.append(&line(i)).await.unwrap();
    }
    let mut k = ob.reader("kafka").unwrap();
    let got = k.next_batch(5).await.unwrap();
    k.commit(got[4].position).await.unwrap(); // next = 5: segments [0,2) and [2,4) are done
    let both = ["kafka", "tail"];

    // "tail" never committed: it holds everything.
    let r = Retention {
        min_age: Duration::ZERO,
        require_readers: &both,
    };
    assert_eq!(ob.apply_retention(&r).unwrap(), 0);
    // Too young.
    let r = Retention {
        min_age: Duration::from_secs(3600),
        require_readers: &["kafka"],
    };
    assert_eq!(ob.apply_retention(&r).unwrap(), 0);
    assert_eq!(seg_files(tmp.path()).len(), 4);

    let r = Retention {
        min_age: Duration::ZERO,
        require_readers: &["kafka"],
    };
    assert_eq!(ob.apply_retention(&r).unwrap(), 32);
    assert_eq!(
        seg_files(tmp.path()),
        vec!["00000000000000000004.jsonl", "00000000000000000006.jsonl"]
    );
    // The reader continues where it was.
    let rest = k.next_batch(10).await.unwrap();
    assert_eq!(
        rest.iter().map(|r| r.position.0).collect::<Vec<_>>(),
        vec![5, 6]
    );

    // Outbox-only mode: everything but the active segment goes.
    assert_eq!(ob.apply_age_retention(Duration::ZERO).unwrap(), 16);
    assert_eq!(seg_files(tmp.path()), vec!["00000000000000000006.jsonl"]);
    // A fresh reader starts at the oldest record left.
    let mut fresh = ob.reader("fresh").unwrap();
    assert_eq!(fresh.next_batch(10).await.unwrap()[0].position, Position(6));
    drop((k, fresh, ob));
    let ob = Outbox::open(
        tmp.path(),
        Options {
            segment_bytes: 20,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(ob.open_report().bytes, 8);
}

#[tokio::test]
async fn sync_durability_returns_after_an_fdatasync() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = Outbox::open(
        tmp.path(),
        Options {
            durability: Durability::Sync,
            ..opts()
        },
    )
    .unwrap();
    for i in 0..3 {
        let before = ob.stats().syncs();
        ob.append(&line(i)).await.unwrap();
        assert!(
            ob.stats().syncs() > before,
            "append {i} returned before a sync round"
        );
    }
}

#[tokio::test]
async fn interval_durability_returns_before_the_sync_round() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Options {
        sync_interval: Duration::from_secs(3600),
        ..opts()
    };
    let ob = Outbox::open(tmp.path(), o).unwrap();
    ob.append(&line(0)).await.unwrap();
    assert_eq!(ob.stats().syncs(), 0);
    ob.flush().await.unwrap();
    assert_eq!(ob.stats().syncs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_each_line_exactly_once_and_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = Outbox::open(
        tmp.path(),
        Options {
            segment_bytes: 4096,
            ..opts()
        },
    )
    .unwrap();
    let (tasks, per) = (8u64, 250u64);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let ob = ob.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per {
                let l = format!(
                    "{{\"task\":{t},\"i\":{i},\"pad\":\"{}\"}}",
                    "x".repeat((i % 50) as usize)
                );
                if i % 10 == 0 {
                    ob.append_batch(&[l.as_bytes(), l.as_bytes()])
                        .await
                        .unwrap();
                } else {
                    ob.append(l.as_bytes()).await.unwrap();
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let mut r = ob.reader("t").unwrap();
    let got = read_all(&mut r).await;
    let expected = tasks * (per + per / 10);
    assert_eq!(got.len() as u64, expected);
    let mut seen = HashSet::new();
    for (i, rec) in got.iter().enumerate() {
        assert_eq!(rec.position.0, i as u64);
        let v: serde_json::Value = serde_json::from_slice(&rec.line).unwrap();
        let key = (v["task"].as_u64().unwrap(), v["i"].as_u64().unwrap());
        let pad = v["pad"].as_str().unwrap();
        assert_eq!(pad.len() as u64, key.1 % 50);
        seen.insert(key);
    }
    assert_eq!(seen.len() as u64, tasks * per);
    assert!(seg_files(tmp.path()).len() > 1, "test should span segments");
}

#[tokio::test]
async fn waiting_reader_is_woken_by_an_append() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = Outbox::open(tmp.path(), opts()).unwrap();
    let mut r = ob.reader("kafka").unwrap();
    let waiter = tokio::spawn(async move { r.next_batch(10).await });
    tokio::task::yield_now().await;
    ob.append(&line(0)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("reader was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].line, line(0));
}

#[tokio::test]
async fn next_batch_until_returns_empty_at_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = Outbox::open(tmp.path(), opts()).unwrap();
    let mut r = ob.reader("kafka").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
    assert!(r.next_batch_until(10, deadline).await.unwrap().is_empty());
    // Cancelled waits lose nothing.
    ob.append(&line(0)).await.unwrap();
    let got = r
        .next_batch_until(10, tokio::time::Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn files_are_not_world_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let ob = Outbox::open(&dir, opts()).unwrap();
    ob.append(&line(0)).await.unwrap();
    let mut r = ob.reader("kafka").unwrap();
    r.next_batch(1).await.unwrap();
    r.commit(Position(0)).await.unwrap();
    for p in [
        dir.join("00000000000000000000.jsonl"),
        dir.join("readers/kafka.pos"),
    ] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o137, 0, "{} has mode {mode:o}", p.display());
    }
}

#[tokio::test]
async fn unreadable_segment_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Outbox::open(tmp.path(), opts()).unwrap());
    // A directory where a segment should be: unreadable as a file.
    std::fs::create_dir(tmp.path().join("00000000000000000005.jsonl")).unwrap();
    let err = Outbox::open(tmp.path(), opts()).err().unwrap();
    assert!(
        err.to_string().contains("00000000000000000005.jsonl"),
        "{err}"
    );
}

/// Three sealed segments of two lines (`{"n":0}` … `{"n":5}`) and an active one with `{"n":6}`.
async fn sealed_segments(dir: &Path) -> Outbox {
    let o = Options {
        segment_bytes: 20,
        ..opts()
    };
    let ob = Outbox::open(dir, o).unwrap();
    for i in 0..7 {
        ob.append(&line(i)).await.unwrap();
    }
    assert_eq!(seg_files(dir).len(), 4);
    ob
}

fn positions_and_lines(records: &[Record]) -> Vec<(u64, String)> {
    records
        .iter()
        .map(|r| (r.position.0, String::from_utf8(r.line.to_vec()).unwrap()))
        .collect()
}

fn expected(ns: &[u64]) -> Vec<(u64, String)> {
    ns.iter()
        .map(|&n| (n, String::from_utf8(line(n)).unwrap()))
        .collect()
}

fn scanned(dir: &Path) -> Vec<(u64, String)> {
    let records: Vec<Record> = scan(dir, Position(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    positions_and_lines(&records)
}

#[tokio::test]
async fn sealed_segment_with_missing_lines_is_resynchronised_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = sealed_segments(tmp.path()).await;
    // Drop one line from a sealed segment by hand.
    std::fs::write(
        tmp.path().join("00000000000000000002.jsonl"),
        b"{\"n\":2}\n",
    )
    .unwrap();
    let mut r = ob.reader("t").unwrap();
    let got = positions_and_lines(&read_all(&mut r).await);
    assert_eq!(got, expected(&[0, 1, 2, 4, 5, 6]));
    assert_eq!(ob.stats().missing_lines_skipped(), 1);
    assert_eq!(ob.stats().corrupt_lines_skipped(), 0);
    assert_eq!(r.position(), Position(7));
    assert_eq!(
        scanned(tmp.path()),
        expected(&[0, 1, 2, 4, 5, 6]),
        "scan agrees"
    );
}

#[tokio::test]
async fn garbage_in_a_sealed_segment_skips_that_line_only() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = sealed_segments(tmp.path()).await;
    // Overwrite bytes inside line 2 in place, as a bad sector would.
    let seg = tmp.path().join("00000000000000000002.jsonl");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[1..5].copy_from_slice(b"\0\xff\0\xfe");
    std::fs::write(&seg, bytes).unwrap();
    let mut r = ob.reader("t").unwrap();
    let got = positions_and_lines(&read_all(&mut r).await);
    assert_eq!(got, expected(&[0, 1, 3, 4, 5, 6]));
    assert_eq!(ob.stats().corrupt_lines_skipped(), 1);
    assert_eq!(ob.stats().missing_lines_skipped(), 0);
    assert_eq!(scanned(tmp.path()), expected(&[0, 1, 3, 4, 5, 6]));
}

#[tokio::test]
async fn a_sealed_segment_cut_inside_a_line_skips_the_fragment() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = sealed_segments(tmp.path()).await;
    // Truncated in the middle of its second line: a power loss before the metadata update.
    let seg = tmp.path().join("00000000000000000002.jsonl");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(11)
        .unwrap();
    let mut r = ob.reader("t").unwrap();
    let got = positions_and_lines(&read_all(&mut r).await);
    assert_eq!(got, expected(&[0, 1, 2, 4, 5, 6]));
    assert_eq!(ob.stats().corrupt_lines_skipped(), 1, "the fragment");
    assert_eq!(scanned(tmp.path()), expected(&[0, 1, 2, 4, 5, 6]));
}

#[tokio::test]
async fn extra_lines_in_a_sealed_segment_never_take_the_next_segments_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = sealed_segments(tmp.path()).await;
    // A line feed inside garbage splits one line into two; numbering must still meet the next
    // segment's base, so the line that would spill over is skipped.
    let seg = tmp.path().join("00000000000000000002.jsonl");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[3] = b'\n';
    std::fs::write(&seg, bytes).unwrap();
    let mut r = ob.reader("t").unwrap();
    let got = positions_and_lines(&read_all(&mut r).await);
    assert_eq!(got, expected(&[0, 1, 4, 5, 6]));
    assert_eq!(
        ob.stats().corrupt_lines_skipped(),
        3,
        "two halves not JSON, one line beyond the next base"
    );
    assert_eq!(scanned(tmp.path()), expected(&[0, 1, 4, 5, 6]));
}

#[tokio::test]
async fn a_cut_fragment_beyond_the_next_base_does_not_push_the_reader_past_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = sealed_segments(tmp.path()).await;
    // Split into three lines, then cut inside the third: the fragment would be position 4.
    let seg = tmp.path().join("00000000000000000002.jsonl");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[3] = b'\n';
    bytes.pop();
    std::fs::write(&seg, bytes).unwrap();
    let mut r = ob.reader("t").unwrap();
    let got = positions_and_lines(&read_all(&mut r).await);
    assert_eq!(
        got,
        expected(&[0, 1, 4, 5, 6]),
        "record 4 of the next segment kept"
    );
    assert_eq!(ob.stats().corrupt_lines_skipped(), 3);
    assert_eq!(scanned(tmp.path()), expected(&[0, 1, 4, 5, 6]));
}

#[tokio::test]
async fn a_reader_resuming_inside_damage_skips_without_counting_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let ob = sealed_segments(tmp.path()).await;
    std::fs::write(
        tmp.path().join("00000000000000000002.jsonl"),
        b"{\"n\":2}\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("readers/t.pos"), b"4\n").unwrap();
    let mut r = ob.reader("t").unwrap();
    let got = positions_and_lines(&read_all(&mut r).await);
    assert_eq!(got, expected(&[4, 5, 6]));
    assert_eq!(ob.stats().missing_lines_skipped(), 0, "behind the reader");
}

/// A small tmpfs mounted over a fresh directory for a real ENOSPC; unmounted on drop. Needs
/// root (CI runs as root); refuses loudly otherwise instead of passing without the check.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test needs root to mount a tmpfs (mount said: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the file system refuses (ENOSPC).
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        for size in [1 << 16, 4096, 1] {
            while f.write_all(&vec![0u8; size]).is_ok() {}
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn enospc_mid_batch_cuts_the_partial_write_and_the_writer_recovers_when_space_returns() {
    let fs = Tmpfs::mount("256k");
    let dir = fs.path().join("outbox");
    let ob = Outbox::open(&dir, opts()).unwrap();
    ob.append(&line(0)).await.unwrap();
    let filler = fs.fill();
    // Bigger than what is left of the segment's last page: write(2) stores a prefix, then
    // fails with ENOSPC.
    let big: Vec<Vec<u8>> = (1..=1000).map(line).collect();
    let refs: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
    let err = ob.append_batch(&refs).await.unwrap_err();
    match &err {
        Error::Io { source, .. } => {
            assert_eq!(source.raw_os_error(), Some(28), "ENOSPC: {err}");
        }
        other => panic!("expected an I/O error, got {other}"),
    }
    let seg = dir.join(segment::name(0));
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        8,
        "the partial write was cut back to the last whole line"
    );
    let usage = ob.usage().unwrap();
    assert_eq!(
        usage.bytes, 8,
        "max_bytes accounting counts only kept bytes"
    );
    assert!(!usage.poisoned, "ENOSPC does not poison the writer");
    assert!(usage.no_space, "the edge is told to refuse calls");
    assert_eq!(usage.end, Position(1));

    std::fs::remove_file(filler).unwrap();
    assert!(
        !ob.usage().unwrap().no_space,
        "freed space is noticed without an append"
    );
    let span = ob.append_batch(&refs).await.unwrap();
    assert_eq!(
        span.first,
        Position(1),
        "no position lost to the failed batch"
    );
    let mut r = ob.reader("t").unwrap();
    let got = read_all(&mut r).await;
    assert_eq!(got.len(), 1001);
    for (i, record) in got.iter().enumerate() {
        assert_eq!(record.position, Position(i as u64));
        assert_eq!(record.line.as_ref(), line(i as u64).as_slice());
    }
    assert_eq!(
        ob.usage().unwrap().bytes,
        std::fs::metadata(&seg).unwrap().len()
    );
    drop(r);
    drop(ob);
    // A restart finds nothing torn.
    let ob = Outbox::open(&dir, opts()).unwrap();
    assert_eq!(ob.open_report().torn_lines_cut, 0);
    assert_eq!(ob.open_report().next, Position(1001));
}
