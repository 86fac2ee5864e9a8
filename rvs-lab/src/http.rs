//! The little HTTP/1.1 framing shared by the lab's responder and clients: read a head up
//! to the blank line, find headers, read a body of known length.

use std::io::{self, Read};

use anyhow::{Context, Result, bail};

/// Largest request or response head accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// Largest body accepted.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// Reads more bytes from `stream` into `buf`; returns `false` on end of stream. A read
/// timeout asks `keep_waiting` whether to try again; if not, it is a `TimedOut` error.
pub(crate) fn fill(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    keep_waiting: &mut dyn FnMut() -> bool,
) -> io::Result<bool> {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if !keep_waiting() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads until `buf` starts with a complete head and returns its length including the
/// blank line; `None` when the stream ends cleanly before any byte of a new head.
pub(crate) fn read_head(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    keep_waiting: &mut dyn FnMut() -> bool,
) -> Result<Option<usize>> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        if buf.len() > MAX_HEAD {
            bail!("head longer than {MAX_HEAD} bytes");
        }
        if !fill(stream, buf, keep_waiting).context("reading head")? {
            if buf.is_empty() {
                return Ok(None);
            }
            bail!("stream ended inside a head ({} bytes)", buf.len());
        }
    }
}

/// Reads until `buf` holds at least `len` bytes.
pub(crate) fn read_to_len(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    len: usize,
    keep_waiting: &mut dyn FnMut() -> bool,
) -> Result<()> {
    while buf.len() < len {
        if !fill(stream, buf, keep_waiting).context("reading body")? {
            bail!("stream ended after {} of {len} bytes", buf.len());
        }
    }
    Ok(())
}

/// The value of header `name` (case-insensitive) in `head`.
pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The `Content-Length` of `head`, if present; an error if it is malformed or too large.
pub(crate) fn content_length(head: &str) -> Result<Option<usize>> {
    let Some(value) = header(head, "content-length") else {
        return Ok(None);
    };
    let len: usize = value
        .parse()
        .with_context(|| format!("bad Content-Length {value:?}"))?;
    if len > MAX_BODY {
        bail!("Content-Length {len} exceeds {MAX_BODY}");
    }
    Ok(Some(len))
}

/// Whether the message asks to close the connection after it (HTTP/1.0 unless keep-alive,
/// HTTP/1.1 with `Connection: close`).
pub(crate) fn wants_close(head: &str) -> bool {
    let first = head.split("\r\n").next().unwrap_or_default();
    let connection = header(head, "connection").map(str::to_ascii_lowercase);
    let has = |token: &str| {
        connection
            .as_deref()
            .is_some_and(|c| c.split(',').any(|t| t.trim() == token))
    };
    if first.contains("HTTP/1.0") {
        !has("keep-alive")
    } else {
        has("close")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_close() {
        let head = "GET / HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 5\r\nConnection: Close\r\n\r\n";
        assert_eq!(header(head, "host"), Some("x"));
        assert_eq!(content_length(head).ok().flatten(), Some(5));
        assert!(wants_close(head));
        assert!(!wants_close("GET / HTTP/1.1\r\n\r\n"));
        assert!(wants_close("GET / HTTP/1.0\r\n\r\n"));
        assert!(!wants_close(
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(content_length("X 1\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn reads_pipelined_heads() -> Result<()> {
        let mut input: &[u8] = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let mut buf = Vec::new();
        let mut never = || false;
        let n = read_head(&mut input, &mut buf, &mut never)?.context("no head")?;
        assert!(buf[..n].starts_with(b"GET /a"));
        buf.drain(..n);
        let n = read_head(&mut input, &mut buf, &mut never)?.context("no head")?;
        assert!(buf[..n].starts_with(b"GET /b"));
        buf.drain(..n);
        assert_eq!(read_head(&mut input, &mut buf, &mut never)?, None);
        Ok(())
    }
}
