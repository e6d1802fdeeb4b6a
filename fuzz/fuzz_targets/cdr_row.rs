//! A CDR file in each built-in preset through the streaming reader and the row mapper, then
//! the normalization `cdr::complete` applies to the numbers.
//!
//! Input: a preset-choice byte, then the file's bytes (plain or gzip, as the reader detects).
//! Properties: line numbers and offsets only grow; a mapped row's numbers, once normalized,
//! are canonical E.164; a withheld caller is never an E.164 number by accident of an empty
//! cell.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use calltrackd::call::{E164, Normalizer};
use calltrackd::cdr::{self, Format, Reader};
use libfuzzer_sys::fuzz_target;

/// Bounds the work per input: a fuzzer input is small, but a gzip bomb need not be.
const MAX_ROWS: usize = 256;

fn presets() -> &'static Vec<Format> {
    static PRESETS: OnceLock<Vec<Format>> = OnceLock::new();
    PRESETS.get_or_init(|| {
        cdr::builtin_presets()
            .expect("built-in presets validate")
            .into_values()
            .collect()
    })
}

/// One file per fuzzing process, in memory-backed `/dev/shm` when there is one.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from("/dev/shm");
        let dir = if dir.is_dir() {
            dir
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("calltrackd-fuzz-cdr-{}.csv", std::process::id()))
    })
}

fn check_number(normalizer: &Normalizer, raw: &str) {
    if let Ok(number) = normalizer.normalize(raw) {
        assert_eq!(
            number.as_str().parse::<E164>().as_ref(),
            Ok(&number),
            "a CDR number normalized to something that is not E.164"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, file)) = data.split_first() else {
        return;
    };
    let presets = presets();
    let format = &presets[usize::from(choice) % presets.len()];
    let path = scratch();
    std::fs::write(path, file).expect("scratch file is writable");
    let opened = Reader::open(path, format, None);
    // The open reader keeps the file's data; unlinking now leaves nothing behind when libFuzzer
    // exits without running destructors.
    let _ = std::fs::remove_file(path);
    let Ok(mut reader) = opened else {
        return;
    };
    let normalizer = Normalizer::new("DE").expect("DE has metadata");
    let (mut line, mut offset) = (0, 0);
    for _ in 0..MAX_ROWS {
        let Ok(Some(item)) = reader.next_item() else {
            break;
        };
        assert!(
            item.line > line && item.next_line >= item.line,
            "lines went backwards"
        );
        assert!(item.offset > offset, "offsets went backwards");
        (line, offset) = (item.line, item.offset);
        let Ok(row) = item.result else {
            continue;
        };
        if row.calling_raw.trim().is_empty() {
            assert!(
                row.caller_withheld,
                "an empty calling cell is a withheld caller"
            );
        }
        if !row.caller_withheld {
            check_number(&normalizer, &row.calling_raw);
        }
        check_number(&normalizer, &row.called_raw);
    }
});
