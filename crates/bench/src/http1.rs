//! A minimal HTTP/1.1 client for the load rows: keep-alive connections taken from a pool, a request
//! written as one buffer, the answer's body read by `Content-Length` or chunked framing and handed on
//! as it arrives. It does what a load generator has to and nothing more (no redirects, no TLS, no
//! URL parsing per request), so a row measures the server rather than the client's own machinery;
//! the same client drives the daemon and the minimal server of the ceiling rows.
//!
//! Owns: connections to one `http://host:port`, response framing. Must not: interpret bodies.

use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Keep-alive connections to one server.
pub struct Http1Pool {
    /// `host:port`.
    address: String,
    idle: Mutex<Vec<Connection>>,
}

/// One open connection with what it has read past the last response.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Bytes of `buffer` before this are consumed.
    pos: usize,
}

impl Connection {
    fn unread(&self) -> &[u8] {
        &self.buffer[self.pos..]
    }

    fn consume(&mut self, count: usize) {
        self.pos += count;
    }
}

/// Status and body of one response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Set when the body was not streamed to the caller (non-2xx answers): the whole body.
    pub body: Vec<u8>,
}

impl Http1Pool {
    /// A pool for `http://host:port` (the scheme is required; a path is ignored).
    pub fn for_url(url: &str) -> Result<Http1Pool> {
        let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("not an http:// URL: {url}"))?;
        let address = rest.split('/').next().unwrap_or(rest).to_string();
        Ok(Http1Pool { address, idle: Mutex::new(Vec::new()) })
    }

    /// The `host:port` this pool connects to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` (request line, headers, blank line and body), then calls `on_body` with each
    /// piece of a 2xx answer's body as it arrives. A broken kept-alive connection is retried once on
    /// a fresh one when nothing of the answer had arrived.
    pub async fn send(&self, request: &[u8], on_body: &mut (dyn FnMut(&[u8]) -> Result<()> + Send)) -> Result<Answer> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut connection = match reused {
            Some(mut connection) => match exchange(&mut connection, request, on_body).await {
                Ok(done) => return Ok(self.finish(connection, done)),
                Err(Failure::BeforeAnswer(_)) => self.connect().await?,
                Err(Failure::During(error)) => return Err(error),
            },
            None => self.connect().await?,
        };
        match exchange(&mut connection, request, on_body).await {
            Ok(done) => Ok(self.finish(connection, done)),
            Err(Failure::BeforeAnswer(error) | Failure::During(error)) => Err(error),
        }
    }

    async fn connect(&self) -> Result<Connection> {
        let stream = TcpStream::connect(&self.address).await.with_context(|| format!("connect {}", self.address))?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buffer: Vec::with_capacity(64 * 1024), pos: 0 })
    }

    /// Returns a connection the answer left reusable to the pool; answers the answer.
    fn finish(&self, connection: Connection, (answer, keep): (Answer, bool)) -> Answer {
        if keep {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(connection);
        }
        answer
    }
}

enum Failure {
    /// Nothing of the answer arrived (a kept-alive connection the server had closed).
    BeforeAnswer(anyhow::Error),
    During(anyhow::Error),
}

/// One request and its answer on `connection`; also says whether the connection can be kept.
async fn exchange(
    connection: &mut Connection,
    request: &[u8],
    on_body: &mut (dyn FnMut(&[u8]) -> Result<()> + Send),
) -> Result<(Answer, bool), Failure> {
    connection.buffer.clear();
    connection.pos = 0;
    connection.stream.write_all(request).await.map_err(|e| Failure::BeforeAnswer(e.into()))?;
    let head_end = loop {
        if let Some(end) = memchr::memmem::find(connection.unread(), b"\r\n\r\n") {
            break end + 4;
        }
        if connection.unread().len() > MAX_HEAD {
            return Err(Failure::During(anyhow!("response head longer than {MAX_HEAD} bytes")));
        }
        let read = fill(connection).await.map_err(Failure::During)?;
        if read == 0 {
            let error = anyhow!("connection closed before the response");
            return Err(if connection.unread().is_empty() { Failure::BeforeAnswer(error) } else { Failure::During(error) });
        }
    };
    let parsed = parse_head(&connection.unread()[..head_end]).map_err(Failure::During)?;
    connection.consume(head_end);
    let success = (200..300).contains(&parsed.status);
    let mut kept = Vec::new();
    let mut deliver = |piece: &[u8]| -> Result<()> {
        if success {
            on_body(piece)
        } else {
            kept.extend_from_slice(piece);
            Ok(())
        }
    };
    match parsed.framing {
        Framing::Length(mut left) => {
            while left > 0 {
                if connection.unread().is_empty() && fill(connection).await.map_err(Failure::During)? == 0 {
                    return Err(Failure::During(anyhow!("connection closed {left} bytes before the end of the body")));
                }
                let take = left.min(connection.unread().len());
                deliver(&connection.unread()[..take]).map_err(Failure::During)?;
                connection.consume(take);
                left -= take;
            }
        }
        Framing::Chunked => read_chunked(connection, &mut deliver).await.map_err(Failure::During)?,
    }
    let keep = parsed.keep_alive && connection.unread().is_empty();
    Ok((Answer { status: parsed.status, body: kept }, keep))
}

