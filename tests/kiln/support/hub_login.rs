//! A person's browser, as far as the hub login needs one: raw HTTP/1.1 through the hub's proxy
//! with a cookie jar and redirects followed by hand, so a test can log in to a real JupyterHub
//! (its dummy authenticator takes any password), go through kiln's OAuth login and read each hop.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One answer: status, headers (lower-case names, every value), body (chunks joined).
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Browser {
    pub port: u16,
    pub cookies: BTreeMap<String, String>,
}

/// A body sent with `Transfer-Encoding: chunked`, joined.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Browser {
    pub fn new(port: u16) -> Browser {
        Browser {
            port,
            cookies: BTreeMap::new(),
        }
    }

    /// The `Cookie` header this browser sends.
    pub fn cookie_header(&self) -> String {
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("Cookie: {}\r\n", pairs.join("; "))
    }

    /// One request with the jar's cookies; `Set-Cookie` answers update the jar.
    pub fn request(&mut self, method: &str, path: &str, headers: &str, body: &str) -> Answer {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("the hub's proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let cookies = if self.cookies.is_empty() {
            String::new()
        } else {
            self.cookie_header()
        };
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{cookies}{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        let _ = stream.read_to_string(&mut raw);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
            .collect();
        for (_, full) in headers.iter().filter(|(k, _)| k == "set-cookie") {
            let (first, attributes) = full.split_once(';').unwrap_or((full, ""));
            if let Some((name, value)) = first.split_once('=') {
                // Only the attributes say whether a cookie is being removed: a value may well
                // contain "1970" (regression: a signed login cookie was dropped by the jar).
                let attributes = attributes.to_lowercase();
                let expired = value.is_empty()
                    || value == "\"\""
                    || attributes
                        .split(';')
                        .any(|a| a.trim() == "max-age=0" || a.contains("1970"));
                if expired {
                    self.cookies.remove(name.trim());
                } else {
                    self.cookies
                        .insert(name.trim().to_string(), value.trim().to_string());
                }
            }
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            unchunk(body)
        } else {
            body.to_string()
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// GET `path` and follow redirects on this host; the last answer and the path it came from.
    pub fn follow(&mut self, path: &str, headers: &str) -> (Answer, String) {
        let mut path = path.to_string();
        for _ in 0..12 {
            let answer = self.request("GET", &path, headers, "");
            match answer.header("location") {
                Some(to) if (300..400).contains(&answer.status) => {
                    path = local_path(to, &path);
                }
                _ => return (answer, path),
            }
        }
        panic!("more than 12 redirects from {path}");
    }

    /// Log in to the hub as `user` (the dummy authenticator), with the login form's XSRF token.
    pub fn log_in_to_hub(&mut self, user: &str) {
        let form = self.request("GET", "/hub/login", "", "");
        assert_eq!(form.status, 200, "the hub's login page: {}", form.body);
        let xsrf = form
            .body
            .split("name=\"_xsrf\"")
            .nth(1)
            .and_then(|rest| rest.split("value=\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .map(str::to_string)
            .or_else(|| self.cookies.get("_xsrf").cloned())
            .expect("the hub's login form has an _xsrf token");
        let body = format!("username={user}&password=any&_xsrf={xsrf}");
        let answer = self.request(
            "POST",
            "/hub/login",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            &body,
        );
        assert_eq!(answer.status, 302, "the hub's login: {}", answer.body);
    }
}

/// A `Location` as a path on the same host (absolute URLs lose their scheme and host; relative
/// ones are taken from the current path's folder).
pub fn local_path(location: &str, current: &str) -> String {
    if let Some(rest) = location.split_once("://").map(|(_, r)| r) {
        return rest[rest.find('/').unwrap_or(rest.len())..].to_string();
    }
    if location.starts_with('/') {
        return location.to_string();
    }
    let folder = &current[..current.rfind('/').map_or(0, |i| i + 1)];
    format!("{folder}{location}")
}
