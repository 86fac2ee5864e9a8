//! The changes a preparation applied, kept in a JSON file so `undo` can restore exactly them.
//!
//! The default file is per network namespace (`/run/rvs/realserver-net<INODE>.json`), since
//! sysctls, addresses and links are: real servers in several namespaces of one host (a lab,
//! containers) never share one.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::Change;

/// Directory of the state files.
pub const STATE_DIR: &str = "/run/rvs";

/// What `prepare` runs have applied so far, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Applied changes, each with the value it replaced.
    pub changes: Vec<Change>,
}

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a state file.
    #[error("{path}: not an rvs-realserver state file: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// The inode number of the caller's network namespace (what `ip netns identify` compares).
pub fn netns_inode() -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata("/proc/self/ns/net")?.ino())
}

/// The default state file for the caller's network namespace.
pub fn default_path() -> std::io::Result<PathBuf> {
    Ok(Path::new(STATE_DIR).join(format!("realserver-net{}.json", netns_inode()?)))
}

impl State {
    /// Reads `path`; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<State, StateError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|source| StateError::Parse {
                path: path.to_owned(),
                source,
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes `path` atomically (a temporary file renamed over it); an empty state removes it.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_owned(),
            source,
        };
        if self.changes.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(io(e)),
                _ => Ok(()),
            };
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        // Serialising plain data with string keys cannot fail.
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_an_empty_state_removes_the_file() {
        let dir = std::env::temp_dir().join(format!("rvs-realserver-state-{}", std::process::id()));
        let path = dir.join("s.json");
        assert_eq!(
            State::load(&path).expect("missing is empty"),
            State::default()
        );
        let s = State {
            changes: vec![
                Change::AddAddress {
                    interface: "lo".into(),
                    address: "198.18.0.10".parse().expect("ip"),
                },
                Change::SetSysctl {
                    key: "net.ipv4.conf.all.arp_ignore".into(),
                    from: "0".into(),
                    to: "1".into(),
                },
            ],
        };
        s.save(&path).expect("save");
        assert_eq!(State::load(&path).expect("load"), s);
        State::default().save(&path).expect("save empty");
        assert!(!path.exists());
        std::fs::write(&path, "{\"bogus\": 1}").expect("write");
        assert!(matches!(State::load(&path), Err(StateError::Parse { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
