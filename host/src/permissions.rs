//! Who may do what: the role tiers and the one permission matrix that the REST API, the NBI and
//! the command line enforce. `docs/PERMISSIONS.md` is rendered from [`MATRIX`] (a test keeps it
//! current), so the documentation cannot drift from the code.

use serde::{Deserialize, Serialize};

/// Role tiers, lowest first: each includes the rights of those below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ReadOnly,
    Basic,
    Advanced,
    OrgAdmin,
    PlatformAdmin,
}

impl Role {
    pub const ALL: [Role; 5] = [Self::ReadOnly, Self::Basic, Self::Advanced, Self::OrgAdmin, Self::PlatformAdmin];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::Basic => "basic",
            Self::Advanced => "advanced",
            Self::OrgAdmin => "org-admin",
            Self::PlatformAdmin => "platform-admin",
        }
    }

    pub const NAMES: &'static str = "read-only, basic, advanced, org-admin, platform-admin";

    pub fn allows(self, permission: Permission) -> bool {
        self >= permission.minimum_role()
    }
}

/// Everything a caller can be allowed or refused. Reads of a device and of what hangs off it are
/// one permission: a tenant sees all of its own or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Devices, their parameters, tags, tasks and faults; presets, plugins and their settings.
    ReadFleet,
    /// Connection requests, reboot, factory reset, Wi-Fi, diagnostics, refreshes, and the tasks
    /// that do only these (`getParameterValues`, `refreshObject`, `getParameterAttributes`,
    /// `reboot`, `factoryReset`, `scheduleInform`, `configureWifi`).
    OperateDevices,
    /// Any task, any parameter; tags; deleting devices and tasks; retrying tasks.
    ConfigureDevices,
    /// Presets, plugins and plugin configuration of one's organization.
    ManageProvisioning,
    /// Claiming pending devices by serial, and pre-registering serials.
    ClaimDevices,
    /// Subscribers: create, change, delete; link devices to them (which pushes their PPPoE
    /// credentials).
    ManageSubscribers,
    /// The file store: upload and delete firmware images and configuration files.
    ManageFiles,
    /// Firmware rollouts: start, pause, resume, abort and roll back.
    ManageRollouts,
    /// Bulk actions over device queries: start and cancel (each also needs what its action's
    /// tasks need).
    ManageBulk,
    /// Organizations below one's own: create, rename, delete.
    ManageOrganizations,
    /// Users and API keys of one's subtree, up to one's own role.
    ManageUsers,
    /// Onboarding credentials CPEs present (per organization and device model).
    ManageOnboarding,
    /// Webhooks: create, change, delete, read their delivery logs and replay them.
    ManageWebhooks,
    /// The audit log of one's subtree.
    ReadAudit,
    /// Devices no organization has claimed yet.
    ReadPendingDevices,
    /// Sandbox limits of any organization's plugins.
    ManagePluginLimits,
    /// An organization's own CWMP host name (devices informing at it join the organization):
    /// the platform's, since a host name claimed by one tenant would capture another's devices.
    ManageCwmpHosts,
}

impl Permission {
    /// Every permission, in the matrix's order.
    pub const ALL: [Permission; MATRIX.len()] = {
        let mut all = [Permission::ReadFleet; MATRIX.len()];
        let mut i = 0;
        while i < MATRIX.len() {
            all[i] = MATRIX[i].0;
            i += 1;
        }
        all
    };

    pub fn minimum_role(self) -> Role {
        MATRIX.iter().find(|(permission, _, _)| *permission == self).map_or(Role::PlatformAdmin, |(_, role, _)| *role)
    }
}

/// The permission matrix: each permission, the lowest role that holds it, and what it covers.
pub const MATRIX: &[(Permission, Role, &str)] = &[
    (
        Permission::ReadFleet,
        Role::ReadOnly,
        "Read devices, parameters, tags, tasks, faults, subscribers, files, presets, plugins and plugin settings",
    ),
    (
        Permission::OperateDevices,
        Role::Basic,
        "Connection requests; reboot, factory reset, Wi-Fi, diagnostics, refresh; tasks getParameterValues, \
         refreshObject, getParameterAttributes, reboot, factoryReset, scheduleInform, configureWifi",
    ),
    (
        Permission::ConfigureDevices,
        Role::Advanced,
        "Any task and any parameter; tag and delete devices; delete and retry tasks",
    ),
    (
        Permission::ManageProvisioning,
        Role::Advanced,
        "Create, change and delete presets, plugins and plugin configuration",
    ),
    (
        Permission::ClaimDevices,
        Role::Advanced,
        "Claim pending devices by serial; pre-register serials; move devices within the subtree",
    ),
    (
        Permission::ManageSubscribers,
        Role::Advanced,
        "Create, change and delete subscribers; link devices to them and push their PPPoE credentials",
    ),
    (Permission::ManageFiles, Role::Advanced, "Upload and delete firmware images and configuration files"),
    (Permission::ManageRollouts, Role::Advanced, "Start firmware rollouts; pause, resume, abort and roll them back"),
    (Permission::ManageBulk, Role::Advanced, "Start and cancel bulk actions over device queries"),
    (
        Permission::ManageOrganizations,
        Role::OrgAdmin,
        "Create, rename and delete organizations below one's own; set the speed-test server of one's own and those below",
    ),
    (
        Permission::ManageUsers,
        Role::OrgAdmin,
        "Create, change, disable and delete users and API keys, up to one's own role",
    ),
    (Permission::ManageOnboarding, Role::OrgAdmin, "Create and delete the CWMP onboarding credentials CPEs present"),
    (
        Permission::ManageWebhooks,
        Role::OrgAdmin,
        "Create, change and delete webhooks; read their delivery logs and replay deliveries",
    ),
    (Permission::ReadAudit, Role::OrgAdmin, "Read the audit log"),
    (Permission::ReadPendingDevices, Role::PlatformAdmin, "List devices that no organization has claimed"),
    (Permission::ManagePluginLimits, Role::PlatformAdmin, "Set any organization's plugin sandbox limits"),
    (Permission::ManageCwmpHosts, Role::PlatformAdmin, "Set an organization's own CWMP host name"),
];

