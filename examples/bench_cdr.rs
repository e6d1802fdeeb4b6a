//! CDR ingest end to end (parse, normalize, pseudonymize, correlate, outbox append with fsync)
//! beside a bare `csv` parse of the same file, in the same run.
//!
//! `cargo run --release --example gen_cdr -- 1000000 /tmp/cdr-1m.csv`
//! `cargo run --release --example bench_cdr -- /tmp/cdr-1m.csv`

use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

use calltrackd::cdr::After;
use calltrackd::{config, daemon};

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: bench_cdr FILE")?);

    let t = Instant::now();
    let mut rdr = csv::ReaderBuilder::new().from_path(&path)?;
    let mut rec = csv::ByteRecord::new();
    let mut n = 0u64;
    while rdr.read_byte_record(&mut rec)? {
        n += 1;
    }
    let bare = n as f64 / t.elapsed().as_secs_f64();
    println!("bare csv parse: {n} rows, {bare:.0} rows/s");

    // gen_cdr's called numbers are +4930555100 00..49: make them all tracking numbers.
    let data = tempfile::tempdir()?;
    let mut text = format!(
        "data_dir = \"{}\"\n[numbers]\ndefault_region = \"DE\"\n",
        data.path().display()
    );
    for i in 0..50 {
        text.push_str(&format!(
            "[[numbers.pool]]\nnumber = \"+49305551{i:04}\"\ncampaign = \"bench\"\n"
        ));
    }
    text.push_str("[campaigns.bench]\ndestination = \"tel:+493055509000\"\ndisclosure = \"external\"\nexternal_uri = \"sip:a@b.example\"\n");
    let config = config::parse(&text)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    let keyring = daemon::open_keyring(&config)?;
    let outbox = daemon::open_outbox(&config)?;
    let recorder =
        Arc::new(daemon::recorder(keyring, &config)?.with_correlator(daemon::correlator(&config)));
    let ingestor = daemon::ingestor(&config, recorder, outbox.clone())?;
    let format = ingestor
        .format("sipcarrier-csv")
        .cloned()
        .ok_or("preset missing")?;

    let t = Instant::now();
    let job = calltrackd::cdr::Job {
        feed: "bench",
        format: &format,
        after: After::Keep,
        marker: false,
        batch_size: calltrackd::cdr::service::BATCH_ROWS,
        // gen_cdr's times may be far in the past: the bench measures ingest, not the window.
        limits: calltrackd::cdr::Limits {
            max_past_days: 36500,
            ..ingestor.limits()
        },
        final_tail: true,
    };
    let report = ingestor.ingest(&path, &job, runtime.handle().clone())?;
    let secs = t.elapsed().as_secs_f64();
    let events = ingestor.counts.events.get();
    let full = report.rows_ok as f64 / secs;
    println!(
        "end to end: {} rows ({} events, {} quarantined, {} duplicates) in {secs:.2} s, {full:.0} rows/s",
        report.rows_ok, events, report.rows_quarantined, report.duplicates
    );
    println!("ratio end-to-end / bare parse: {:.1}%", 100.0 * full / bare);
    Ok(())
}