/// Reads the chunks of a chunked body (and its empty trailer section) from `connection`.
async fn read_chunked(connection: &mut Connection, deliver: &mut (dyn FnMut(&[u8]) -> Result<()> + Send)) -> Result<()> {
    loop {
        let line_end = loop {
            if let Some(end) = memchr::memmem::find(connection.unread(), b"\r\n") {
                break end;
            }
            if connection.unread().len() > 1024 {
                bail!("chunk size line longer than 1024 bytes");
            }
            if fill(connection).await? == 0 {
                bail!("connection closed inside a chunked body");
            }
        };
        let size_text = std::str::from_utf8(&connection.unread()[..line_end]).context("chunk size is not text")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).with_context(|| format!("bad chunk size {size_text:?}"))?;
        connection.consume(line_end + 2);
        if size == 0 {
            // Trailer section: lines up to an empty one (the daemon sends none).
            loop {
                if let Some(end) = memchr::memmem::find(connection.unread(), b"\r\n") {
                    connection.consume(end + 2);
                    if end == 0 {
                        return Ok(());
                    }
                    continue;
                }
                if fill(connection).await? == 0 {
                    bail!("connection closed inside the chunked trailer");
                }
            }
        }
        let mut left = size;
        while left > 0 {
            if connection.unread().is_empty() && fill(connection).await? == 0 {
                bail!("connection closed inside a chunk");
            }
            let take = left.min(connection.unread().len());
            deliver(&connection.unread()[..take])?;
            connection.consume(take);
            left -= take;
        }
        while connection.unread().len() < 2 {
            if fill(connection).await? == 0 {
                bail!("connection closed after a chunk");
            }
        }
        if &connection.unread()[..2] != b"\r\n" {
            bail!("chunk not followed by CRLF");
        }
        connection.consume(2);
    }
}

/// Reads more bytes into the connection's buffer; 0 at the end of the stream.
async fn fill(connection: &mut Connection) -> Result<usize> {
    // Consumed bytes are dropped before reading: at the end of a read (the usual case) by clearing,
    // otherwise by moving the unread tail to the front.
    if connection.pos == connection.buffer.len() {
        connection.buffer.clear();
    } else if connection.pos > 0 {
        connection.buffer.drain(..connection.pos);
    }
    connection.pos = 0;
    connection.buffer.reserve(64 * 1024);
    connection.stream.read_buf(&mut connection.buffer).await.context("reading the response")
}

enum Framing {
    Length(usize),
    Chunked,
}

struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
}

fn parse_head(head: &[u8]) -> Result<Head> {
    let text = std::str::from_utf8(head).context("response head is not text")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        bail!("not an HTTP/1 response: {status_line:.100}");
    }
    let status: u16 = parts.next().unwrap_or("").parse().with_context(|| format!("bad status line {status_line:.100}"))?;
    let mut framing = None;
    let mut keep_alive = version == "HTTP/1.1";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            framing = Some(Framing::Length(value.parse().with_context(|| format!("bad content-length {value:?}"))?));
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            framing = Some(Framing::Chunked);
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            keep_alive = false;
        }
    }
    // A response without framing runs to the end of the connection; the servers measured here
    // always frame theirs, so such an answer is refused rather than guessed at.
    let framing = framing.ok_or_else(|| anyhow!("response without Content-Length or chunked framing"))?;
    Ok(Head { status, framing, keep_alive })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// What every test sends; the test server answers once it has seen the body.
    const REQUEST: &[u8] = b"POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\n\r\nbody";

    /// A server answering each request on a connection with the next canned answer.
    async fn serve(answers: Vec<&'static [u8]>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0u8; 4096];
            for answer in answers {
                let mut seen = Vec::new();
                while memchr::memmem::find(&seen, b"\r\n\r\nbody").is_none() {
                    let n = stream.read(&mut buffer).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buffer[..n]);
                }
                // Written in two parts so framing is read across reads.
                let (a, b) = answer.split_at(answer.len() / 2);
                stream.write_all(a).await.unwrap();
                stream.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                stream.write_all(b).await.unwrap();
            }
        });
        format!("http://{address}/x")
    }

    #[tokio::test]
    async fn reads_chunked_and_sized_bodies_on_one_kept_connection() {
        let url = serve(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 6\r\n\r\ndenied",
        ])
        .await;
        let pool = Http1Pool::for_url(&url).unwrap();
        // Status, the pieces `on_body` saw, and the kept body of a non-2xx answer.
        let send = || async {
            let mut got = Vec::new();
            let answer = pool
                .send(REQUEST, &mut |piece| {
                    got.extend_from_slice(piece);
                    Ok(())
                })
                .await
                .unwrap();
            (answer.status, got, answer.body)
        };
        assert_eq!(send().await, (200, b"hello, world".to_vec(), Vec::new()));
        assert_eq!(send().await, (200, b"abc".to_vec(), Vec::new()));
        assert_eq!(send().await, (401, Vec::new(), b"denied".to_vec()));
    }

    #[tokio::test]
    async fn a_cut_answer_is_an_error() {
        let url = serve(vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nshort"]).await;
        let pool = Http1Pool::for_url(&url).unwrap();
        let error = pool.send(REQUEST, &mut |_| Ok(())).await.unwrap_err();
        assert!(error.to_string().contains("closed inside a chunk"), "{error}");
    }
}
