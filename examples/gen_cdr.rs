//! Writes an N-row CDR file in the `sipcarrier-csv` preset's shape, for benchmarks.
//!
//! `cargo run --release --example gen_cdr -- 1000000 /tmp/cdr-1m.csv`
//! Invented data: numbers in +49 30 5550xxxx / 5551xxxx, deterministic (fixed-seed LCG).

use std::error::Error;
use std::fs::File;
use std::io::{BufWriter, Write};

use chrono::{DateTime, SecondsFormat, TimeDelta};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

const STATUSES: [u16; 10] = [200, 200, 200, 200, 200, 486, 487, 480, 408, 503];

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args.next().unwrap_or_else(|| "1000".into()).parse()?;
    let out = args.next().unwrap_or_else(|| "cdr-sample.csv".into());
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&out)?);
    writeln!(
        w,
        "cdr_id,call_id,setup_time,connect_time,disconnect_time,duration_ms,from_number,to_number,sip_status,trunk_group"
    )?;
    let base = DateTime::from_timestamp(1_714_608_000, 0).ok_or("bad base time")?;
    let mut rng = Lcg(0x5eed);
    let fmt = |t: DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    for i in 0..rows {
        let setup = base + TimeDelta::milliseconds(i64::try_from(i)? * 86);
        let status = STATUSES[usize::try_from(rng.next(STATUSES.len() as u64))?];
        let ring = TimeDelta::seconds(i64::try_from(1 + rng.next(20))?);
        let (connect, end, dur) = if status == 200 {
            let talk = i64::try_from(1000 + rng.next(900_000))?;
            let c = setup + ring;
            (fmt(c), fmt(c + TimeDelta::milliseconds(talk)), talk)
        } else {
            (String::new(), fmt(setup + ring), 0)
        };
        writeln!(
            w,
            "C{i:09},{:08x}-{:04x}@sbc.example.net,{},{connect},{end},{dur},+49305550{:04},+49305551{:04},{status},tg-{}",
            rng.next(1 << 32),
            rng.next(1 << 16),
            fmt(setup),
            rng.next(10_000),
            rng.next(50),
            i % 4,
        )?;
    }
    w.flush()?;
    println!("wrote {rows} rows to {out}");
    Ok(())
}
