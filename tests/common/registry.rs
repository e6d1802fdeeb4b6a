//! A minimal stand-in for a Confluent Schema Registry on loopback, for the framing test: it
//! answers `POST /subjects/<subject>/versions` with an id and `GET /schemas/ids/<id>` with the
//! schema, as the real registry's REST API does, and records what it was sent. (No registry
//! ships in Debian; the framing and the consumer's decoding are what the test checks.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const SCHEMA_ID: u32 = 42;

#[derive(Debug, Clone, Default)]
pub struct Registered {
    pub subject: String,
    pub body: serde_json::Value,
}

pub struct Registry {
    pub addr: SocketAddr,
    pub registered: Arc<Mutex<Vec<Registered>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Registry {
    pub fn start() -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind registry");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let registered = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reg, flag) = (registered.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            // Bounded: stops when asked, or after two minutes whatever happens.
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &reg),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Registry {
            addr,
            registered,
            stop,
            handle: Some(handle),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What a consumer does with a framed message: the schema for an id.
    pub fn schema(&self, id: u32) -> Option<serde_json::Value> {
        let reg = self.registered.lock().expect("lock");
        (id == SCHEMA_ID)
            .then(|| reg.last())
            .flatten()
            .and_then(|r| r.body["schema"].as_str())
            .and_then(|s| serde_json::from_str(s).ok())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(stream: std::net::TcpStream, registered: &Mutex<Vec<Registered>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let answer = match path.strip_prefix("/subjects/") {
        Some(rest) if request_line.starts_with("POST") && rest.ends_with("/versions") => {
            let subject = rest.trim_end_matches("/versions").to_owned();
            let body = serde_json::from_slice(&body).unwrap_or_default();
            registered
                .lock()
                .expect("lock")
                .push(Registered { subject, body });
            format!("{{\"id\":{SCHEMA_ID}}}")
        }
        _ => String::new(),
    };
    let status = if answer.is_empty() {
        "404 Not Found"
    } else {
        "200 OK"
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
}
