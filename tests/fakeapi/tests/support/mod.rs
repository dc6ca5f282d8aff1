//! A deliberately plain HTTP/1.1 client over `std::net::TcpStream`, so the protocol tests see
//! the bytes a client would (status line, chunked framing) and depend on no HTTP library.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(addr).expect("connect to the fake API");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    BufReader::new(stream)
}

fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').expect("header has a colon");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    (status, headers)
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
}

/// Reads one chunk; `None` at the final zero-length chunk.
fn read_chunk(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut size_line = String::new();
    if reader.read_line(&mut size_line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed inside a chunked body",
        ));
    }
    let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
    let mut data = vec![0; size];
    reader.read_exact(&mut data)?;
    let mut crlf = [0; 2];
    reader.read_exact(&mut crlf)?;
    Ok((size > 0).then_some(data))
}

/// One request, whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut reader = send(addr, method, path, headers, body);
    let (status, headers) = read_head(&mut reader);
    let mut body = Vec::new();
    if is_chunked(&headers) {
        while let Some(chunk) = read_chunk(&mut reader).expect("chunk") {
            body.extend(chunk);
        }
    } else {
        reader.read_to_end(&mut body).expect("body");
    }
    Response {
        status,
        headers,
        body,
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

pub fn send_json(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Response {
    let body = serde_json::to_vec(body).unwrap();
    request(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        &body,
    )
}

pub fn patch(addr: SocketAddr, path: &str, content_type: &str, body: &str) -> Response {
    request(
        addr,
        "PATCH",
        path,
        &[("Content-Type", content_type)],
        body.as_bytes(),
    )
}

/// How a watch stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The final zero-length chunk: the server closed the watch on purpose.
    Clean,
    /// The connection dropped inside the body (the server died).
    Broken,
}

/// An open watch: events are read one chunk at a time as the server sends them.
pub struct Watch {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pending: Vec<u8>,
    pub ended: Option<End>,
}

impl Watch {
    pub fn open(addr: SocketAddr, path: &str) -> Watch {
        Watch::open_with(addr, path, &[])
    }

    pub fn open_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Watch {
        let mut reader = send(addr, "GET", path, headers, b"");
        let (status, headers) = read_head(&mut reader);
        assert!(
            status != 200 || is_chunked(&headers),
            "a watch is a chunked response: {headers:?}"
        );
        Watch {
            reader,
            status,
            pending: Vec::new(),
            ended: None,
        }
    }

    /// The next event, or `None` if none came within `timeout` or the stream ended (then
    /// `ended` says how).
    pub fn next_within(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).expect("a watch event is JSON"));
            }
            if self.ended.is_some() {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.reader.get_ref().set_read_timeout(Some(left)).unwrap();
            match read_chunk(&mut self.reader) {
                Ok(Some(data)) => self.pending.extend(data),
                Ok(None) => self.ended = Some(End::Clean),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(_) => self.ended = Some(End::Broken),
            }
        }
    }

    /// The next event, which must come within five seconds.
    pub fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no watch event within 5 s (ended: {:?})", self.ended))
    }

    /// The next event that is not a BOOKMARK.
    pub fn next_change(&mut self) -> Value {
        loop {
            let event = self.next();
            if event["type"] != "BOOKMARK" {
                return event;
            }
        }
    }

    /// Waits for the stream to end and says how.
    pub fn end(&mut self, timeout: Duration) -> Option<&End> {
        let deadline = Instant::now() + timeout;
        while self.ended.is_none() && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = self.next_within(left);
        }
        self.ended.as_ref()
    }
}
