//! Rows per second: a bare `csv` parse vs `ingest_file` with a no-op sink, on one file.
//!
//! `cargo run --release --example bench_cdr -- /tmp/cdr-1m.csv [batch_size]`

use std::error::Error;
use std::time::Instant;

use calltrackd::cdr::dedup::Limits;
use calltrackd::cdr::ingest::{Job, ingest_file};
use calltrackd::cdr::{After, Checkpoints, Quarantine, Row, SinkError, builtin_presets};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = std::path::PathBuf::from(args.next().ok_or("usage: bench_cdr FILE [BATCH]")?);
    let batch: usize = args.next().unwrap_or_else(|| "10000".into()).parse()?;

    let t = Instant::now();
    let mut rdr = csv::ReaderBuilder::new().from_path(&path)?;
    let mut rec = csv::ByteRecord::new();
    let mut n = 0u64;
    while rdr.read_byte_record(&mut rec)? {
        n += 1;
    }
    let bare = t.elapsed().as_secs_f64();
    println!(
        "bare csv parse: {n} rows in {bare:.2} s = {:.0} rows/s",
        n as f64 / bare
    );

    let data = std::env::temp_dir().join(format!("bench-cdr-{}", std::process::id()));
    let presets = builtin_presets()?;
    let format = presets.get("sipcarrier-csv").ok_or("preset missing")?;
    let mut cp = Checkpoints::open(&data, Limits::default(), chrono::Utc::now())?;
    let mut q = Quarantine::open(&data)?;
    let job = Job {
        feed: "bench",
        format,
        after: After::Keep,
        marker: false,
        batch_size: batch,
    };
    let mut sink = |_: Vec<Row>| -> Result<(), SinkError> { Ok(()) };
    let t = Instant::now();
    let report = ingest_file(&path, &job, &mut cp, &mut q, &mut sink)?;
    let full = t.elapsed().as_secs_f64();
    println!(
        "ingest_file (batch {batch}): {} ok, {} quarantined, {} dup in {full:.2} s = {:.0} rows/s",
        report.rows_ok,
        report.rows_quarantined,
        report.duplicates,
        report.rows_ok as f64 / full
    );
    std::fs::remove_dir_all(&data)?;
    Ok(())
}
