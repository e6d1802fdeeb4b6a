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
    std::fs::write(tmp.path().join("readers/ahead.pos"), b"99\n").unwrap();
    assert!(matches!(ob.reader("ahead"), Err(Error::PositionAhead)));
    std::fs::write(tmp.path().join("readers/junk.pos"), b"x\n").unwrap();
    let err = ob.reader("junk").err().unwrap();
    assert_eq!(
        err.to_string(),
        "outbox file readers/junk.pos is corrupt: not a decimal position"
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

#[tokio::test]
async fn segment_with_missing_lines_is_reported_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Options {
        segment_bytes: 20,
        ..opts()
    };
    let ob = Outbox::open(tmp.path(), o).unwrap();
    for i in 0..5 {
        ob.append(&line(i)).await.unwrap();
    }
    // Drop one line from a sealed segment by hand.
    std::fs::write(
        tmp.path().join("00000000000000000002.jsonl"),
        b"{\"n\":2}\n",
    )
    .unwrap();
    let mut r = ob.reader("t").unwrap();
    let err = loop {
        match r.try_next_batch(10) {
            Ok(b) => assert!(!b.is_empty(), "reader stopped without noticing"),
            Err(e) => break e,
        }
    };
    assert_eq!(
        err.to_string(),
        "outbox file 00000000000000000002.jsonl is corrupt: line count does not match the next segment"
    );
    assert_eq!(
        r.position(),
        Position(0),
        "records before the error were not handed out"
    );
    let scan_err = scan(tmp.path(), Position(0))
        .unwrap()
        .find_map(Result::err)
        .unwrap();
    assert!(matches!(scan_err, Error::Corrupt { .. }));
}
