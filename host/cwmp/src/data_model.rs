//! The two data models a CWMP device's tree follows, told apart by their root object.

/// TR-098 (`InternetGatewayDevice.`) or TR-181 (`Device.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataModel {
    Tr098,
    Tr181,
}

impl DataModel {
    pub const ALL: [Self; 2] = [Self::Tr098, Self::Tr181];

    /// The root object as a path prefix, with its dot: `InternetGatewayDevice.` or `Device.`.
    pub fn root(self) -> &'static str {
        match self {
            Self::Tr098 => "InternetGatewayDevice.",
            Self::Tr181 => "Device.",
        }
    }

    /// The root object's name, without the dot, as adapters are told it.
    pub fn root_name(self) -> &'static str {
        self.root().trim_end_matches('.')
    }

    /// The name Roost stores and shows: `tr098` or `tr181`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tr098 => "tr098",
            Self::Tr181 => "tr181",
        }
    }

    /// The model of a stored name (`tr098`, `tr181`); `None` for anything else, such as the
    /// empty name of a device whose Inform named neither root.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|model| model.name() == name)
    }

    /// The model a parameter path belongs to.
    pub fn of_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|model| path.starts_with(model.root()))
    }

    /// `path` without this model's root (`ManagementServer.URL`), if it lies under it.
    pub fn relative(self, path: &str) -> Option<&str> {
        path.strip_prefix(self.root())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_tells_its_model() {
        assert_eq!(DataModel::of_path("InternetGatewayDevice.DeviceInfo.SerialNumber"), Some(DataModel::Tr098));
        assert_eq!(DataModel::of_path("Device.DeviceInfo.SerialNumber"), Some(DataModel::Tr181));
        // A vendor root, or a name that merely begins like one, is neither.
        assert_eq!(DataModel::of_path("DeviceInfo.SerialNumber"), None);
        assert_eq!(DataModel::of_path("Devices.X"), None);
        assert_eq!(DataModel::of_path(""), None);
    }

    #[test]
    fn names_and_roots_round_trip() {
        for model in DataModel::ALL {
            assert_eq!(DataModel::from_name(model.name()), Some(model));
            assert_eq!(DataModel::of_path(model.root()), Some(model));
            assert_eq!(format!("{}.", model.root_name()), model.root());
        }
        assert_eq!(DataModel::from_name(""), None);
        assert_eq!(DataModel::Tr181.relative("Device.ManagementServer.URL"), Some("ManagementServer.URL"));
        assert_eq!(DataModel::Tr098.relative("Device.ManagementServer.URL"), None);
    }
}
