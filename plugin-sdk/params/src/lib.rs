//! # What the Roost host and its plugins agree on
//!
//! A plugin reads and declares parameters; the host stores them, matches patterns against them
//! and turns declarations into CWMP calls. Both sides must read a pattern, walk a tree and convert
//! a value the same way, or a provision would behave differently in its unit test
//! (`roost_plugin_sdk::testing`) than on a server. So the rules live here, once, in a crate with
//! no dependencies that builds both natively and for WebAssembly:
//!
//! - [`pattern`]: parameter path patterns (`Device.WiFi.SSID.*.SSID`, aliases `[SSID:guest]`);
//! - [`tree`]: a device's parameters in memory, and matching patterns over them;
//! - [`Value`]: a typed CWMP value (the WIT type `value`), and [`coerce`], the text and type
//!   the host sends for a declared value;
//! - [`check_tag`], and the session rules the SDK's test device mirrors ([`session`]).

pub mod pattern;
pub mod session;
pub mod tree;
mod value;

pub use value::{Value, coerce};

/// A device tag that is not 1 to 64 bytes of letters, digits, `-`, `_`, `.`, `:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTag(pub String);

impl std::fmt::Display for InvalidTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a valid tag", self.0)
    }
}

impl std::error::Error for InvalidTag {}

/// Whether `tag` is a valid device tag: 1 to 64 bytes of letters, digits, `-`, `_`, `.`, `:`.
pub fn check_tag(tag: &str) -> Result<(), InvalidTag> {
    let valid = !tag.is_empty()
        && tag.len() <= 64
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if valid { Ok(()) } else { Err(InvalidTag(tag.to_owned())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_and_plain() {
        assert_eq!(check_tag("vip-customer_2.0:a"), Ok(()));
        assert_eq!(check_tag(&"x".repeat(64)), Ok(()));
        for bad in ["", "two words", "ü", &"x".repeat(65)] {
            assert_eq!(check_tag(bad), Err(InvalidTag(bad.to_owned())), "{bad:?}");
        }
    }
}
