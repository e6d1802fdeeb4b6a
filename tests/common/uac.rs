//! A small SIP UAC over UDP with its own RTP socket, for tests that need to time or inject media
//! (sipp cannot report RTP timing or send RFC 4733 events mid-call). Loopback only, bounded waits.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Uac {
    sip: UdpSocket,
    pub media: Arc<UdpSocket>,
    daemon: SocketAddr,
    pub call_id: String,
    branch: String,
    number: String,
    /// The From header value, without its tag.
    from: String,
    /// The To header of the last response that carried a tag.
    pub to: Mutex<Option<String>>,
    /// The INVITE, resent by Timer A until any response arrives (RFC 3261 §17.1.1.2).
    invite: Mutex<Option<Vec<u8>>>,
}

/// One received RTP packet.
#[derive(Debug, Clone)]
pub struct Packet {
    pub at: Instant,
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
}

impl Packet {
    pub fn marker(&self) -> bool {
        self.bytes[1] & 0x80 != 0
    }
    pub fn pt(&self) -> u8 {
        self.bytes[1] & 0x7f
    }
    pub fn seq(&self) -> u16 {
        u16::from_be_bytes([self.bytes[2], self.bytes[3]])
    }
    pub fn ts(&self) -> u32 {
        u32::from_be_bytes([self.bytes[4], self.bytes[5], self.bytes[6], self.bytes[7]])
    }
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.bytes[8], self.bytes[9], self.bytes[10], self.bytes[11]])
    }
}

/// Collects RTP on the UAC's media socket until stopped or quiet for long.
pub struct Receiver {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Packet>>,
}

impl Receiver {
    pub fn finish(self) -> Vec<Packet> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("receiver")
    }
}

impl Uac {
    pub fn new(daemon: SocketAddr, number: &str) -> Self {
        Self::with_media_ip(daemon, number, "127.0.0.1")
    }

    /// A UAC whose RTP socket (and the SDP's c= line) is on `media_ip`, another loopback address.
    pub fn with_media_ip(daemon: SocketAddr, number: &str, media_ip: &str) -> Self {
        Self::on(daemon, number, "127.0.0.1", media_ip)
    }

    /// A UAC signalling from `sip_ip` with its RTP on `media_ip` (both loopback addresses).
    pub fn on(daemon: SocketAddr, number: &str, sip_ip: &str, media_ip: &str) -> Self {
        let sip = UdpSocket::bind((sip_ip, 0)).expect("bind sip");
        sip.set_read_timeout(Some(Duration::from_millis(250)))
            .expect("timeout");
        let media = UdpSocket::bind((media_ip, 0)).expect("bind media");
        media
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let tag = rand_token();
        Self {
            sip,
            media: Arc::new(media),
            daemon,
            call_id: format!("uac-{tag}@127.0.0.1"),
            branch: format!("z9hG4bK-{tag}"),
            number: number.to_owned(),
            from: "<sip:+4917612345678@127.0.0.1>".to_owned(),
            to: Mutex::new(None),
            invite: Mutex::new(None),
        }
    }

    /// Uses `from` (a name-addr without tag) as the From header.
    pub fn with_from(mut self, from: &str) -> Self {
        self.from = from.to_owned();
        self
    }

    fn sip_addr(&self) -> SocketAddr {
        self.sip.local_addr().expect("addr")
    }

    pub fn media_port(&self) -> u16 {
        self.media.local_addr().expect("addr").port()
    }

    fn headers(&self, method: &str, cseq: u32, branch: &str, to: &str) -> String {
        self.headers_tagged(method, cseq, branch, to, "uac")
    }

    fn headers_tagged(&self, method: &str, cseq: u32, branch: &str, to: &str, tag: &str) -> String {
        format!(
            "Via: SIP/2.0/UDP {sent_by};branch={branch}\r\nFrom: {from};tag={tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n",
            sent_by = self.sip_addr(),
            from = self.from,
            call_id = self.call_id,
        )
    }

    fn plain_to(&self) -> String {
        format!("<sip:{}@127.0.0.1>", self.number)
    }

    /// The To of the early dialog (with the server's tag) once a response carried one.
    fn dialog_to(&self) -> String {
        self.to
            .lock()
            .expect("lock")
            .clone()
            .unwrap_or_else(|| self.plain_to())
    }

    /// Sends the INVITE with an SDP offer listing `payload_types` (e.g. "0 8 101").
    pub fn invite(&self, payload_types: &str) {
        self.invite_with(payload_types, "");
    }

    /// Like `invite`, with extra header lines (each ending in CRLF).
    pub fn invite_with(&self, payload_types: &str, extra_headers: &str) {
        let sdp = format!(
            "v=0\r\no=uac 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {}\r\nt=0 0\r\nm=audio {} RTP/AVP {payload_types}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n",
            self.media.local_addr().expect("addr").ip(),
            self.media_port()
        );
        let msg = format!(
            "INVITE sip:{}@127.0.0.1 SIP/2.0\r\n{}{extra_headers}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            self.number,
            self.headers("INVITE", 1, &self.branch, &self.plain_to()),
            sdp.len()
        );
        self.sip.send_to(msg.as_bytes(), self.daemon).expect("send");
        *self.invite.lock().expect("lock") = Some(msg.into_bytes());
    }

    /// CANCEL for the INVITE (same branch, §9.1).
    pub fn cancel(&self) {
        let msg = format!(
            "CANCEL sip:{}@127.0.0.1 SIP/2.0\r\n{}Content-Length: 0\r\n\r\n",
            self.number,
            self.headers("CANCEL", 1, &self.branch, &self.plain_to())
        );
        self.sip.send_to(msg.as_bytes(), self.daemon).expect("send");
    }

