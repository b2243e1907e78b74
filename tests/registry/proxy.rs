//! A small HTTP proxy in front of the real registry that counts the bytes of
//! blobs it serves and injects faults: ranges refused (the whole blob sent
//! instead), a byte flipped in a range, a connection cut in the middle of a
//! range. One request per connection (it answers `Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the proxy does to the blob ranges it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Passes everything through.
    None,
    /// Drops the `Range` header: the registry answers with the whole blob.
    NoRanges,
    /// Flips one byte in the middle of every range response but the first
    /// (the first is the table of contents).
    FlipAfterFirstRange,
    /// Cuts the connection halfway through every range response whose
    /// range starts in `[from, to)`.
    CutRangesIn(u64, u64),
    /// Closes every connection at once, answering nothing (the registry
    /// is unreachable).
    Down,
}

/// What the proxy counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Body bytes of blob responses (whole or ranges).
    pub blob_bytes: u64,
    /// Range requests answered with 206.
    pub ranges: u64,
    /// Whole-blob responses (200 to a blob GET).
    pub whole_blobs: u64,
}

struct State {
    fault: Fault,
    counts: Counts,
}

/// A running proxy; it stops accepting when dropped (its thread ends with
/// the test process).
pub struct Proxy {
    pub host: String,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    /// A proxy on 127.0.0.1 in front of `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(Mutex::new(State {
            fault: Fault::None,
            counts: Counts::default(),
        }));
        let upstream = upstream.to_owned();
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (upstream, state) = (upstream.clone(), Arc::clone(&shared));
                std::thread::spawn(move || {
                    let _ = serve(client, &upstream, &state);
                });
            }
        });
        Self { host, state }
    }

    /// Injects `fault` from now on, the counts zeroed (faults count ranges
    /// from here).
    pub fn set_fault(&self, fault: Fault) {
        let mut state = self.state.lock().unwrap();
        state.fault = fault;
        state.counts = Counts::default();
    }

    /// The counts so far, and zeroes them.
    pub fn take_counts(&self) -> Counts {
        std::mem::take(&mut self.state.lock().unwrap().counts)
    }
}

/// Reads an HTTP head (request or response) up to the blank line.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(if lines.is_empty() { None } else { Some(lines) });
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn serve(client: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    if state.lock().unwrap().fault == Fault::Down {
        return client.shutdown(std::net::Shutdown::Both);
    }
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(request) = read_head(&mut reader)? else {
        return Ok(());
    };
    let fault = state.lock().unwrap().fault;
    let method = request[0].split(' ').next().unwrap_or("").to_owned();
    let range_start = header(&request, "range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|r| r.parse::<u64>().ok());
    let is_blob = request[0].contains("/blobs/sha256:");
    let mut body = Vec::new();
    if let Some(len) = header(&request, "content-length").and_then(|v| v.parse::<u64>().ok()) {
        (&mut reader).take(len).read_to_end(&mut body)?;
    }
    let mut out = vec![request[0].clone()];
    for line in &request[1..] {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if name == "connection" || (name == "range" && fault == Fault::NoRanges) {
            continue;
        }
        out.push(line.clone());
    }
    out.push("Connection: close".into());
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(format!("{}\r\n\r\n", out.join("\r\n")).as_bytes())?;
    up.write_all(&body)?;
    let mut up_reader = BufReader::new(up);
    let Some(response) = read_head(&mut up_reader)? else {
        return Ok(());
    };
    let status = response[0].split(' ').nth(1).unwrap_or("").to_owned();
    let mut payload = Vec::new();
    if method != "HEAD" {
        up_reader.read_to_end(&mut payload)?;
    }
    let mut cut = None;
    if is_blob && method == "GET" {
        let mut st = state.lock().unwrap();
        st.counts.blob_bytes += payload.len() as u64;
        if status == "206" {
            st.counts.ranges += 1;
            let nth = st.counts.ranges;
            match fault {
                Fault::FlipAfterFirstRange if nth > 1 && !payload.is_empty() => {
                    let at = payload.len() / 2;
                    payload[at] ^= 0x40;
                }
                Fault::CutRangesIn(from, to)
                    if range_start.is_some_and(|s| (from..to).contains(&s)) =>
                {
                    cut = Some(payload.len() / 2);
                }
                _ => {}
            }
        } else if status == "200" {
            st.counts.whole_blobs += 1;
        }
    }
    let mut head: Vec<String> = response
        .iter()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .cloned()
        .collect();
    head.push("Connection: close".into());
    let mut client = client;
    client.write_all(format!("{}\r\n\r\n", head.join("\r\n")).as_bytes())?;
    match cut {
        Some(at) => {
            client.write_all(&payload[..at])?;
            client.shutdown(std::net::Shutdown::Both)?;
        }
        None => client.write_all(&payload)?,
    }
    Ok(())
}
