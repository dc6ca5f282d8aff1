//! The little HTTP/1.1 the health and metrics servers speak, shared by the kernel's listeners
//! (tokio) and the data plane's host stack (smoltcp): read one request's head, answer, close.
//!
//! Like kube-proxy's Go servers, every method is answered the same way and only the path
//! matters; unlike them, one request is served per connection (`Connection: close`), which is
//! all a load balancer's health checker or a Prometheus scrape needs. Times are formatted here
//! too, as Go formats them: RFC 3339 with trimmed nanoseconds in JSON bodies, and the IMF
//! fixdate of the `Date` header (RFC 9110 §5.6.7).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most bytes of a request head read before answering 431.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// What the bytes of a connection so far make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet: read more.
    Incomplete,
    /// A complete request head.
    Request(Request),
    /// Not HTTP/1.x: answer 400 and close.
    Bad,
    /// The head is larger than [`MAX_REQUEST_HEAD`]: answer 431 and close.
    TooLarge,
}

/// The parts of a request the servers look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query (`/healthz` of `/healthz?verbose`).
    pub path: String,
}

impl Request {
    /// A `HEAD` request gets the headers of the `GET` answer and no body.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Parses a request head (request line and headers, up to the empty line). The body, if any,
/// is not read: the answer does not depend on it and the connection closes after it.
pub fn parse_request(buf: &[u8]) -> Parsed {
    let end = match find(buf, b"\r\n\r\n").or_else(|| find(buf, b"\n\n")) {
        Some(e) => e,
        None if buf.len() > MAX_REQUEST_HEAD => return Parsed::TooLarge,
        None => return Parsed::Incomplete,
    };
    if end > MAX_REQUEST_HEAD {
        return Parsed::TooLarge;
    }
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Bad;
    };
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Bad;
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(method) || !version.starts_with("HTTP/1.") {
        return Parsed::Bad;
    }
    // origin-form `/path?query`, or absolute-form `http://host/path?query`.
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Parsed::Bad;
    }
    Parsed::Request(Request {
        method: method.to_string(),
        path: path.to_string(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An answer, before it is written out with [`Response::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers after `Content-Type` and `X-Content-Type-Options`, in order.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// `Content-Type` of JSON answers.
pub const JSON: &str = "application/json";
/// `Content-Type` of plain text answers (Go's default for text).
pub const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Go's `http.NotFound`: `404 page not found`.
    pub fn not_found() -> Response {
        Response::new(404, TEXT, "404 page not found\n")
    }

    /// The answer to a request that is not HTTP/1.x.
    pub fn bad_request() -> Response {
        Response::new(400, TEXT, "400 Bad Request")
    }

    /// The answer to a request head over [`MAX_REQUEST_HEAD`].
    pub fn too_large() -> Response {
        Response::new(431, TEXT, "431 Request Header Fields Too Large")
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire: status line, headers (every answer carries
    /// `X-Content-Type-Options: nosniff`, `Date`, `Content-Length` and `Connection: close`),
    /// and the body unless `head` (the answer to a `HEAD` request).
    pub fn encode(&self, date: SystemTime, head: bool) -> Vec<u8> {
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nX-Content-Type-Options: nosniff\r\n",
            self.status,
            reason(self.status),
            self.content_type
        );
        for (name, value) in &self.headers {
            let _ = write!(s, "{name}: {value}\r\n");
        }
        let _ = write!(
            s,
            "Date: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            http_date(date),
            self.body.len()
        );
        let mut out = s.into_bytes();
        if !head {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The reason phrase of the status codes the servers use.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Seconds and nanoseconds since the Unix epoch (times before it count as the epoch).
fn unix(t: SystemTime) -> (i64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

/// `t` as Go's `time.Time` marshals to JSON in UTC (RFC 3339 with nanoseconds, trailing zeros
/// trimmed): `2026-11-23T13:49:19.12345Z`. `None` is Go's zero time, `0001-01-01T00:00:00Z`.
pub fn rfc3339_nano(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "0001-01-01T00:00:00Z".to_string();
    };
    let (secs, nanos) = unix(t);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// The `Date` header's format: `Mon, 23 Nov 2026 13:49:19 GMT`.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (secs, _) = unix(t);
    let days = secs.div_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let sod = secs.rem_euclid(86_400);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(mo - 1) as usize],
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// `s` as a JSON string literal (quotes included).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod test {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn test_parse_request() {
        let ok = |method: &str, path: &str| {
            Parsed::Request(Request {
                method: method.into(),
                path: path.into(),
            })
        };
        assert_eq!(
            parse_request(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            ok("GET", "/healthz")
        );
        assert_eq!(
            parse_request(b"POST /a/b?x=1 HTTP/1.0\r\n\r\nbody"),
            ok("POST", "/a/b")
        );
        assert_eq!(
            parse_request(b"HEAD http://10.0.0.1:32000/x?y HTTP/1.1\n\n"),
            ok("HEAD", "/x")
        );
        assert_eq!(
            parse_request(b"GET http://h HTTP/1.1\r\n\r\n"),
            ok("GET", "/")
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost:"),
            Parsed::Incomplete
        );
        assert_eq!(parse_request(b""), Parsed::Incomplete);
        assert_eq!(parse_request(b"GET /\r\n\r\n"), Parsed::Bad);
        assert_eq!(parse_request(b"GET / SPDY/3\r\n\r\n"), Parsed::Bad);
        assert_eq!(parse_request(b"G(T / HTTP/1.1\r\n\r\n"), Parsed::Bad);
        assert_eq!(parse_request(b"GET x HTTP/1.1\r\n\r\n"), Parsed::Bad);
        assert_eq!(parse_request(b"\xff / HTTP/1.1\r\n\r\n"), Parsed::Bad);
        let big = vec![b'a'; MAX_REQUEST_HEAD + 1];
        assert_eq!(parse_request(&big), Parsed::TooLarge);
    }

    #[test]
    fn test_encode_is_byte_exact() {
        let r = Response::new(503, JSON, "{}").header("X-Load-Balancing-Endpoint-Weight", "0");
        let date = at(1_795_441_759, 0);
        assert_eq!(
            String::from_utf8(r.encode(date, false)).unwrap(),
            "HTTP/1.1 503 Service Unavailable\r\n\
             Content-Type: application/json\r\n\
             X-Content-Type-Options: nosniff\r\n\
             X-Load-Balancing-Endpoint-Weight: 0\r\n\
             Date: Mon, 23 Nov 2026 13:49:19 GMT\r\n\
             Content-Length: 2\r\n\
             Connection: close\r\n\
             \r\n\
             {}"
        );
        let head = String::from_utf8(r.encode(date, true)).unwrap();
        assert!(head.ends_with("Content-Length: 2\r\nConnection: close\r\n\r\n"));
        assert_eq!(
            String::from_utf8(Response::not_found().encode(date, false)).unwrap(),
            "HTTP/1.1 404 Not Found\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             X-Content-Type-Options: nosniff\r\n\
             Date: Mon, 23 Nov 2026 13:49:19 GMT\r\n\
             Content-Length: 19\r\n\
             Connection: close\r\n\
             \r\n\
             404 page not found\n"
        );
    }

    #[test]
    fn test_times_format_as_go_does() {
        assert_eq!(rfc3339_nano(None), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(Some(at(0, 0))), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(Some(at(1_795_441_759, 120_000_000))),
            "2026-11-23T13:49:19.12Z"
        );
        assert_eq!(
            rfc3339_nano(Some(at(951_782_400, 1))),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339_nano(Some(at(4_107_542_399, 999_999_999))),
            "2100-02-28T23:59:59.999999999Z"
        );
        assert_eq!(http_date(at(0, 5)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(at(951_868_800, 0)),
            "Wed, 01 Mar 2000 00:00:00 GMT"
        );
        assert_eq!(
            http_date(at(1_795_441_759, 0)),
            "Mon, 23 Nov 2026 13:49:19 GMT"
        );
    }

    #[test]
    fn test_json_string() {
        assert_eq!(json_string("web"), "\"web\"");
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