    /// ACK for a non-2xx final (same branch, To with the server's tag).
    pub fn ack(&self) {
        let to = self.dialog_to();
        let msg = format!(
            "ACK sip:{}@127.0.0.1 SIP/2.0\r\n{}Content-Length: 0\r\n\r\n",
            self.number,
            self.headers("ACK", 1, &self.branch, &to)
        );
        self.sip.send_to(msg.as_bytes(), self.daemon).expect("send");
    }

    /// PRACK for the reliable provisional numbered `rseq` (RFC 3262 §7.2), in the early dialog.
    pub fn prack(&self, rseq: u32, cseq: u32) {
        let to = self.dialog_to();
        let msg = format!(
            "PRACK sip:{}@127.0.0.1 SIP/2.0\r\n{}RAck: {rseq} 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            self.number,
            self.headers("PRACK", cseq, &format!("{}-prack{cseq}", self.branch), &to)
        );
        self.sip.send_to(msg.as_bytes(), self.daemon).expect("send");
    }

    /// SIP INFO with application/dtmf-relay inside the early dialog.
    pub fn info_digit(&self, digit: char) {
        self.info_digit_as(digit, "uac", 2);
    }

    /// SIP INFO with this From tag and CSeq: outside the dialog unless they are the call's.
    pub fn info_digit_as(&self, digit: char, from_tag: &str, cseq: u32) {
        let to = self.dialog_to();
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        let branch = format!("{}-info{cseq}{from_tag}", self.branch);
        let msg = format!(
            "INFO sip:{}@127.0.0.1 SIP/2.0\r\n{}Content-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
            self.number,
            self.headers_tagged("INFO", cseq, &branch, &to, from_tag),
            body.len()
        );
        self.sip.send_to(msg.as_bytes(), self.daemon).expect("send");
    }

    /// The next SIP response: (status, CSeq method, full text).
    pub fn response(&self) -> Option<(u16, String, String)> {
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.sip.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let cseq = text
            .lines()
            .find(|l| l.starts_with("CSeq:"))?
            .split_whitespace()
            .last()?
            .to_owned();
        if let Some(to) = text.lines().find(|l| l.starts_with("To:"))
            && to.contains("tag=")
        {
            *self.to.lock().expect("lock") = Some(to.trim_start_matches("To:").trim().to_owned());
        }
        Some((status, cseq, text))
    }

    /// The statuses of the INVITE's responses, in order, up to its final one (bounded).
    pub fn invite_statuses(&self) -> Vec<u16> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Some((status, method, _)) = self.response()
                && method == "INVITE"
            {
                seen.push(status);
                if status >= 200 {
                    break;
                }
            }
        }
        seen
    }

    /// Waits for a response with this status to this method, skipping others (bounded).
    pub fn expect(&self, status: u16, method: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        let mut timer_a = Duration::from_millis(500);
        let mut resend_at = Instant::now() + timer_a;
        while Instant::now() < deadline {
            let response = self.response();
            if response.is_some() {
                // Any response stops INVITE retransmissions.
                self.invite.lock().expect("lock").take();
            } else if Instant::now() >= resend_at {
                if let Some(invite) = self.invite.lock().expect("lock").as_ref() {
                    self.sip.send_to(invite, self.daemon).expect("resend");
                }
                timer_a *= 2;
                resend_at = Instant::now() + timer_a;
            }
            if let Some((s, m, text)) = response {
                if s == status && m == method {
                    return text;
                }
                seen.push(format!("{s} {m}"));
            }
        }
        panic!("no {status} to {method} within 10 s; got {seen:?}");
    }

    /// Starts collecting RTP; stops when finished or after `quiet` without packets.
    pub fn receive(&self, quiet: Duration) -> Receiver {
        let media = self.media.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut packets = Vec::new();
            let mut buf = [0u8; 2048];
            let mut last = Instant::now();
            let hard_stop = Instant::now() + Duration::from_secs(30);
            while !flag.load(Ordering::Relaxed) && Instant::now() < hard_stop {
                match media.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        last = Instant::now();
                        packets.push(Packet {
                            at: last,
                            from,
                            bytes: buf[..n].to_vec(),
                        });
                    }
                    Err(_) if !packets.is_empty() && last.elapsed() > quiet => break,
                    Err(_) => {}
                }
            }
            packets
        });
        Receiver { stop, handle }
    }

    /// Sends an RFC 4733 key press (three end packets, as senders do) to `to`.
    pub fn send_dtmf(&self, to: SocketAddr, digit: u8) {
        send_dtmf_from(&self.media, to, digit);
    }
}

/// An RFC 4733 key press from any socket (a forger's, say).
pub fn send_dtmf_from(socket: &UdpSocket, to: SocketAddr, digit: u8) {
    for (i, end) in [false, true, true, true].into_iter().enumerate() {
        let mut p = vec![0x80, 101, 0, i as u8, 0, 0, 0x10, 0, 0, 0, 0, 1];
        let duration: u16 = 160 * (i as u16 + 1);
        p.extend_from_slice(&[digit, if end { 0x80 | 10 } else { 10 }]);
        p.extend_from_slice(&duration.to_be_bytes());
        socket.send_to(&p, to).expect("send dtmf");
    }
}

fn rand_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    format!("{:016x}", h.finish())
}
