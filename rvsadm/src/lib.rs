//! rvsadm: the `ipvsadm` command line for rvsd.
//!
//! Everything here is sans-I/O: [`run`] takes the command line, an [`Api`] (rvsd, or a
//! test double), a [`Resolver`] and stdin, and returns what to print and the exit code.
//! The binary (`src/main.rs`) only wires the real socket client, the C library's resolver
//! and the process's streams to it.
//!
//! - [`popt`]: the option scanner ipvsadm is built with (popt), reproduced.
//! - [`args`]: ipvsadm 1.31's options, checks, messages and exit codes → [`Invocation`].
//! - [`format`]: the listings (`-L` in all forms, `-L -c`, `-S`) byte for byte.
//! - [`restore`]: `-R`'s input reader and the one atomic batch it becomes.
//! - [`exec`]: runs an invocation against rvsd and maps its errors to ipvsadm's words.
//! - [`resolve`], [`num`]: host/service names and the C parsers ipvsadm relies on.

pub mod args;
pub mod exec;
pub mod format;
pub mod num;
pub mod popt;
pub mod resolve;
pub mod restore;
pub mod usage;

pub use args::{Format, Invocation, ListRequest, ListTarget, parse};
pub use exec::{Api, Outcome, RvsOptions, run, split_rvs_options};
pub use resolve::{FileResolver, Resolver, SystemResolver};

/// A command that fails before or instead of reaching rvsd: exactly what to print on
/// stderr (with its final newline) and the exit code, as ipvsadm would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stderr}")]
pub struct Failure {
    /// The whole stderr text.
    pub stderr: String,
    /// The exit code (ipvsadm: 2 for bad arguments, 255 for refused changes, 1 for failed
    /// listings).
    pub code: i32,
}
