//! keepalived.conf import for rvs.
//!
//! Operators bring the `keepalived.conf` they run today; rvs reads it, tells them what it
//! will and will not do with every line, and runs the parts it supports.
//!
//! - [`syntax`]: the reader (comments, quotes, blocks, includes) into a tree where every
//!   word knows its file, line and column;
//! - [`model`]: the typed keepalived model of the blocks rvs understands, VRRP included;
//! - [`import`]: the mapping onto [`rvs_config::Config`] and [`rvs_health::HealthModel`];
//! - [`vrrp`]: the mapping of the VRRP blocks onto [`rvs_vrrp::VrrpConfig`].
//!
//! [`check_file`] does all three and validates the result, for `rvsd --check-config`.

#![warn(missing_docs)]

pub mod import;
pub mod model;
pub mod syntax;
pub mod vrrp;

use std::path::{Path, PathBuf};

use rvs_config::{Config, ConfigError, fwmark::MarkRule};
use rvs_health::HealthModel;

pub use model::KeepalivedConf;
pub use syntax::{Loc, SyntaxError, Warning, WarningKind};

/// Why a keepalived.conf cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A syntax error or a bad value, with file, line and column.
    #[error("{0}")]
    Syntax(#[from] SyntaxError),
    /// The imported services do not form a valid rvs configuration.
    #[error("{path}: the imported configuration is invalid: {source}")]
    Config {
        /// The main file.
        path: PathBuf,
        /// What rvs's validation said.
        source: ConfigError,
    },
}

/// Everything read from a keepalived.conf.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    /// rvs's desired state: services and real servers at their configured weights.
    pub config: Config,
    /// The health checks and their policy.
    pub health: HealthModel,
    /// The typed keepalived model (VRRP blocks included, for the VRRP implementation).
    pub keepalived: KeepalivedConf,
    /// What was read but is not acted upon, each with file and line.
    pub warnings: Vec<Warning>,
    /// Every file read, the main one first.
    pub files: Vec<PathBuf>,
}

/// Reads, maps and validates the keepalived.conf at `path` (and what it includes).
pub fn load(path: &Path) -> Result<Import, Error> {
    finish(path, syntax::parse_file(path)?)
}

/// Like [`load`], for text held in memory as if it were the file `name`.
pub fn load_str(name: &Path, text: &str) -> Result<Import, Error> {
    finish(name, syntax::parse_str(name, text)?)
}

fn finish(path: &Path, doc: syntax::Document) -> Result<Import, Error> {
    let mut warnings = doc.warnings;
    let keepalived = model::build(&doc.nodes, &mut warnings)?;
    let fwmark_services = keepalived
        .virtual_servers
        .iter()
        .any(|vs| matches!(vs.key, model::VsKey::Fwmark(_)));
    let (marks, files) = if fwmark_services {
        fwmark_rules(path)?
    } else {
        (Vec::new(), Vec::new())
    };
    let mut mapped = import::map(&keepalived, &mut warnings, &marks)?;
    for svc in &mut mapped.config.services {
        if let Some(mark) = svc.fwmark {
            svc.matches = rvs_config::fwmark::rules_of(&marks, mark);
        }
    }
    mapped.config.fwmark_rules = marks;
    // Report in file order: the reader's, the model's and the importer's warnings mixed.
    warnings.sort_by(|a, b| a.loc.cmp(&b.loc));
    mapped.config.validate().map_err(|source| Error::Config {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Import {
        config: mapped.config,
        health: mapped.health,
        keepalived,
        warnings,
        files: doc.files.into_iter().chain(files).collect(),
    })
}

/// The file beside a keepalived.conf that holds the classification rules of its
/// `virtual_server fwmark N` services (keepalived never defines them: iptables/nft do).
pub const FWMARK_RULES_FILE: &str = "rvs-fwmark.toml";

/// Reads [`FWMARK_RULES_FILE`] beside `path` (`[[fwmark_rule]]` and/or `[fwmark_import]`),
/// when it exists: the rules and the files read.
fn fwmark_rules(path: &Path) -> Result<(Vec<MarkRule>, Vec<PathBuf>), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file = dir.join(FWMARK_RULES_FILE);
    let invalid = |msg: String| Error::Config {
        path: path.to_path_buf(),
        source: ConfigError::Invalid(msg),
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        // No rules: each fwmark service is left out with a warning (import.rs).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(invalid(format!("{}: {e}", file.display()))),
    };
    let read = std::cell::RefCell::new(vec![file.clone()]);
    let rules = Config::from_toml_reading(&text, |p| {
        let f = dir.join(p);
        read.borrow_mut().push(f.clone());
        std::fs::read_to_string(f)
    })
    .map_err(|e| invalid(format!("{}: {e}", file.display())))?;
    if !rules.services.is_empty() {
        return Err(invalid(format!(
            "{}: holds only [[fwmark_rule]] and [fwmark_import]; the services are keepalived.conf's",
            file.display()
        )));
    }
    Ok((rules.fwmark_rules, read.into_inner()))
}

/// Validates a keepalived.conf without applying it: the rvs configuration it maps to, its
/// health model and the warnings (for `rvsd --check-config`).
pub fn check_file(path: &Path) -> Result<(Config, HealthModel, Vec<Warning>), Error> {
    let i = load(path)?;
    Ok((i.config, i.health, i.warnings))
}
