//! `[flows]`: what a director does with a packet of a connection it never saw (a mid-flow
//! TCP segment: no SYN, no connection entry), which ECMP re-hashing produces.
//!
//! ```toml
//! [flows]
//! sloppy_tcp = "auto"   # IPVS's sysctl; "auto" = on when [bgp] announces the VIPs (ECMP)
//! second_chance = 0     # seconds an mh service's previous table is kept after a change
//! ```

use serde::{Deserialize, Serialize};

/// The longest second-chance window accepted (IPVS's ESTABLISHED timeout, 900 s, is the
/// longest a connection the old table placed may stay idle; a day bounds typos).
pub const MAX_SECOND_CHANCE_SECS: u32 = 86_400;

/// IPVS's `sloppy_tcp` sysctl, for rvs's hash schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SloppyTcp {
    /// Off on a single director (IPVS's default, sloppy_tcp = 0), on when `[bgp]` is set.
    #[default]
    Auto,
    /// `true`: mid-flow TCP packets of mh, sh and dh services are scheduled and forwarded.
    #[serde(rename = "true")]
    On,
    /// `false`: they are passed to the kernel, as IPVS with sloppy_tcp = 0.
    #[serde(rename = "false")]
    Off,
}

/// `[flows]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Flows {
    /// Whether mid-flow TCP packets of the hash schedulers are scheduled (see [`SloppyTcp`]).
    #[serde(with = "sloppy_serde")]
    pub sloppy_tcp: SloppyTcp,
    /// Seconds an mh service's previous lookup table is kept after its servers change; a
    /// mid-flow packet in that window goes to the previous table's server. 0 = off.
    pub second_chance: u32,
}

impl Flows {
    /// Whether every setting has its default (the section is then not written out).
    pub fn is_default(&self) -> bool {
        *self == Flows::default()
    }

    /// Whether sloppy_tcp is on, given whether the VIPs are announced over BGP (ECMP).
    pub fn sloppy_tcp_on(&self, ecmp: bool) -> bool {
        match self.sloppy_tcp {
            SloppyTcp::Auto => ecmp,
            SloppyTcp::On => true,
            SloppyTcp::Off => false,
        }
    }

    /// Checks the window's range.
    pub fn validate(&self) -> Result<(), String> {
        if self.second_chance > MAX_SECOND_CHANCE_SECS {
            return Err(format!(
                "[flows] second_chance {} is longer than a day ({MAX_SECOND_CHANCE_SECS} s)",
                self.second_chance
            ));
        }
        Ok(())
    }
}

/// `sloppy_tcp` as TOML writes it: `true`, `false` or `"auto"`.
mod sloppy_serde {
    use super::SloppyTcp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Word(String),
    }

    pub fn serialize<S: Serializer>(v: &SloppyTcp, s: S) -> Result<S::Ok, S::Error> {
        match v {
            SloppyTcp::Auto => s.serialize_str("auto"),
            SloppyTcp::On => s.serialize_bool(true),
            SloppyTcp::Off => s.serialize_bool(false),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SloppyTcp, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(SloppyTcp::On),
            Raw::Bool(false) => Ok(SloppyTcp::Off),
            Raw::Word(w) if w == "auto" => Ok(SloppyTcp::Auto),
            Raw::Word(w) => Err(D::Error::custom(format!(
                "sloppy_tcp = \"{w}\": expected true, false or \"auto\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Flows, String> {
        #[derive(Deserialize)]
        struct F {
            flows: Flows,
        }
        toml::from_str::<F>(text)
            .map(|f| f.flows)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn auto_follows_ecmp_and_booleans_override() {
        let auto = parse("[flows]\n").expect("empty");
        assert_eq!(auto, Flows::default());
        assert!(!auto.sloppy_tcp_on(false), "IPVS's default on one director");
        assert!(auto.sloppy_tcp_on(true), "on behind ECMP");
        let on = parse("[flows]\nsloppy_tcp = true\n").expect("true");
        assert!(on.sloppy_tcp_on(false));
        let off = parse("[flows]\nsloppy_tcp = false\nsecond_chance = 120\n").expect("false");
        assert!(!off.sloppy_tcp_on(true));
        assert_eq!(off.second_chance, 120);
        assert_eq!(
            parse("[flows]\nsloppy_tcp = \"auto\"\n").expect("auto"),
            Flows::default()
        );
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let e = parse("[flows]\nsloppy_tcp = \"yes\"\n").unwrap_err();
        assert!(e.contains("sloppy_tcp"), "{e}");
        assert!(parse("[flows]\nsloppy = true\n").is_err());
        let long = Flows {
            second_chance: MAX_SECOND_CHANCE_SECS + 1,
            ..Flows::default()
        };
        assert!(long.validate().unwrap_err().contains("second_chance"));
    }

    #[test]
    fn round_trips_through_toml() {
        for f in [
            Flows::default(),
            Flows {
                sloppy_tcp: SloppyTcp::On,
                second_chance: 30,
            },
            Flows {
                sloppy_tcp: SloppyTcp::Off,
                second_chance: 0,
            },
        ] {
            #[derive(Serialize)]
            struct F {
                flows: Flows,
            }
            let text = toml::to_string(&F { flows: f }).expect("serialize");
            assert_eq!(parse(&text).expect("parse back"), f, "{text}");
        }
    }
}
