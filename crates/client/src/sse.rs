//! Incremental reader of the daemon's server-sent-event streams (docs/http.md §3).
//!
//! Owns framing only: bytes in, one JSON payload line out at a time, as soon as its newline has
//! arrived. Like Dify's parser it skips empty lines and strips an optional `data:` prefix, so a bare
//! JSON error body (a 401 envelope) is read the same way. It must not interpret envelopes.

/// Refuses a single line longer than this instead of buffering without bound.
pub const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;

/// Splits a byte stream into payload lines.
#[derive(Debug, Default)]
pub struct SseLineDecoder {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already searched for a newline without finding one.
    scanned: usize,
    /// Length of the unterminated tail of `buffer` (bytes after its last newline).
    tail_len: usize,
}

/// A line was longer than [`MAX_LINE_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("a stream line exceeds {MAX_LINE_BYTES} bytes")]
pub struct LineTooLong;

impl SseLineDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        self.buffer.extend_from_slice(bytes);
        self.tail_len = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(last) => bytes.len() - last - 1,
            None => self.tail_len + bytes.len(),
        };
        if self.tail_len > MAX_LINE_BYTES {
            return Err(LineTooLong);
        }
        Ok(())
    }

    /// The next complete, non-empty payload (without `data:`), if one has fully arrived.
    pub fn next_payload(&mut self) -> Option<String> {
        loop {
            let Some(newline) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') else {
                self.scanned = self.buffer.len();
                return None;
            };
            let end = self.scanned + newline;
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            self.scanned = 0;
            if let Some(payload) = payload_of(&line[..line.len() - 1]) {
                return Some(payload);
            }
        }
    }

    /// At end of stream: the last payload when the stream did not end with a newline.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buffer);
        self.scanned = 0;
        self.tail_len = 0;
        payload_of(&rest)
    }
}

fn payload_of(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    let text = text.strip_prefix("data:").map(str::trim_start).unwrap_or(text);
    if text.is_empty() {
        None
    } else {
        Some(text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_payloads_as_their_newline_arrives() {
        let mut decoder = SseLineDecoder::new();
        decoder.push(b"data: {\"a\"").unwrap();
        assert_eq!(decoder.next_payload(), None);
        decoder.push(b":1}\n\ndata: {\"b\":2}\n").unwrap();
        assert_eq!(decoder.next_payload().as_deref(), Some("{\"a\":1}"));
        assert_eq!(decoder.next_payload().as_deref(), Some("{\"b\":2}"));
        assert_eq!(decoder.next_payload(), None);
        assert_eq!(decoder.finish(), None);
    }

    #[test]
    fn accepts_bare_json_and_crlf_and_unterminated_tail() {
        let mut decoder = SseLineDecoder::new();
        decoder.push(b"{\"code\":-401}\r\n\r\ndata:{\"x\":1}").unwrap();
        assert_eq!(decoder.next_payload().as_deref(), Some("{\"code\":-401}"));
        assert_eq!(decoder.next_payload(), None);
        assert_eq!(decoder.finish().as_deref(), Some("{\"x\":1}"));
    }

    #[test]
    fn byte_at_a_time_gives_the_same_payloads() {
        let input = b"data: {\"k\":\"v\\u00e9\"}\n\ndata: {\"n\":2}\n\n";
        let mut decoder = SseLineDecoder::new();
        let mut out = Vec::new();
        for byte in input {
            decoder.push(&[*byte]).unwrap();
            while let Some(payload) = decoder.next_payload() {
                out.push(payload);
            }
        }
        assert_eq!(out, vec!["{\"k\":\"v\\u00e9\"}", "{\"n\":2}"]);
    }
}
