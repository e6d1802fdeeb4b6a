//! Appends/s of the outbox on this machine: `cargo run --release --example append_bench`.
//! Optional args: total lines (default 1_000_000), concurrent tasks (default 4), "sync" for
//! `Durability::Sync`.

use std::time::{Duration, Instant};

use calltrackd::outbox::{Durability, Options, Outbox};

#[tokio::main]
async fn main() -> anyhow_free::Result {
    let args: Vec<String> = std::env::args().collect();
    let total: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let tasks: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
    let durability = if args.iter().any(|a| a == "sync") {
        Durability::Sync
    } else {
        Durability::Interval
    };
    let tmp = std::env::temp_dir().join(format!("outbox-bench-{}", std::process::id()));
    let ob = Outbox::open(
        &tmp,
        Options {
            max_bytes: 8 << 30,
            sync_interval: Duration::from_millis(10),
            durability,
            ..Options::default()
        },
    )?;
    // A realistic ~300-byte minimized call event.
    let line = format!(
        "{{\"schema\":1,\"type\":\"call.redirected\",\"id\":\"0190f3a4-7b1c-7d2e-9f00-000000000000\",\
         \"ts\":\"2025-01-01T00:00:00.000Z\",\"campaign\":\"spring-sale\",\"caller\":\"{}\",\
         \"tracking\":\"+4930123456\",\"destination\":\"+4930999999\",\"status\":302}}",
        "p".repeat(64)
    );
    let per = total / tasks;
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let ob = ob.clone();
        let line = line.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..per {
                ob.append(line.as_bytes()).await?;
            }
            Ok::<_, calltrackd::outbox::Error>(())
        }));
    }
    for h in handles {
        h.await.map_err(|_| "task panicked")??;
    }
    ob.flush().await?;
    let secs = start.elapsed().as_secs_f64();
    let n = per * tasks;
    println!(
        "{durability:?}: {n} appends of {} bytes by {tasks} tasks in {secs:.2}s = {:.0} appends/s, {:.1} MiB/s, {} fdatasync rounds",
        line.len() + 1,
        n as f64 / secs,
        (n * (line.len() as u64 + 1)) as f64 / secs / (1 << 20) as f64,
        ob.stats().syncs()
    );
    drop(ob);
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}

/// Keeps the example free of extra dependencies.
mod anyhow_free {
    pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;
}
