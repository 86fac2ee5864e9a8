//! `[schedulers]`: the settings IPVS's scheduler modules take as sysctls, for the locality
//! schedulers (lblc, lblcr).
//!
//! ```toml
//! [schedulers]
//! lblc_expiration = 86400   # net.ipv4.vs.lblc_expiration, seconds (IPVS's default: 24 h)
//! lblcr_expiration = 86400  # net.ipv4.vs.lblcr_expiration, seconds
//! ```
//!
//! `lblc_expiration`: an lblc destination entry unused this long is dropped by the periodic
//! check. `lblcr_expiration`: the same for lblcr's entries, and how long an lblcr server set
//! must stay unchanged before it sheds its most loaded member.

use serde::{Deserialize, Serialize};

/// IPVS's default `lblc_expiration` and `lblcr_expiration`: 24 hours.
pub const DEFAULT_EXPIRATION_SECS: u32 = 24 * 60 * 60;

/// The longest expiration accepted: the kernel's sysctl is an `int` of jiffies read in
/// seconds (`proc_dointvec_jiffies`), so at most `i32::MAX / HZ` seconds; with HZ = 1000 that
/// is 2 147 483 s, about 24 days.
pub const MAX_EXPIRATION_SECS: u32 = i32::MAX as u32 / 1000;

/// `[schedulers]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schedulers {
    /// `lblc_expiration`, seconds.
    pub lblc_expiration: u32,
    /// `lblcr_expiration`, seconds.
    pub lblcr_expiration: u32,
}

impl Default for Schedulers {
    fn default() -> Self {
        Schedulers {
            lblc_expiration: DEFAULT_EXPIRATION_SECS,
            lblcr_expiration: DEFAULT_EXPIRATION_SECS,
        }
    }
}

impl Schedulers {
    /// Whether every setting has its default (the section is then not written out).
    pub fn is_default(&self) -> bool {
        *self == Schedulers::default()
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("lblc_expiration", self.lblc_expiration),
            ("lblcr_expiration", self.lblcr_expiration),
        ] {
            if v > MAX_EXPIRATION_SECS {
                return Err(format!(
                    "[schedulers] {name} = {v}: at most {MAX_EXPIRATION_SECS} seconds (the kernel's int of jiffies)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_ipvs_and_the_section_parses() {
        let c = crate::Config::from_toml("").expect("empty");
        assert_eq!(c.schedulers, Schedulers::default());
        assert_eq!(c.schedulers.lblc_expiration, 86_400);
        let c = crate::Config::from_toml("[schedulers]\nlblcr_expiration = 5\n").expect("5 s");
        assert_eq!(c.schedulers.lblcr_expiration, 5);
        assert_eq!(c.schedulers.lblc_expiration, 86_400);
        let e = crate::Config::from_toml("[schedulers]\nlblc_expiration = 4000000\n")
            .expect_err("too long");
        assert!(e.to_string().contains("lblc_expiration"), "{e}");
        let e = crate::Config::from_toml("[schedulers]\nlblc_expire = 5\n").expect_err("unknown");
        assert!(e.to_string().contains("lblc_expire"), "{e}");
    }
}
