//! The junk sender of `bench/flood.sh`: datagrams from one loopback address at a fixed rate,
//! paced per millisecond against an absolute schedule (a late wake-up catches up), cycling
//! through random bytes, a truncated INVITE, a friendly-scanner OPTIONS, an INVITE without
//! Call-ID and an OPTIONS whose Content-Length overruns its body. Prints `sent seconds`.
//!
//! `cargo run --release --example udp_flood -- 127.0.0.2 127.0.0.1:5060 20000 30`

use std::error::Error;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, from, to, rate, seconds] = args.as_slice() else {
        return Err("usage: udp_flood <source ip> <daemon addr> <datagrams/s> <seconds>".into());
    };
    let to: SocketAddr = to.parse()?;
    let rate: f64 = rate.parse()?;
    let seconds: f64 = seconds.parse()?;
    let socket = UdpSocket::bind((from.as_str(), 0))?;
    let me = socket.local_addr()?;
    let noise: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let junk: Vec<Vec<u8>> = vec![
        noise,
        format!("INVITE sip:+493055501000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me}\r\n")
            .into_bytes(),
        format!(
            "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-scan\r\n\
             From: <sip:100@192.0.2.1>;tag=1\r\nTo: <sip:100@192.0.2.1>\r\nCall-ID: scan\r\n\
             CSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes(),
        format!(
            "INVITE sip:+493055501000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-x\r\n\
             From: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:b@192.0.2.1>\r\nCSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes(),
        format!(
            "OPTIONS sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-y\r\n\
             Content-Length: 9999\r\n\r\nshort"
        )
        .into_bytes(),
    ];
    let start = Instant::now();
    let end = Duration::from_secs_f64(seconds);
    let mut sent: u64 = 0;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= end {
            break;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let due = (elapsed.as_secs_f64() * rate) as u64;
        while sent < due {
            #[allow(clippy::cast_possible_truncation)]
            let datagram = &junk[(sent % junk.len() as u64) as usize];
            // A full socket buffer (ENOBUFS) is a lost datagram, as on a wire.
            let _ = socket.send_to(datagram, to);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("{sent} {}", start.elapsed().as_secs_f64());
    Ok(())
}
