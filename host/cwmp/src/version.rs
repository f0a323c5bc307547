//! CWMP versions and their namespaces.
//!
//! 1.2, 1.3 and 1.4 share the `cwmp-1-2` namespace: 1.3 shows itself only by the
//! `SessionTimeout` header and 1.4 by `SupportedCWMPVersions`. Some firmware sends a
//! non-standard `cwmp-1-3` namespace; it is accepted and answered with `cwmp-1-2`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum CwmpVersion {
    #[default]
    V1_0,
    V1_1,
    V1_2,
    V1_3,
    V1_4,
}

impl CwmpVersion {
    pub const ALL: [Self; 5] = [Self::V1_0, Self::V1_1, Self::V1_2, Self::V1_3, Self::V1_4];

    /// The namespace to write for this version.
    pub fn namespace(self) -> &'static str {
        match self {
            Self::V1_0 => "urn:dslforum-org:cwmp-1-0",
            Self::V1_1 => "urn:dslforum-org:cwmp-1-1",
            Self::V1_2 | Self::V1_3 | Self::V1_4 => "urn:dslforum-org:cwmp-1-2",
        }
    }

    /// The version a namespace URI names, before header evidence refines 1.2 to 1.3 or 1.4.
    pub fn from_namespace(uri: &str) -> Option<Self> {
        match uri.trim() {
            "urn:dslforum-org:cwmp-1-0" => Some(Self::V1_0),
            "urn:dslforum-org:cwmp-1-1" => Some(Self::V1_1),
            "urn:dslforum-org:cwmp-1-2" => Some(Self::V1_2),
            "urn:dslforum-org:cwmp-1-3" => Some(Self::V1_3),
            "urn:dslforum-org:cwmp-1-4" => Some(Self::V1_4),
            _ => None,
        }
    }

    /// `1.0` … `1.4`, as in `SupportedCWMPVersions`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
            Self::V1_2 => "1.2",
            Self::V1_3 => "1.3",
            Self::V1_4 => "1.4",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s.trim())
    }

    /// The highest version both sides support, from a CPE's `SupportedCWMPVersions` list.
    /// `None` means there is none: the ACS answers fault 8006.
    pub fn negotiate(supported_by_cpe: &str) -> Option<Self> {
        supported_by_cpe.split(',').filter_map(Self::parse).max()
    }
}

impl fmt::Display for CwmpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_versions_share_the_1_2_namespace() {
        assert_eq!(CwmpVersion::V1_4.namespace(), "urn:dslforum-org:cwmp-1-2");
        assert_eq!(CwmpVersion::V1_3.namespace(), "urn:dslforum-org:cwmp-1-2");
        assert_eq!(CwmpVersion::from_namespace("urn:dslforum-org:cwmp-1-3"), Some(CwmpVersion::V1_3));
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(CwmpVersion::negotiate("1.0,1.1,1.2,1.3,1.4"), Some(CwmpVersion::V1_4));
        assert_eq!(CwmpVersion::negotiate(" 1.0 , 1.2"), Some(CwmpVersion::V1_2));
        assert_eq!(CwmpVersion::negotiate("2.0,1.9"), None);
    }
}
