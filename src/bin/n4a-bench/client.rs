//! A minimal blocking HTTP/1.1 client over one keep-alive connection: what
//! the load bench (`n4a-bench serve`) and the end-to-end tests (which
//! include this file by path) use to talk to a server from outside, over a
//! real socket, without another HTTP stack. Not part of the library.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (chunked bodies decoded).
    pub body: Vec<u8>,
}

impl Response {
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive connection to one server.
pub struct Client {
    host: String,
    reader: BufReader<TcpStream>,
    bearer: Option<String>,
}

fn bad(m: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string())
}

impl Client {
    /// Connects to `addr` (`host:port`), with a 120 s read timeout.
    ///
    /// # Errors
    /// The connect failure.
    pub fn connect(addr: &str) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Client {
            host: addr.to_string(),
            reader: BufReader::new(stream),
            bearer: None,
        })
    }

    /// Sends `Authorization: Bearer TOKEN` with every request (none when
    /// `token` is `None`).
    #[must_use]
    pub fn with_bearer(mut self, token: Option<&str>) -> Client {
        self.bearer = token.map(str::to_string);
        self
    }

    /// Sends `METHOD target` and reads the whole response.
    ///
    /// # Errors
    /// I/O errors, or a response that is not HTTP/1.1.
    pub fn request(&mut self, method: &str, target: &str) -> std::io::Result<Response> {
        self.request_with(method, target, &[])
    }

    /// [`Self::request`] with extra request headers.
    ///
    /// # Errors
    /// As [`Self::request`].
    pub fn request_with(
        &mut self,
        method: &str,
        target: &str,
        extra: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        self.send(method, target, extra, &[])
    }

    /// [`Self::request_with`] with a request body (sent with its
    /// `Content-Length` when not empty).
    ///
    /// # Errors
    /// As [`Self::request`].
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n",
            self.host
        );
        if let Some(t) = &self.bearer {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.reader.get_mut().write_all(&bytes)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if let Some(len) = get("content-length") {
            let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
            body.resize(len, 0);
            self.reader.read_exact(&mut body)?;
        } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("bad chunk size"))?;
                let start = body.len();
                body.resize(start + size, 0);
                self.reader.read_exact(&mut body[start..])?;
                line.clear();
                self.reader.read_line(&mut line)?;
                if size == 0 {
                    break;
                }
            }
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// `GET target`.
    ///
    /// # Errors
    /// As [`Self::request`].
    pub fn get(&mut self, target: &str) -> std::io::Result<Response> {
        self.request("GET", target)
    }
}