/// Why a grant of `role` in an organization is refused, if it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantRefused {
    #[error("a {granter} cannot grant the {role} role, which is above its own", granter = .granter.as_str(), role = .role.as_str())]
    AboveOwnRole { granter: Role, role: Role },
    #[error("the platform-admin role belongs to the platform organization only")]
    PlatformAdminOutsidePlatform,
}

/// Whether a caller holding `granter` may give `role` to a user or key of an organization
/// (`in_platform`: whether that organization is the platform's own). The same rule for the API
/// and for `roost user create` (whose caller is the platform's operator).
pub fn may_grant(granter: Role, role: Role, in_platform: bool) -> Result<(), GrantRefused> {
    if role > granter {
        return Err(GrantRefused::AboveOwnRole { granter, role });
    }
    if role == Role::PlatformAdmin && !in_platform {
        return Err(GrantRefused::PlatformAdminOutsidePlatform);
    }
    Ok(())
}

/// `docs/PERMISSIONS.md`, rendered from [`MATRIX`].
pub fn render_markdown() -> String {
    let mut out = String::from(
        "# Permissions\n\n\
         Generated from `host/src/permissions.rs` (`MATRIX`); a test fails when this file and the code differ \
         (run `ROOST_BLESS=1 cargo test -p roost permissions` to rewrite it).\n\n\
         Roles are tiers: each holds everything the ones to its left hold. A user or API key acts on its \
         organization and every organization below it, never above or beside. The REST API, the \
         GenieACS-compatible NBI and the command line enforce the same matrix.\n\n\
         | Permission |",
    );
    for role in Role::ALL {
        out.push_str(&format!(" {} |", role.as_str()));
    }
    out.push_str("\n|---|");
    for _ in Role::ALL {
        out.push_str(":-:|");
    }
    out.push('\n');
    for (permission, _, description) in MATRIX {
        out.push_str(&format!("| {description} |"));
        for role in Role::ALL {
            out.push_str(if role.allows(*permission) { " ✓ |" } else { " |" });
        }
        out.push('\n');
    }
    out.push_str(
        "\n## Grants\n\n\
         - A user or key can be given any role up to its creator's own, in the creator's organization or below.\n\
         - `platform-admin` exists only in the `platform` organization.\n\
         - Organizations are created below one's own; one's own organization and those above it cannot be \
         deleted or renamed by its members.\n\
         - Requests for another tenant's resources answer 404, as if they did not exist.\n",
    );
    out
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn every_permission_is_in_the_matrix_once() {
        let all = [
            Permission::ReadFleet,
            Permission::OperateDevices,
            Permission::ConfigureDevices,
            Permission::ManageProvisioning,
            Permission::ClaimDevices,
            Permission::ManageSubscribers,
            Permission::ManageFiles,
            Permission::ManageRollouts,
            Permission::ManageBulk,
            Permission::ManageOrganizations,
            Permission::ManageUsers,
            Permission::ManageOnboarding,
            Permission::ManageWebhooks,
            Permission::ReadAudit,
            Permission::ReadPendingDevices,
            Permission::ManagePluginLimits,
            Permission::ManageCwmpHosts,
        ];
        for permission in all {
            assert_eq!(MATRIX.iter().filter(|(p, _, _)| *p == permission).count(), 1, "{permission:?}");
        }
        assert_eq!(MATRIX.len(), all.len());
    }

    #[test]
    fn tiers_include_the_ones_below() {
        assert!(Role::Basic.allows(Permission::ReadFleet));
        assert!(!Role::ReadOnly.allows(Permission::OperateDevices));
        assert!(!Role::Basic.allows(Permission::ConfigureDevices));
        assert!(!Role::Advanced.allows(Permission::ManageUsers));
        assert!(Role::OrgAdmin.allows(Permission::ClaimDevices));
        assert!(!Role::OrgAdmin.allows(Permission::ReadPendingDevices));
        assert!(Role::PlatformAdmin.allows(Permission::ManagePluginLimits));
    }

    #[test]
    fn grants_stop_at_the_granters_role_and_platform_admin_stays_in_platform() {
        assert_eq!(may_grant(Role::OrgAdmin, Role::Advanced, false), Ok(()));
        assert_eq!(may_grant(Role::OrgAdmin, Role::OrgAdmin, false), Ok(()));
        assert_eq!(
            may_grant(Role::OrgAdmin, Role::PlatformAdmin, true),
            Err(GrantRefused::AboveOwnRole { granter: Role::OrgAdmin, role: Role::PlatformAdmin })
        );
        assert_eq!(
            may_grant(Role::PlatformAdmin, Role::PlatformAdmin, false),
            Err(GrantRefused::PlatformAdminOutsidePlatform)
        );
        assert_eq!(may_grant(Role::PlatformAdmin, Role::PlatformAdmin, true), Ok(()));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert_eq!(Role::parse("admin"), None);
    }

    /// `docs/PERMISSIONS.md` is what the code enforces.
    #[test]
    fn permissions_document_matches_the_matrix() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PERMISSIONS.md");
        let rendered = render_markdown();
        if std::env::var_os("ROOST_BLESS").is_some() {
            std::fs::write(&path, &rendered).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/PERMISSIONS.md differs from the matrix in host/src/permissions.rs; \
             run `ROOST_BLESS=1 cargo test -p roost permissions` and commit the result"
        );
    }
}
