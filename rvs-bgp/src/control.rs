//! BIRD's control socket (the protocol `birdc` speaks), without birdc.
//!
//! Each reply line starts with a four-digit code: `DDDD-text` continues, `DDDD text`
//! ends the reply, ` text` continues the previous code; `+` lines are spontaneous. Codes
//! 0xxx are success, 1xxx/2xxx table rows and headings, 8xxx run-time errors (a bad
//! configuration file is 8002), 9xxx parse errors of the command. BIRD greets with
//! `0001 BIRD VERSION ready.` on connect.
//!
//! [`parse_reply`] and [`parse_protocols`] are plain functions; [`BirdControl`] is a small
//! blocking client with timeouts (rvsd runs it off its event loop).

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

/// A control-socket failure, with what to check.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket is missing or refuses connections.
    #[error("BIRD control socket {path}: {source} (is bird running with -s {path}?)")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Reading or writing failed (also timeouts).
    #[error("BIRD control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// BIRD closed the socket mid-reply.
    #[error("BIRD control socket {0}: closed before the reply ended")]
    Closed(PathBuf),
    /// A line that is not BIRD's reply format.
    #[error("BIRD control socket: unexpected reply line {0:?}")]
    Garbled(String),
    /// BIRD answered with an error code.
    #[error("bird: {command}: {text} (code {code})")]
    Refused {
        /// The command sent.
        command: String,
        /// BIRD's code (8xxx or 9xxx).
        code: u16,
        /// BIRD's message.
        text: String,
    },
}

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The code of the final line.
    pub code: u16,
    /// Every line's text (codes stripped), in order.
    pub lines: Vec<(u16, String)>,
}

impl Reply {
    /// Whether the final code is an error (8xxx run-time, 9xxx parse).
    pub fn is_error(&self) -> bool {
        self.code >= 8000
    }
    /// The final line's text.
    pub fn last_text(&self) -> &str {
        self.lines.last().map(|(_, t)| t.as_str()).unwrap_or("")
    }
}

/// Feeds reply lines one by one; returns the reply once a final line arrives.
#[derive(Debug, Default)]
pub struct ReplyParser {
    lines: Vec<(u16, String)>,
    code: u16,
}

impl ReplyParser {
    /// Takes one line (without its newline); `Ok(Some)` when the reply is complete.
    pub fn push(&mut self, line: &str) -> Result<Option<Reply>, ControlError> {
        if let Some(rest) = line.strip_prefix('+') {
            // Spontaneous output (e.g. `echo`), not part of any reply.
            let _ = rest;
            return Ok(None);
        }
        if let Some(rest) = line.strip_prefix(' ') {
            self.lines.push((self.code, rest.to_owned()));
            return Ok(None);
        }
        let bytes = line.as_bytes();
        if bytes.len() < 5 || !bytes[..4].iter().all(u8::is_ascii_digit) {
            return Err(ControlError::Garbled(line.to_owned()));
        }
        let code: u16 = line[..4]
            .parse()
            .map_err(|_| ControlError::Garbled(line.to_owned()))?;
        self.code = code;
        self.lines.push((code, line[5..].to_owned()));
        match bytes[4] {
            b'-' => Ok(None),
            b' ' => Ok(Some(Reply {
                code,
                lines: std::mem::take(&mut self.lines),
            })),
            _ => Err(ControlError::Garbled(line.to_owned())),
        }
    }
}

/// Parses a whole reply text (tests, fixtures).
pub fn parse_reply(text: &str) -> Result<Reply, ControlError> {
    let mut p = ReplyParser::default();
    for line in text.lines() {
        if let Some(r) = p.push(line)? {
            return Ok(r);
        }
    }
    Err(ControlError::Closed(PathBuf::new()))
}

/// One row of `show protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolState {
    /// Protocol name (`rvs_198_18_3_1`).
    pub name: String,
    /// Kind (`BGP`, `Static`, `BFD`, …).
    pub proto: String,
    /// `up`, `start`, `down`, …
    pub state: String,
    /// BIRD's info column (`Established`, `Active   Socket: Connection refused`, …).
    pub info: String,
}

impl ProtocolState {
    /// Whether this is a BGP session in state Established.
    pub fn established(&self) -> bool {
        self.proto == "BGP" && self.info.starts_with("Established")
    }
}

/// Parses the reply to `show protocols` (heading 2002, rows 1002). The columns are
/// name, protocol, table, state, since (one token: rvsd's config sets `timeformat
/// protocol "%T"`), then the info text.
pub fn parse_protocols(reply: &Reply) -> Vec<ProtocolState> {
    reply
        .lines
        .iter()
        .filter(|(code, _)| *code == 1002)
        .filter_map(|(_, row)| {
            let mut rest = row.trim_start();
            let mut cols = Vec::with_capacity(5);
            for _ in 0..5 {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                if end == 0 {
                    break;
                }
                cols.push(&rest[..end]);
                rest = rest[end..].trim_start();
            }
            if cols.len() < 4 {
                return None;
            }
            Some(ProtocolState {
                name: cols[0].to_owned(),
                proto: cols[1].to_owned(),
                state: cols[3].to_owned(),
                info: rest.trim_end().to_owned(),
            })
        })
        .collect()
}

/// A blocking control-socket client: one connection per command, bounded by a timeout.
#[derive(Debug, Clone)]
pub struct BirdControl {
    socket: PathBuf,
    timeout: Duration,
}

impl BirdControl {
    /// A client for `socket`, each command bounded by `timeout`.
    pub fn new(socket: &Path, timeout: Duration) -> BirdControl {
        BirdControl {
            socket: socket.to_owned(),
            timeout,
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `command`; returns BIRD's reply, an error reply as [`ControlError::Refused`].
    pub fn command(&self, command: &str) -> Result<Reply, ControlError> {
        let io = |source| ControlError::Io {
            path: self.socket.clone(),
            source,
        };
        let stream = UnixStream::connect(&self.socket).map_err(|source| ControlError::Connect {
            path: self.socket.clone(),
            source,
        })?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let mut reader = BufReader::new(stream.try_clone().map_err(io)?);
        let greeting = self.read_reply(&mut reader)?;
        if greeting.is_error() {
            return Err(ControlError::Refused {
                command: "connect".into(),
                code: greeting.code,
                text: greeting.last_text().to_owned(),
            });
        }
        let mut w = &stream;
        w.write_all(format!("{command}\n").as_bytes()).map_err(io)?;
        let reply = self.read_reply(&mut reader)?;
        if reply.is_error() {
            return Err(ControlError::Refused {
                command: command.to_owned(),
                code: reply.code,
                text: reply.last_text().to_owned(),
            });
        }
        Ok(reply)
    }

    fn read_reply(&self, reader: &mut impl BufRead) -> Result<Reply, ControlError> {
        let mut p = ReplyParser::default();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|source| ControlError::Io {
                    path: self.socket.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(ControlError::Closed(self.socket.clone()));
            }
            if let Some(r) = p.push(line.trim_end_matches(['\n', '\r']))? {
                return Ok(r);
            }
        }
    }

    /// `configure "FILE"`: BIRD reads `file` and applies the difference. An error names
    /// the file, line and column BIRD complained about.
    pub fn configure(&self, file: &Path) -> Result<Reply, ControlError> {
        self.command(&format!("configure \"{}\"", file.display()))
    }

    /// `show protocols`.
    pub fn protocols(&self) -> Result<Vec<ProtocolState>, ControlError> {
        Ok(parse_protocols(&self.command("show protocols")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successful_configure_reply() {
        let r =
            parse_reply("0002-Reading configuration from /run/rvs/bird.conf\n0003 Reconfigured\n")
                .expect("reply");
        assert_eq!(r.code, 3);
        assert!(!r.is_error());
        assert_eq!(r.last_text(), "Reconfigured");
        assert_eq!(r.lines.len(), 2);
    }

    #[test]
    fn a_bad_file_is_an_error_reply() {
        let r = parse_reply(
            "0002-Reading configuration from /tmp/x.conf\n8002 /tmp/x.conf:3:1 syntax error, unexpected CF_SYM_UNDEFINED\n",
        )
        .expect("reply");
        assert!(r.is_error());
        assert_eq!(r.code, 8002);
        assert!(r.last_text().starts_with("/tmp/x.conf:3:1 syntax error"));
    }

    #[test]
    fn garbled_lines_are_errors_not_panics() {
        for bad in ["", "12", "abcd efg", "0001xready", "é0001 x"] {
            let mut p = ReplyParser::default();
            assert!(p.push(bad).is_err(), "{bad:?}");
        }
        assert!(parse_reply("0002-no end\n").is_err());
    }

    #[test]
    fn show_protocols_rows_with_their_info() {
        let text = [
            "2002-Name       Proto      Table      State  Since         Info",
            "1002-device1    Device     ---        up     12:47:06.143  ",
            " rvs_vips   Static     master4    up     12:47:06.143  ",
            " rvs_198_18_3_1 BGP        ---        start  12:47:06.143  Active        Socket: Connection refused",
            " rvs_198_18_3_9 BGP        ---        up     12:47:08.001  Established   ",
            "0000 ",
        ]
        .join("\n");
        let r = parse_reply(&text).expect("reply");
        let rows = parse_protocols(&r);
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(rows[1].name, "rvs_vips");
        assert_eq!(rows[2].state, "start");
        assert!(!rows[2].established());
        assert!(rows[2].info.starts_with("Active"), "{:?}", rows[2]);
        assert!(rows[3].established(), "{:?}", rows[3]);
    }
}
