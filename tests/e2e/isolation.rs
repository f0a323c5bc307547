//! The isolation proof: every operation of `/api/v1` and `/nbi` — the list comes from the live
//! server's OpenAPI document, so a new route cannot escape — called as every role of a parent ISP
//! and of its two sibling children (users, and API keys on both `/api/v1` and `/nbi`) and as the
//! platform administrator, on resources of each organization (and on the platform's own and
//! unclaimed ones). Each answer must have the exact status the permission matrix and the handler
//! give, and no answer — success or error, item or count — may carry an identifier of a tenant
//! the caller does not cover; what a refused call would have done must not have happened (and
//! what an accepted one did must have). Every route is also called with no credentials (401),
//! and an `Idempotency-Key` reused by another tenant replays nothing. Then the CWMP side: a device
//! stays in the organization that onboarded it whatever URL or Host it later informs at, one
//! device's credential opens no session for another, one tenant's onboarding credential onboards
//! nothing into another, and one tenant's presets run on none of another's devices.
//!
//! Every fixture carries its organization's token (`qplt` the platform's, `qpar` the parent's,
//! `qalf` and `qbrv` the children's) in its serial, name, email or value, so "nothing of a
//! tenant the caller does not cover" is a plain search of the answer for those tokens, the
//! organizations' names, and their slugs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use base64::Engine;
use reqwest::{Method, StatusCode};
use roost::permissions::{Permission as P, Role};
use roost::store::orgs::Scope;
use roost_tests::on_both_backends;

use super::*;

const XML: (&str, &str) = ("Content-Type", "text/xml");
const OUI: &str = "00D09E";
const PRODUCT_CLASS: &str = "IsoBox";
const CPE_PASSWORD: &str = "an onboarding password";
const SOFTWARE_VERSION: &str = "InternetGatewayDevice.DeviceInfo.SoftwareVersion";

// ---------------------------------------------------------------------------------------------
// The tenants.

/// The organization tree of the proof: the platform, a parent ISP `isp` with two sibling
/// children `isp-a` and `isp-b`, and a region below each child. As a target, `Platform` also
/// stands for what no tenant owns: the platform's own objects and unclaimed devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Org {
    Platform,
    Isp,
    IspA,
    IspB,
    SubA,
    SubB,
}

use Org::{Isp, IspA, IspB, Platform, SubA, SubB};

/// Organizations that own fixtures.
const OWNERS: [Org; 4] = [Platform, Isp, IspA, IspB];
const TENANTS: [Org; 3] = [Isp, IspA, IspB];
const ALL_ORGS: [Org; 6] = [Platform, Isp, IspA, IspB, SubA, SubB];
const ROLES: [Role; 4] = [Role::ReadOnly, Role::Basic, Role::Advanced, Role::OrgAdmin];

impl Org {
    fn slug(self) -> &'static str {
        match self {
            Platform => "platform",
            Isp => "isp",
            IspA => "isp-a",
            IspB => "isp-b",
            SubA => "sub-qalf",
            SubB => "sub-qbrv",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Platform => "",
            Isp => "Umbrella Networks",
            IspA => "Alpha Fibre",
            IspB => "Bravo Wireless",
            SubA => "Alpha North",
            SubB => "Bravo North",
        }
    }

    /// The token every identifier of the organization's family carries.
    fn token(self) -> &'static str {
        match self {
            Platform => "qplt",
            Isp => "qpar",
            IspA | SubA => "qalf",
            IspB | SubB => "qbrv",
        }
    }

    fn upper(self) -> String {
        self.token().to_uppercase()
    }

    fn parent(self) -> Option<Org> {
        match self {
            Platform => None,
            Isp => Some(Platform),
            IspA | IspB => Some(Isp),
            SubA => Some(IspA),
            SubB => Some(IspB),
        }
    }

    /// Whether a grant on `self` covers `other`: itself or below it.
    fn covers(self, other: Org) -> bool {
        let mut at = Some(other);
        while let Some(org) = at {
            if org == self {
                return true;
            }
            at = org.parent();
        }
        false
    }

    fn by_slug(slug: &str) -> Option<Org> {
        ALL_ORGS.into_iter().find(|o| o.slug() == slug)
    }

    /// The serial of the organization's fixture device (the platform's: an unclaimed one).
    fn serial(self) -> String {
        format!("SN{}0001", self.upper())
    }

    fn device_id(self) -> String {
        roost_cwmp::device_id::device_id(OUI, PRODUCT_CLASS, &self.serial())
    }

    /// The software version the fixture device reports.
    fn firmware(self) -> String {
        format!("fw-{}", self.serial().to_lowercase())
    }

    fn maker(self) -> String {
        format!("Isolation Labs {}", self.upper())
    }

    fn preset(self) -> String {
        format!("preset-{}", self.token())
    }

    fn plugin(self) -> String {
        if self == Platform { "plugin-platform".into() } else { format!("plugin-{}", self.token()) }
    }

    fn credential(self) -> String {
        format!("cpe-{}", self.token())
    }

    /// The username of the organization's fixture subscriber.
    fn subscriber(self) -> String {
        format!("sub-{}", self.token())
    }

    fn preregistration(self) -> String {
        format!("PRE-{}-1", self.upper())
    }

    fn email(self, role: Role) -> String {
        format!("{}@{}.example", role.as_str(), self.token())
    }

    /// A user of the organization that never calls: the target of the calls on users.
    fn member(self) -> String {
        format!("member@{}.example", self.token())
    }

    fn config_value(self) -> String {
        format!("value-{}", self.token())
    }

    /// The plugin-limit overrides the platform gives the organization.
    fn limits(self) -> JsonValue {
        match self {
            Isp => json!({"max_log_messages": 201}),
            IspA => json!({"max_log_messages": 202}),
            IspB => json!({"max_log_messages": 203}),
            _ => json!({}),
        }
    }
}

/// Families whose identifiers a caller may see only if its organization covers them.
const FAMILIES: [Org; 4] = [Platform, Isp, IspA, IspB];

/// What of another tenant's a response carries, for a caller in `caller` (`None`: a caller
/// with no credentials, who covers nothing): its token, its organizations' names, its slug (as a
/// whole word). `echoes` (what the request itself said) are taken out first: repeating the
/// caller's own input confirms nothing.
fn leaks(text: &str, echoes: &[String], caller: Option<Org>) -> Vec<String> {
    let mut text = text.to_owned();
    let covers = |family: Org| caller.is_some_and(|c| c.covers(family));
    // A child's own organization names its parent: that much of the parent it may know.
    if let Some(parent) = caller.and_then(Org::parent) {
        text = text.replace(&format!("\"parent\":\"{}\"", parent.slug()), "\"parent\":\"(own parent)\"");
    }
    let mut echoes: Vec<&String> = echoes.iter().filter(|e| e.len() >= 3).collect();
    echoes.sort_by_key(|e| std::cmp::Reverse(e.len()));
    for echo in echoes {
        text = text.replace(echo.as_str(), "(echo)");
    }
    let lower = text.to_lowercase();
    let mut found = Vec::new();
    for family in FAMILIES.into_iter().filter(|f| !covers(*f)) {
        if lower.contains(family.token()) {
            found.push(format!("token {:?}", family.token()));
        }
        if family == Platform {
            // The platform's slug is every tenant's to see (its plugins are everyone's).
            continue;
        }
        for org in ALL_ORGS.into_iter().filter(|o| o.token() == family.token()) {
            if text.contains(org.name()) {
                found.push(format!("name {:?}", org.name()));
            }
        }
        if contains_word(&text, family.slug()) {
            found.push(format!("slug {:?}", family.slug()));
        }
    }
    found
}

/// Whether `word` occurs in `text` not as part of a longer slug (`isp` is not in `isp-a`).
fn contains_word(text: &str, word: &str) -> bool {
    let slug_char = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    text.match_indices(word)
        .any(|(at, _)| !slug_char(text[..at].chars().next_back()) && !slug_char(text[at + word.len()..].chars().next()))
}

// ---------------------------------------------------------------------------------------------
// The callers.

/// Who calls: a user (JWT) or an API key, of an organization, with a role.
#[derive(Debug, Clone)]
struct Who {
    label: String,
    org: Org,
    role: Role,
    token: String,
    key: bool,
    user_id: Option<i64>,
}

impl Who {
    fn can(&self, permission: P) -> bool {
        self.role.allows(permission)
    }
}

/// One call of one row: the organization the target belongs to (or that the body names), and
/// whether the target is the caller itself.
#[derive(Debug, Clone, Copy)]
struct Case {
    target: Org,
    own: bool,
}

/// 403 when the caller's role lacks `permission`.
fn need(who: &Who, permission: P) -> Option<u16> {
    (!who.can(permission)).then_some(403)
}

/// 404 when the target is not in the caller's subtree: another tenant's id is not confirmed.
fn seen(who: &Who, case: &Case) -> Option<u16> {
    (!who.org.covers(case.target)).then_some(404)
}

/// 400 when a body names an organization outside the caller's subtree.
fn named(who: &Who, case: &Case) -> Option<u16> {
    (!who.org.covers(case.target)).then_some(400)
}

/// 404 unless the target is the caller's own organization's (presets, per organization).
fn own(who: &Who, case: &Case) -> Option<u16> {
    (case.target != who.org).then_some(404)
}

// ---------------------------------------------------------------------------------------------
// The table.

/// Which targets a row is called on, for each caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Targets {
    /// Once, on nothing of anyone's in particular.
    Once,
    /// On the fixture of each of the platform, the parent and both children.
    Owners,
    /// On each tenant's fixture.
    Tenants,
    /// On each organization of the tree (regions too).
    Orgs,
    /// On each owner's fixture, and on the caller itself.
    OwnersAndSelf,
}

/// What fills a row's path parameters (and query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    None,
    /// The target's fixture device.
    Device,
    /// The target's fixture device and a tag it does not have yet.
    DeviceNewTag,
    /// A device made for this call (the platform's: an unclaimed one).
    FreshDevice,
    /// The target's fixture device and a tag given it for this call.
    FreshTag,
    /// The target's fixture task (pending).
    Task,
    FreshTask,
    FreshFaultedTask,
    FreshFault,
    Plugin,
    FreshPlugin,
    /// A plugin name (configuration is per organization, of any name).
    PluginName(&'static str),
    Preset,
    FreshPreset,
    /// The target's fixture preset, named with `?org=` the target.
    PresetOf,
    /// A preset made for this call in the target, named with `?org=` the target (written by a
    /// PUT, removed by a DELETE).
    FreshPresetOf,
    /// The target organization's slug.
    Slug,
    /// An empty organization made below the target for this call.
    FreshOrgBelow,
    /// The target's member (a read-only user that never calls), or the caller itself.
    User,
    FreshUser,
    FreshKey,
    FreshPreregistration,
    FreshCredential,
    /// The target's fixture subscriber.
    Subscriber,
    FreshSubscriber,
    /// The target's fixture file of the file store.
    File,
    FreshFile,
    /// `?name=<new>` (a file upload).
    FileUpload,
    /// A new file's name, in the path (GenieACS's `PUT /files/<name>`).
    NbiFileUpload,
    /// The name of a file made in the target for this call.
    FreshFileName,
    /// The target's fixture rollout (paused, of no device).
    Rollout,
    /// A paused rollout of no device made in the target for this call.
    FreshRollout,
    /// The target's fixture bulk action (of no device, cancelled).
    Bulk,
    /// The target's fixture webhook (to a closed loopback port).
    Webhook,
    /// The target's fixture webhook and a delivery of its log.
    WebhookDelivery,
    /// A webhook made for this call in the target.
    FreshWebhook,
    /// A device made for this call, whose tasks tell whether an action queued one.
    FreshActionDevice,
    /// `?org=<slug>`.
    OrgQuery,
    /// `?query={"_deviceId._SerialNumber": <the target's serial>}`.
    SerialQuery,
    /// `?query={"device": <the target's device>}`.
    DeviceQuery,
    /// `?serial_number=`, `?tag=`, `?param.<SoftwareVersion>=` of the target's device.
    SerialFilter,
    TagFilter,
    ParameterFilter,
    /// `?query=` of the NBI by a `$regex` on the id, by tag, by a parameter's value.
    RegexQuery,
    TagQuery,
    ParameterQuery,
    /// `?query={"name": "reboot"}`.
    NameQuery,
    /// `?name=<new>&version=1.0.0`.
    Upload,
    /// `?name=<the target's plugin's name>&version=1.0.0`.
    UploadNameOf,
    /// A preset name new to the caller's organization.
    NewPresetName,
}

/// The request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    /// `{"org": <the target's slug>}`.
    SameOrg,
    Reboot,
    SetParameter,
    Preset,
    /// The target organization's current name (renaming it to itself).
    OrgName,
    /// An external TR-143 test server for the target organization.
    SpeedTestServer,
    /// The target's current plugin-limit overrides.
    Limits,
    Config,
    NewOrg,
    /// A new organization below the target with a CWMP host name of its own.
    NewOrgWithHost,
    /// A new CWMP host name for the target.
    Host,
    /// A preset whose provision is the target's plugin.
    ProvisionOf,
    NewUser,
    Enable,
    RoleBasic,
    NewKey,
    /// A claim of a device made unclaimed for this call, into the target.
    Claim,
    /// A claim, into the caller's own organization, of the target's fixture device.
    ClaimAnothers,
    NewPreregistration,
    NewCredential,
    Wasm,
    /// The bytes of a file to store (the plugin's, as good as any).
    FileBytes,
    /// A rollout of the target's fixture file (which has no version: refused with 422 once
    /// allowed) to the target's devices.
    RolloutOfFile,
    /// A bulk reboot of the target's devices of a tag none has (refused with 422 once allowed).
    BulkNowhere,
    /// A webhook of the target's, to a closed loopback port.
    NewWebhook,
    /// A change of a webhook's description.
    WebhookDescription,
    /// A replay of the last hour.
    ReplayRange,
    /// A Wi-Fi change.
    Wifi,
    /// A write of a read-only parameter the device reported (refused with 422 once allowed).
    ReadOnlyParameter,
    /// A subtree to refresh.
    RefreshPath,
    /// A new subscriber in the target.
    NewSubscriber,
    SubscriberName,
    /// A serial pre-assigned to the subscriber.
    SubscriberSerial,
    /// The target's fixture subscriber, by username.
    SubscriberOf,
    /// A ping (or trace route) of a plain address.
    Ping,
    UdpEcho,
    SpeedTest,
}

/// What a successful answer must hold, besides carrying nothing foreign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    Devices,
    DevicesIn,
    /// Adapter usage: the kinds of exactly the devices the caller (or `?org=`) covers.
    Kinds,
    KindsIn,
    DeviceIs,
    /// Exactly the target's device when the caller covers it, else nothing.
    DeviceFound,
    DeviceItems,
    TaskOfDevice,
    Orgs,
    Users,
    UsersIn,
    Keys,
    Preregistrations,
    Credentials,
    Plugins,
    Audit,
    Pending,
    Presets,
    Limits,
    Config,
    OwnOrg,
    NbiDevices,
    NbiFound,
    NbiTasks,
    NbiTasksOf,
    NbiFaults,
    NbiFaultsOf,
    /// `GET /api/v1/faults`: the faults of the caller's subtree (the fixtures among them).
    Faults,
}

struct Row {
    method: Method,
    path: &'static str,
    variant: &'static str,
    targets: Targets,
    param: Param,
    body: Body,
    expect: fn(&Who, &Case) -> u16,
    check: Check,
}

#[allow(clippy::too_many_arguments)]
fn row(
    method: Method,
    path: &'static str,
    variant: &'static str,
    targets: Targets,
    param: Param,
    body: Body,
    expect: fn(&Who, &Case) -> u16,
    check: Check,
) -> Row {
    Row { method, path, variant, targets, param, body, expect, check }
}

/// Every authenticated operation, with the permission its handler requires (`need`), whether it
/// looks the target up before (`seen` first) or after, and the status it answers. Routes that
/// take no credential are not here (see `UNAUTHENTICATED`).
fn table() -> Vec<Row> {
    use Body as B;
    use Check as C;
    use Param as Pa;
    use Targets::*;
    let (get, post, put, patch, delete) = (Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE);
    vec![
        // The caller itself: its own organization, whatever its role.
        row(get.clone(), "/api/v1/auth/me", "", Once, Pa::None, B::None, |_, _| 200, C::OwnOrg),
        // The caller's events as they happen: every role reads its own organizations'.
        row(get.clone(), "/api/v1/events/stream", "", Once, Pa::None, B::None, |_, _| 200, C::None),
        // Devices. Reading one's fleet needs no more than an account (read-only holds ReadFleet).
        row(get.clone(), "/api/v1/devices", "", Once, Pa::None, B::None, |_, _| 200, C::Devices),
        row(
            get.clone(),
            "/api/v1/devices",
            "?org=",
            Orgs,
            Pa::OrgQuery,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::DevicesIn,
        ),
        // Filters search within the caller's scope only: another's serial, tag or value finds nothing.
        row(
            get.clone(),
            "/api/v1/devices",
            "?serial_number=",
            Owners,
            Pa::SerialFilter,
            B::None,
            |_, _| 200,
            C::DeviceFound,
        ),
        row(get.clone(), "/api/v1/devices", "?tag=", Owners, Pa::TagFilter, B::None, |_, _| 200, C::DeviceFound),
        row(
            get.clone(),
            "/api/v1/devices",
            "?param.=",
            Owners,
            Pa::ParameterFilter,
            B::None,
            |_, _| 200,
            C::DeviceFound,
        ),
        row(
            get.clone(),
            "/api/v1/devices/{id}",
            "",
            Owners,
            Pa::Device,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::DeviceIs,
        ),
        row(
            delete.clone(),
            "/api/v1/devices/{id}",
            "",
            Owners,
            Pa::FreshDevice,
            B::None,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        // Moving a device to where it is: the matrix and the lookup, without changing the fixture
        // (tenants' devices only: the platform's is unclaimed, and this would claim it).
        row(
            patch.clone(),
            "/api/v1/devices/{id}",
            "",
            Tenants,
            Pa::Device,
            B::SameOrg,
            |w, c| need(w, P::ClaimDevices).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/devices/{id}/parameters",
            "",
            Owners,
            Pa::Device,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/devices/{id}/logs",
            "",
            Owners,
            Pa::Device,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/devices/{id}/faults",
            "",
            Owners,
            Pa::Device,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::DeviceItems,
        ),
        row(
            put.clone(),
            "/api/v1/devices/{id}/tags/{tag}",
            "",
            Owners,
            Pa::DeviceNewTag,
            B::None,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/devices/{id}/tags/{tag}",
            "",
            Owners,
            Pa::FreshTag,
            B::None,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        // No connection-request URL is known for these devices: the handler answers 502.
        row(
            post.clone(),
            "/api/v1/devices/{id}/connection-request",
            "",
            Owners,
            Pa::Device,
            B::None,
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).unwrap_or(502),
            C::None,
        ),
        // Device actions: the permission of the task each queues, checked before the device is
        // looked up; the fixture devices have no connection-request URL, so the task stays pending.
        row(
            post.clone(),
            "/api/v1/devices/{id}/reboot",
            "",
            Owners,
            Pa::FreshActionDevice,
            B::None,
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).unwrap_or(202),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/devices/{id}/factory-reset",
            "",
            Owners,
            Pa::FreshActionDevice,
            B::None,
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).unwrap_or(202),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/devices/{id}/wifi",
            "",
            Owners,
            Pa::FreshActionDevice,
            B::Wifi,
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).unwrap_or(202),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/devices/{id}/refresh",
            "",
            Owners,
            Pa::FreshActionDevice,
            B::RefreshPath,
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).unwrap_or(202),
            C::None,
        ),
        // A parameter the device never reported: refused (422) once allowed, nothing queued.
        row(
            post.clone(),
            "/api/v1/devices/{id}/parameters",
            "",
            Owners,
            Pa::FreshActionDevice,
            B::ReadOnlyParameter,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(422),
            C::None,
        ),
        // The platform's device is unclaimed: no organization, no subscriber of one (409).
        row(
            post.clone(),
            "/api/v1/devices/{id}/assign-subscriber",
            "",
            Owners,
            Pa::FreshActionDevice,
            B::SubscriberOf,
            |w, c| need(w, P::ManageSubscribers).or(seen(w, c)).unwrap_or(if c.target == Platform { 409 } else { 202 }),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/devices/{id}/unassign-subscriber",
            "",
            Owners,
            Pa::Device,
            B::None,
            |w, c| need(w, P::ManageSubscribers).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        // Diagnostics: the fresh devices never showed a data model, so an allowed request is
        // refused with 409 before anything is queued.
        row(
            post.clone(),
            "/api/v1/devices/{id}/ping",
            "",
            Owners,
            Pa::FreshActionDevice,
            B::Ping,
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).unwrap_or(409),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/devices/{id}/traceroute",
            "",
            Owners,
            Pa::FreshActionDevice,
            B::Ping,
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).unwrap_or(409),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/devices/{id}/udp-echo",
            "",
            Owners,
            Pa::FreshActionDevice,
            B::UdpEcho,
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).unwrap_or(409),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/devices/{id}/speed-test",
            "",
            Owners,
            Pa::FreshActionDevice,
            B::SpeedTest,
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).unwrap_or(409),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/devices/{id}/diagnostics",
            "",
            Owners,
            Pa::Device,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/devices/{id}/metrics",
            "",
            Owners,
            Pa::Device,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::None,
        ),
        // Faults across the fleet.
        row(get.clone(), "/api/v1/faults", "", Once, Pa::None, B::None, |_, _| 200, C::Faults),
        row(
            get.clone(),
            "/api/v1/faults",
            "?org=",
            Orgs,
            Pa::OrgQuery,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/faults/{id}",
            "",
            Owners,
            Pa::FreshFault,
            B::None,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/faults/{id}/retry",
            "task",
            Owners,
            Pa::FreshFault,
            B::None,
            // Any operator may retry a device's fault; a task's needs what re-running it needs.
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).or(need(w, P::ConfigureDevices)).unwrap_or(200),
            C::None,
        ),
        // The dashboard: the caller's scope, or an organization of it.
        row(get.clone(), "/api/v1/dashboard", "", Once, Pa::None, B::None, |_, _| 200, C::None),
        row(
            get.clone(),
            "/api/v1/dashboard",
            "?org=",
            Orgs,
            Pa::OrgQuery,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::None,
        ),
        // Which devices use which adapter: the caller's scope, or an organization of it.
        row(get.clone(), "/api/v1/adapter-usage", "", Once, Pa::None, B::None, |_, _| 200, C::Kinds),
        row(
            get.clone(),
            "/api/v1/adapter-usage",
            "?org=",
            Orgs,
            Pa::OrgQuery,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::KindsIn,
        ),
        // Subscribers.
        row(get.clone(), "/api/v1/subscribers", "", Once, Pa::None, B::None, |_, _| 200, C::None),
        row(
            post.clone(),
            "/api/v1/subscribers",
            "",
            Orgs,
            Pa::None,
            B::NewSubscriber,
            |w, c| need(w, P::ManageSubscribers).or(named(w, c)).unwrap_or(201),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/subscribers/{id}",
            "",
            Owners,
            Pa::Subscriber,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::None,
        ),
        row(
            patch.clone(),
            "/api/v1/subscribers/{id}",
            "",
            Owners,
            Pa::Subscriber,
            B::SubscriberName,
            |w, c| need(w, P::ManageSubscribers).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/subscribers/{id}",
            "",
            Owners,
            Pa::FreshSubscriber,
            B::None,
            |w, c| need(w, P::ManageSubscribers).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/subscribers/{id}/devices",
            "",
            Owners,
            Pa::Subscriber,
            B::SubscriberSerial,
            |w, c| need(w, P::ManageSubscribers).or(seen(w, c)).unwrap_or(201),
            C::None,
        ),
        // The file store.
        row(get.clone(), "/api/v1/files", "", Once, Pa::None, B::None, |_, _| 200, C::None),
        row(
            post.clone(),
            "/api/v1/files",
            "",
            Once,
            Pa::FileUpload,
            B::FileBytes,
            |w, _| need(w, P::ManageFiles).unwrap_or(201),
            C::OwnOrg,
        ),
        row(
            get.clone(),
            "/api/v1/files/{id}",
            "",
            Owners,
            Pa::File,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::None,
        ),
        // Rollouts.
        row(get.clone(), "/api/v1/rollouts", "", Once, Pa::None, B::None, |_, _| 200, C::None),
        row(
            post.clone(),
            "/api/v1/rollouts",
            "",
            Owners,
            Pa::None,
            B::RolloutOfFile,
            |w, c| need(w, P::ManageRollouts).or(named(w, c)).unwrap_or(422),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/rollouts/{id}",
            "",
            Owners,
            Pa::Rollout,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/rollouts/{id}/pause",
            "",
            Owners,
            Pa::FreshRollout,
            B::None,
            |w, c| need(w, P::ManageRollouts).or(seen(w, c)).unwrap_or(409),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/rollouts/{id}/resume",
            "",
            Owners,
            Pa::FreshRollout,
            B::None,
            |w, c| need(w, P::ManageRollouts).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/rollouts/{id}/abort",
            "",
            Owners,
            Pa::FreshRollout,
            B::None,
            |w, c| need(w, P::ManageRollouts).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/rollouts/{id}/rollback",
            "",
            Owners,
            Pa::FreshRollout,
            B::None,
            |w, c| need(w, P::ManageRollouts).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        // Bulk actions.
        row(get.clone(), "/api/v1/bulk", "", Once, Pa::None, B::None, |_, _| 200, C::None),
        row(
            post.clone(),
            "/api/v1/bulk",
            "",
            Owners,
            Pa::None,
            B::BulkNowhere,
            |w, c| need(w, P::ManageBulk).or(named(w, c)).unwrap_or(422),
            C::None,
        ),
        row(get.clone(), "/api/v1/bulk/{id}", "", Owners, Pa::Bulk, B::None, |w, c| seen(w, c).unwrap_or(200), C::None),
        row(
            post.clone(),
            "/api/v1/bulk/{id}/cancel",
            "",
            Owners,
            Pa::Bulk,
            B::None,
            |w, c| need(w, P::ManageBulk).or(seen(w, c)).unwrap_or(409),
            C::None,
        ),
        // Webhooks: an organization administrator's.
        row(
            get.clone(),
            "/api/v1/webhooks",
            "",
            Once,
            Pa::None,
            B::None,
            |w, _| need(w, P::ManageWebhooks).unwrap_or(200),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/webhooks",
            "",
            Owners,
            Pa::None,
            B::NewWebhook,
            |w, c| need(w, P::ManageWebhooks).or(named(w, c)).unwrap_or(201),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/webhooks/{id}",
            "",
            Owners,
            Pa::Webhook,
            B::None,
            |w, c| need(w, P::ManageWebhooks).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(
            patch.clone(),
            "/api/v1/webhooks/{id}",
            "",
            Owners,
            Pa::Webhook,
            B::WebhookDescription,
            |w, c| need(w, P::ManageWebhooks).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/webhooks/{id}",
            "",
            Owners,
            Pa::FreshWebhook,
            B::None,
            |w, c| need(w, P::ManageWebhooks).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/webhooks/{id}/deliveries",
            "",
            Owners,
            Pa::Webhook,
            B::None,
            |w, c| need(w, P::ManageWebhooks).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay",
            "",
            Owners,
            Pa::WebhookDelivery,
            B::None,
            |w, c| need(w, P::ManageWebhooks).or(seen(w, c)).unwrap_or(202),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/webhooks/{id}/replay",
            "",
            Owners,
            Pa::Webhook,
            B::ReplayRange,
            |w, c| need(w, P::ManageWebhooks).or(seen(w, c)).unwrap_or(202),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/files/{id}",
            "",
            Owners,
            Pa::FreshFile,
            B::None,
            |w, c| need(w, P::ManageFiles).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        // Tasks: the permission follows the task's name, checked before the device is looked up.
        row(
            get.clone(),
            "/api/v1/devices/{id}/tasks",
            "",
            Owners,
            Pa::Device,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::DeviceItems,
        ),
        row(
            post.clone(),
            "/api/v1/devices/{id}/tasks",
            "reboot",
            Owners,
            Pa::Device,
            B::Reboot,
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).unwrap_or(201),
            C::TaskOfDevice,
        ),
        row(
            post.clone(),
            "/api/v1/devices/{id}/tasks",
            "setParameterValues",
            Owners,
            Pa::Device,
            B::SetParameter,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(201),
            C::TaskOfDevice,
        ),
        row(
            get.clone(),
            "/api/v1/tasks/{id}",
            "",
            Owners,
            Pa::Task,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::TaskOfDevice,
        ),
        row(
            delete.clone(),
            "/api/v1/tasks/{id}",
            "",
            Owners,
            Pa::FreshTask,
            B::None,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/tasks/{id}/retry",
            "faulted",
            Owners,
            Pa::FreshFaultedTask,
            B::None,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(200),
            C::TaskOfDevice,
        ),
        row(
            post.clone(),
            "/api/v1/tasks/{id}/retry",
            "pending",
            Owners,
            Pa::Task,
            B::None,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(409),
            C::None,
        ),
        // Plugins: a tenant sees its subtree's and those above it (the platform's are everyone's).
        row(get.clone(), "/api/v1/plugins", "", Once, Pa::None, B::None, |_, _| 200, C::Plugins),
        row(
            post.clone(),
            "/api/v1/plugins",
            "",
            Once,
            Pa::Upload,
            B::Wasm,
            |w, _| need(w, P::ManageProvisioning).unwrap_or(201),
            C::OwnOrg,
        ),
        // Names are per owner: another's name is the caller's to take (not a 409 that would
        // confirm it), and shadows nothing of the owner's.
        row(
            post.clone(),
            "/api/v1/plugins",
            "another's name",
            Owners,
            Pa::UploadNameOf,
            B::Wasm,
            |w, c| need(w, P::ManageProvisioning).unwrap_or(if c.target == w.org { 409 } else { 201 }),
            C::OwnOrg,
        ),
        row(
            get.clone(),
            "/api/v1/plugins/{id}",
            "",
            Owners,
            Pa::Plugin,
            B::None,
            // One's own subtree's, and those of the organizations above (which one runs).
            |w, c| if c.target.covers(w.org) { 200 } else { seen(w, c).unwrap_or(200) },
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/plugins/{id}",
            "",
            Owners,
            Pa::FreshPlugin,
            B::None,
            |w, c| need(w, P::ManageProvisioning).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        row(get.clone(), "/api/v1/plugin-limits", "", Once, Pa::None, B::None, |_, _| 200, C::Limits),
        row(
            put.clone(),
            "/api/v1/orgs/{slug}/plugin-limits",
            "",
            Orgs,
            Pa::Slug,
            B::Limits,
            |w, _| need(w, P::ManagePluginLimits).unwrap_or(200),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/orgs/{slug}/plugin-limits",
            "",
            Orgs,
            Pa::Slug,
            B::None,
            |w, _| need(w, P::ManagePluginLimits).unwrap_or(204),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/plugin-config/{plugin}",
            "",
            Once,
            Pa::PluginName("cfg-probe"),
            B::None,
            |_, _| 200,
            C::Config,
        ),
        row(
            put.clone(),
            "/api/v1/plugin-config/{plugin}",
            "",
            Once,
            Pa::PluginName("cfg-write"),
            B::Config,
            |w, _| need(w, P::ManageProvisioning).unwrap_or(200),
            C::None,
        ),
        // Without `?org=`, presets are the caller's own organization's: a name of another's is
        // not found, and writing it makes the caller's own.
        row(get.clone(), "/api/v1/presets", "", Once, Pa::None, B::None, |_, _| 200, C::Presets),
        row(
            get.clone(),
            "/api/v1/presets/{name}",
            "",
            Owners,
            Pa::Preset,
            B::None,
            |w, c| own(w, c).unwrap_or(200),
            C::None,
        ),
        row(
            put.clone(),
            "/api/v1/presets/{name}",
            "",
            Owners,
            Pa::Preset,
            B::Preset,
            |w, c| need(w, P::ManageProvisioning).unwrap_or(if c.target == w.org { 200 } else { 201 }),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/presets/{name}",
            "",
            Owners,
            Pa::FreshPreset,
            B::None,
            |w, c| need(w, P::ManageProvisioning).or(own(w, c)).unwrap_or(204),
            C::None,
        ),
        // With `?org=`, the presets of an organization of the caller's subtree: another's is
        // not found, whatever the caller's role (the lookup comes after the permission check
        // for writes).
        row(
            get.clone(),
            "/api/v1/presets",
            "?org=",
            Owners,
            Pa::OrgQuery,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/presets/{name}",
            "?org=",
            Owners,
            Pa::PresetOf,
            B::None,
            |w, c| seen(w, c).unwrap_or(200),
            C::None,
        ),
        row(
            put.clone(),
            "/api/v1/presets/{name}",
            "?org=",
            Owners,
            Pa::FreshPresetOf,
            B::Preset,
            |w, c| need(w, P::ManageProvisioning).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/presets/{name}",
            "?org=",
            Owners,
            Pa::FreshPresetOf,
            B::None,
            |w, c| need(w, P::ManageProvisioning).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        // A provision resolves along the caller's organization and its ancestors (and the
        // platform): a sibling's or a child's plugin is unknown.
        row(
            put.clone(),
            "/api/v1/presets/{name}",
            "another's provision",
            Owners,
            Pa::NewPresetName,
            B::ProvisionOf,
            |w, c| need(w, P::ManageProvisioning).unwrap_or(if c.target.covers(w.org) { 201 } else { 400 }),
            C::None,
        ),
        // Organizations: managed from strictly above; looked up before the permission check.
        row(get.clone(), "/api/v1/orgs", "", Once, Pa::None, B::None, |_, _| 200, C::Orgs),
        row(
            post.clone(),
            "/api/v1/orgs",
            "",
            Owners,
            Pa::None,
            B::NewOrg,
            |w, c| need(w, P::ManageOrganizations).or(named(w, c)).unwrap_or(201),
            C::None,
        ),
        // A CWMP host name captures the devices that inform at it: the platform's alone to give.
        row(
            post.clone(),
            "/api/v1/orgs",
            "cwmp_host",
            Owners,
            Pa::None,
            B::NewOrgWithHost,
            |w, c| need(w, P::ManageOrganizations).or(named(w, c)).or(need(w, P::ManageCwmpHosts)).unwrap_or(201),
            C::None,
        ),
        row(get.clone(), "/api/v1/orgs/{slug}", "", Orgs, Pa::Slug, B::None, |w, c| seen(w, c).unwrap_or(200), C::None),
        row(
            patch.clone(),
            "/api/v1/orgs/{slug}",
            "",
            Orgs,
            Pa::Slug,
            B::OrgName,
            |w, c| seen(w, c).or(need(w, P::ManageOrganizations)).unwrap_or(if c.target == w.org { 403 } else { 200 }),
            C::None,
        ),
        // An organization's test server is set by its own administrators too.
        row(
            patch.clone(),
            "/api/v1/orgs/{slug}",
            "speed_test_server",
            Orgs,
            Pa::Slug,
            B::SpeedTestServer,
            |w, c| seen(w, c).or(need(w, P::ManageOrganizations)).unwrap_or(200),
            C::None,
        ),
        row(
            patch.clone(),
            "/api/v1/orgs/{slug}",
            "cwmp_host",
            Orgs,
            Pa::Slug,
            B::Host,
            |w, c| {
                seen(w, c)
                    .or(need(w, P::ManageOrganizations))
                    .or((c.target == w.org).then_some(403))
                    .or(need(w, P::ManageCwmpHosts))
                    .unwrap_or(200)
            },
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/orgs/{slug}",
            "not empty",
            Owners,
            Pa::Slug,
            B::None,
            |w, c| seen(w, c).or(need(w, P::ManageOrganizations)).unwrap_or(if c.target == w.org { 403 } else { 409 }),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/orgs/{slug}",
            "empty, below",
            Owners,
            Pa::FreshOrgBelow,
            B::None,
            |w, c| seen(w, c).or(need(w, P::ManageOrganizations)).unwrap_or(204),
            C::None,
        ),
        // Users: everyone reads itself; the rest needs ManageUsers first.
        row(
            get.clone(),
            "/api/v1/users",
            "",
            Once,
            Pa::None,
            B::None,
            |w, _| need(w, P::ManageUsers).unwrap_or(200),
            C::Users,
        ),
        row(
            get.clone(),
            "/api/v1/users",
            "?org=",
            Orgs,
            Pa::OrgQuery,
            B::None,
            |w, c| need(w, P::ManageUsers).or(seen(w, c)).unwrap_or(200),
            C::UsersIn,
        ),
        row(
            post.clone(),
            "/api/v1/users",
            "",
            Owners,
            Pa::None,
            B::NewUser,
            |w, c| need(w, P::ManageUsers).or(named(w, c)).unwrap_or(201),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/users/{id}",
            "",
            OwnersAndSelf,
            Pa::User,
            B::None,
            |w, c| if c.own { 200 } else { need(w, P::ManageUsers).or(seen(w, c)).unwrap_or(200) },
            C::None,
        ),
        row(
            patch.clone(),
            "/api/v1/users/{id}",
            "disabled=false",
            OwnersAndSelf,
            Pa::User,
            B::Enable,
            |w, c| if c.own { 400 } else { need(w, P::ManageUsers).or(seen(w, c)).unwrap_or(200) },
            C::None,
        ),
        row(
            patch.clone(),
            "/api/v1/users/{id}",
            "role",
            Owners,
            Pa::FreshUser,
            B::RoleBasic,
            |w, c| need(w, P::ManageUsers).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/users/{id}",
            "",
            Owners,
            Pa::FreshUser,
            B::None,
            |w, c| need(w, P::ManageUsers).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        // API keys.
        row(
            get.clone(),
            "/api/v1/api-keys",
            "",
            Once,
            Pa::None,
            B::None,
            |w, _| need(w, P::ManageUsers).unwrap_or(200),
            C::Keys,
        ),
        row(
            post.clone(),
            "/api/v1/api-keys",
            "",
            Owners,
            Pa::None,
            B::NewKey,
            |w, c| need(w, P::ManageUsers).or(named(w, c)).unwrap_or(201),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/api-keys/{id}",
            "",
            Owners,
            Pa::FreshKey,
            B::None,
            |w, c| need(w, P::ManageUsers).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        // Audit.
        row(
            get.clone(),
            "/api/v1/audit",
            "",
            Once,
            Pa::None,
            B::None,
            |w, _| need(w, P::ReadAudit).unwrap_or(200),
            C::Audit,
        ),
        // Onboarding.
        row(
            get.clone(),
            "/api/v1/pending-devices",
            "",
            Once,
            Pa::None,
            B::None,
            |w, _| need(w, P::ReadPendingDevices).unwrap_or(200),
            C::Pending,
        ),
        row(
            post.clone(),
            "/api/v1/pending-devices/claim",
            "",
            Owners,
            Pa::None,
            B::Claim,
            |w, c| need(w, P::ClaimDevices).or(named(w, c)).unwrap_or(200),
            C::None,
        ),
        row(
            post.clone(),
            "/api/v1/pending-devices/claim",
            "another's device",
            Tenants,
            Pa::None,
            B::ClaimAnothers,
            |w, _| need(w, P::ClaimDevices).unwrap_or(200),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/preregistrations",
            "",
            Once,
            Pa::None,
            B::None,
            |w, _| need(w, P::ClaimDevices).unwrap_or(200),
            C::Preregistrations,
        ),
        row(
            post.clone(),
            "/api/v1/preregistrations",
            "",
            Owners,
            Pa::None,
            B::NewPreregistration,
            |w, c| need(w, P::ClaimDevices).or(named(w, c)).unwrap_or(201),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/preregistrations/{serial}",
            "",
            Owners,
            Pa::FreshPreregistration,
            B::None,
            |w, c| need(w, P::ClaimDevices).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        row(
            get.clone(),
            "/api/v1/cpe-credentials",
            "",
            Once,
            Pa::None,
            B::None,
            |w, _| need(w, P::ManageOnboarding).unwrap_or(200),
            C::Credentials,
        ),
        row(
            post.clone(),
            "/api/v1/cpe-credentials",
            "",
            Owners,
            Pa::None,
            B::NewCredential,
            |w, c| need(w, P::ManageOnboarding).or(named(w, c)).unwrap_or(201),
            C::None,
        ),
        row(
            delete.clone(),
            "/api/v1/cpe-credentials/{id}",
            "",
            Owners,
            Pa::FreshCredential,
            B::None,
            |w, c| need(w, P::ManageOnboarding).or(seen(w, c)).unwrap_or(204),
            C::None,
        ),
        // The GenieACS-compatible NBI: the same tiers and scopes.
        row(get.clone(), "/nbi/devices", "", Once, Pa::None, B::None, |_, _| 200, C::NbiDevices),
        row(get.clone(), "/nbi/devices", "?query=serial", Owners, Pa::SerialQuery, B::None, |_, _| 200, C::NbiFound),
        row(get.clone(), "/nbi/devices", "?query=$regex", Owners, Pa::RegexQuery, B::None, |_, _| 200, C::NbiFound),
        row(get.clone(), "/nbi/devices", "?query=_tags", Owners, Pa::TagQuery, B::None, |_, _| 200, C::NbiFound),
        row(
            get.clone(),
            "/nbi/devices",
            "?query=parameter",
            Owners,
            Pa::ParameterQuery,
            B::None,
            |_, _| 200,
            C::NbiFound,
        ),
        row(get.clone(), "/nbi/devices/", "", Once, Pa::None, B::None, |_, _| 200, C::NbiDevices),
        row(
            post.clone(),
            "/nbi/devices/{id}/tasks",
            "reboot",
            Owners,
            Pa::Device,
            B::Reboot,
            |w, c| need(w, P::OperateDevices).or(seen(w, c)).unwrap_or(202),
            C::None,
        ),
        row(
            post.clone(),
            "/nbi/devices/{id}/tasks",
            "setParameterValues",
            Owners,
            Pa::Device,
            B::SetParameter,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(202),
            C::None,
        ),
        // GenieACS answers 200 where `/api/v1` answers 201 or 204.
        row(
            post.clone(),
            "/nbi/devices/{id}/tags/{tag}",
            "",
            Owners,
            Pa::DeviceNewTag,
            B::None,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(
            delete.clone(),
            "/nbi/devices/{id}/tags/{tag}",
            "",
            Owners,
            Pa::FreshTag,
            B::None,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(get.clone(), "/nbi/tasks", "", Once, Pa::None, B::None, |_, _| 200, C::NbiTasks),
        row(get.clone(), "/nbi/tasks", "?query=device", Owners, Pa::DeviceQuery, B::None, |_, _| 200, C::NbiTasksOf),
        row(get.clone(), "/nbi/tasks", "?query=name", Once, Pa::NameQuery, B::None, |_, _| 200, C::NbiTasks),
        row(get.clone(), "/nbi/tasks/", "", Once, Pa::None, B::None, |_, _| 200, C::NbiTasks),
        row(
            delete.clone(),
            "/nbi/tasks/{id}",
            "",
            Owners,
            Pa::FreshTask,
            B::None,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        row(get.clone(), "/nbi/faults", "", Once, Pa::None, B::None, |_, _| 200, C::NbiFaults),
        row(get.clone(), "/nbi/faults", "?query=device", Owners, Pa::DeviceQuery, B::None, |_, _| 200, C::NbiFaultsOf),
        row(get.clone(), "/nbi/faults/", "", Once, Pa::None, B::None, |_, _| 200, C::NbiFaults),
        row(
            delete.clone(),
            "/nbi/faults/{id}",
            "",
            Owners,
            Pa::FreshFault,
            B::None,
            |w, c| need(w, P::ConfigureDevices).or(seen(w, c)).unwrap_or(200),
            C::None,
        ),
        // GenieACS's files: the key's own organization's, by name.
        row(get.clone(), "/nbi/files", "", Once, Pa::None, B::None, |_, _| 200, C::None),
        row(get.clone(), "/nbi/files/", "", Once, Pa::None, B::None, |_, _| 200, C::None),
        row(
            put.clone(),
            "/nbi/files/{name}",
            "",
            Once,
            Pa::NbiFileUpload,
            B::FileBytes,
            |w, _| need(w, P::ManageFiles).unwrap_or(200),
            C::None,
        ),
        row(
            delete.clone(),
            "/nbi/files/{name}",
            "",
            Owners,
            Pa::FreshFileName,
            B::None,
            |w, c| need(w, P::ManageFiles).or(own(w, c)).unwrap_or(200),
            C::None,
        ),
        row(get.clone(), "/nbi/presets", "", Once, Pa::None, B::None, |_, _| 200, C::Presets),
        row(get.clone(), "/nbi/presets/", "", Once, Pa::None, B::None, |_, _| 200, C::Presets),
        row(
            get.clone(),
            "/nbi/presets/{name}",
            "",
            Owners,
            Pa::Preset,
            B::None,
            |w, c| own(w, c).unwrap_or(200),
            C::None,
        ),
        row(
            put.clone(),
            "/nbi/presets/{name}",
            "",
            Owners,
            Pa::Preset,
            B::Preset,
            |w, _| need(w, P::ManageProvisioning).unwrap_or(200),
            C::None,
        ),
        row(
            delete,
            "/nbi/presets/{name}",
            "",
            Owners,
            Pa::FreshPreset,
            B::None,
            |w, c| need(w, P::ManageProvisioning).or(own(w, c)).unwrap_or(200),
            C::None,
        ),
    ]
}

/// Operations that take no credential, and so have no tenant to isolate: signing in and out,
/// refreshing a token, the OpenAPI document itself, its browsable page and the health check.
const UNAUTHENTICATED: &[(&str, &str)] = &[
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/docs"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// A path template with its parameters' names dropped (`/devices/{}`), so that the document and
/// the table may name them differently.
fn template(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            c => out.push(c),
        }
    }
    out
}

/// The (method, path) of every operation the live server's OpenAPI document lists.
async fn documented_operations(h: &Harness) -> BTreeSet<(String, String)> {
    let response = h.http.get(h.url("/api/v1/openapi.json")).send().await.expect("GET openapi.json");
    assert_eq!(response.status(), StatusCode::OK, "the OpenAPI document is served without credentials");
    let document: JsonValue = response.json().await.expect("the OpenAPI document is JSON");
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "OpenAPI 3.1: {}", document["openapi"]);
    let paths = document["paths"].as_object().expect("the document has paths");
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete", "patch", "head", "options", "trace"] {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), template(path)));
            }
        }
    }
    operations
}

// ---------------------------------------------------------------------------------------------
// The fixtures.

/// What the proof set up, by owner.
struct World {
    org_id: HashMap<Org, i64>,
    device_pk: HashMap<Org, roost::store::DevicePk>,
    task: HashMap<Org, String>,
    fault: HashMap<Org, String>,
    plugin: HashMap<Org, String>,
    subscriber: HashMap<Org, i64>,
    file: HashMap<Org, i64>,
    rollout: HashMap<Org, i64>,
    bulk: HashMap<Org, i64>,
    /// The fixture webhook and a delivery of its log.
    webhook: HashMap<Org, (i64, i64)>,
    user: HashMap<Org, i64>,
    key_names: HashMap<Org, Vec<String>>,
    /// Every device the proof made, and whose it is (`Platform`: unclaimed).
    devices: Mutex<HashMap<String, Org>>,
    next: AtomicUsize,
    wasm: Vec<u8>,
}

impl World {
    fn next(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn id(&self, org: Org) -> i64 {
        self.org_id[&org]
    }

    fn owner_of_device(&self, device_id: &str) -> Option<Org> {
        self.devices.lock().unwrap().get(device_id).copied()
    }
}

/// A hand-written Inform of a device of ours.
fn inform(serial: &str, maker: &str, event: &str) -> String {
    use roost_cwmp::{
        CpeBody, CpeRequest, CwmpVersion, DeviceIdStruct, EventStruct, Header, ParameterValue, ValueType,
    };
    let inform = roost_cwmp::Inform {
        device_id: DeviceIdStruct {
            manufacturer: maker.into(),
            oui: OUI.into(),
            product_class: PRODUCT_CLASS.into(),
            serial_number: serial.into(),
        },
        events: vec![EventStruct { code: event.into(), command_key: String::new() }],
        max_envelopes: 1,
        current_time: "2026-11-21T12:00:00Z".into(),
        retry_count: 0,
        parameters: vec![ParameterValue {
            name: SOFTWARE_VERSION.into(),
            value: format!("fw-{}", serial.to_lowercase()),
            value_type: ValueType::String,
        }],
    };
    roost_cwmp::encode_cpe_message(CwmpVersion::V1_0, &Header::default(), &CpeBody::Request(CpeRequest::Inform(inform)))
}

/// One CWMP session of a hand-written CPE with Basic credentials, at `path`, presenting `host`
/// if given: the Inform's status, after ending the session when it opened one.
async fn session(
    h: &Harness,
    path: &str,
    serial: &str,
    maker: &str,
    credential: (&str, &str),
    host: Option<&str>,
) -> u16 {
    let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
    if let Some(host) = host {
        cpe = cpe.presenting_host(host);
    }
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", credential.0, credential.1))
    );
    let event = if roost::store::devices::by_device_id(
        &h.app().store,
        &roost_cwmp::device_id::device_id(OUI, PRODUCT_CLASS, serial),
    )
    .await
    .unwrap()
    .is_some()
    {
        "2 PERIODIC"
    } else {
        "0 BOOTSTRAP"
    };
    let response = cpe.post(path, &inform(serial, maker, event), &[XML, ("Authorization", &basic)], false).await;
    if response.status == 200 {
        cpe.end_session(path).await;
    }
    response.status
}

/// A device registered straight in the store, as an Inform at `org`'s URL would (`None`: an
/// unclaimed one).
async fn store_device(
    h: &Harness,
    world: &World,
    owner: Org,
    org_id: Option<i64>,
    serial: &str,
) -> (String, roost::store::DevicePk) {
    use roost::store::devices::{InformRecord, Onboarding, OnboardingVia, record_inform};
    let identity = roost_cwmp::DeviceIdStruct {
        manufacturer: owner.maker(),
        oui: OUI.into(),
        product_class: PRODUCT_CLASS.into(),
        serial_number: serial.into(),
    };
    let device_id = roost_cwmp::device_id::device_id(OUI, PRODUCT_CLASS, serial);
    let events = [roost_cwmp::EventStruct { code: "0 BOOTSTRAP".into(), command_key: String::new() }];
    let record = InformRecord {
        device_id: &device_id,
        identity: &identity,
        onboarding: org_id.map(|org_id| Onboarding { org_id, via: OnboardingVia::Url }),
        events: &events,
        parameters: &[],
        remote_address: "127.0.0.1",
        cwmp_version: "1.0",
        now: roost::store::now_millis(),
    };
    let outcome = record_inform(&h.app().store, &record).await.unwrap();
    world.devices.lock().unwrap().insert(device_id.clone(), owner);
    (device_id, outcome.device.id)
}

/// A task queued straight in the store for `owner`'s fixture device; faulted when asked, which
/// records a fault too. Returns the task's id and, when faulted, the fault's.
/// A file of the file store in `owner`, stored as an upload would: its contents, then its row.
async fn store_file(h: &Harness, world: &World, owner: Org, name: &str) -> i64 {
    let app = h.app();
    let key = format!("probe-{name}").replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let contents: Vec<Result<bytes::Bytes, String>> = vec![Ok(bytes::Bytes::from_static(b"probe firmware"))];
    let written =
        app.files.write(&key, futures::StreamExt::boxed(futures::stream::iter(contents)), 1024).await.unwrap();
    let new = roost::store::files::NewFile {
        org_id: world.id(owner),
        name,
        file_type: "1 Firmware Upgrade Image",
        oui: None,
        product_class: None,
        version: None,
        size: written.size,
        sha256: &written.sha256,
        storage_key: &key,
    };
    roost::store::files::insert(&app.store, new).await.unwrap().unwrap().id
}

/// A rollout of `owner`'s fixture file to no device, paused: what the routes that read and move
/// rollouts act on, without starting a download anywhere.
async fn store_rollout(h: &Harness, world: &World, owner: Org) -> i64 {
    use roost::rollouts::RolloutState;
    use roost::store::rollouts;
    let store = &h.app().store;
    let new = rollouts::NewRollout {
        org_id: world.id(owner),
        file_id: world.file[&owner],
        version: "probe",
        target: "{}",
        canary: 0,
        batch_size: 10,
        batch_interval_s: 0,
        failure_threshold: 0.1,
        gate_timeout_s: 600,
        window: None,
        time_zone: "UTC",
        created_by: &format!("probe-{}", owner.token()),
        paused: true,
    };
    let rollout = rollouts::create(store, new, &[]).await.unwrap().unwrap();
    assert_eq!(rollout.state(), RolloutState::Paused);
    rollout.id
}

/// Where fixture webhooks point: a loopback port nothing listens on (deliveries fail at once).
const CLOSED_PORT: &str = "http://127.0.0.1:9/probe-hook";

/// A webhook of `owner` and a delivery of its log (an event replayed to it).
async fn store_webhook(h: &Harness, world: &World, owner: Org) -> (i64, i64) {
    use roost::store::webhooks;
    let app = h.app();
    let new = webhooks::NewWebhook {
        org_id: world.id(owner),
        url: CLOSED_PORT,
        sealed_secret: app.secrets.seal(b"probe secret of some length"),
        events: &["rollout.*".to_owned()],
        description: None,
        created_by: &format!("probe-{}", owner.token()),
    };
    let webhook = webhooks::create(&app.store, new).await.unwrap();
    let subject = format!("probe-{}", owner.token());
    let kind = roost::store::events::EventType::RolloutPaused;
    roost::store::events::record(app.store.db(), kind, Some(world.id(owner)), &subject, &json!({})).await.unwrap();
    let event = roost::store::events::list(
        &app.store,
        &roost::store::orgs::Scope::Orgs(vec![world.id(owner)]),
        Some(kind.as_str()),
        None,
        1000,
    )
    .await
    .unwrap()
    .into_iter()
    .rfind(|e| e.subject == subject)
    .unwrap();
    webhooks::replay(&app.store, webhook.id, &[event], None).await.unwrap();
    let delivery = webhooks::deliveries(&app.store, webhook.id, None, None, 1).await.unwrap().remove(0);
    (webhook.id, delivery.id)
}

/// A bulk action of `owner` over no device, cancelled: what the routes that read and cancel
/// bulk actions act on, without queueing anything.
async fn store_bulk(h: &Harness, world: &World, owner: Org) -> i64 {
    use roost::store::bulk;
    let app = h.app();
    let action = json!({"name": "reboot"}).to_string();
    let new = bulk::NewBulk {
        org_id: world.id(owner),
        name: "reboot",
        action: &action,
        sealed_action: app.secrets.seal(action.as_bytes()),
        query: "{}",
        created_by: &format!("probe-{}", owner.token()),
    };
    let row = bulk::create(&app.store, new, &[]).await.unwrap();
    // The runner may complete it first: either way it is not running, and a cancel is a 409.
    bulk::cancel(&app.store, &row, "probe").await.unwrap();
    row.id
}

async fn store_task(h: &Harness, world: &World, owner: Org, faulted: bool) -> (i64, Option<i64>) {
    use roost::store::{faults, tasks};
    let store = &h.app().store;
    let device_pk = world.device_pk[&owner];
    let org_id = (owner != Platform).then(|| world.id(owner));
    let task = tasks::insert(
        store,
        tasks::NewTask {
            device_pk,
            org_id,
            name: "reboot",
            body: r#"{"name":"reboot"}"#,
            sealed_body: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    if !faulted {
        return (task.id, None);
    }
    tasks::mark_fault(store, &task, roost::fault_code::FaultCode::Cwmp(9002), "Internal error", None).await.unwrap();
    let fault = faults::list_for_device(store, device_pk, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.task_id == Some(task.id))
        .expect("the task's fault");
    (task.id, Some(fault.id))
}

/// An API call that must succeed, as part of the setup.
async fn setup(h: &Harness, token: &str, method: Method, path: &str, body: Option<JsonValue>) -> JsonValue {
    let (status, answer) = h.request_as(token, method.clone(), path, body).await;
    assert!(status.is_success(), "setup {method} {path}: {status} {answer}");
    answer
}

async fn upload(h: &Harness, token: &str, name: &str, wasm: &[u8]) -> JsonValue {
    let response = h
        .http
        .post(h.url(&format!("/api/v1/plugins?name={name}&version=1.0.0")))
        .bearer_auth(token)
        .header("Content-Type", "application/wasm")
        .body(wasm.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: JsonValue = response.json().await.unwrap_or(JsonValue::Null);
    assert_eq!(status, StatusCode::CREATED, "uploading {name}: {body}");
    body
}

/// The organizations, their users and keys, and one of everything per organization.
async fn build_world(h: &Harness) -> (World, Vec<Who>) {
    let app = h.app().clone();
    let admin = h.token.clone();
    for org in [Isp, IspA, IspB, SubA, SubB] {
        let parent = org.parent().map(Org::slug);
        setup(
            h,
            &admin,
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"name": org.name(), "slug": org.slug(), "parent": parent})),
        )
        .await;
    }
    let mut org_id = HashMap::new();
    for org in ALL_ORGS {
        org_id.insert(org, roost::store::orgs::by_slug(&app.store, org.slug()).await.unwrap().unwrap().id);
    }
    let wasm = shipped_plugin("health");
    let mut world = World {
        org_id,
        device_pk: HashMap::new(),
        task: HashMap::new(),
        fault: HashMap::new(),
        plugin: HashMap::new(),
        subscriber: HashMap::new(),
        file: HashMap::new(),
        rollout: HashMap::new(),
        bulk: HashMap::new(),
        webhook: HashMap::new(),
        user: HashMap::new(),
        key_names: HashMap::new(),
        devices: Mutex::new(HashMap::new()),
        next: AtomicUsize::new(1),
        wasm,
    };

    // Users of every role in each tenant, and the platform's administrator.
    let admin_id = roost::store::users::by_email(&app.store, ADMIN_EMAIL).await.unwrap().unwrap().id;
    let mut callers = vec![Who {
        label: "platform-admin".into(),
        org: Platform,
        role: Role::PlatformAdmin,
        token: admin.clone(),
        key: false,
        user_id: Some(admin_id),
    }];
    for org in TENANTS {
        for role in ROLES {
            let email = org.email(role);
            let body = json!({"email": email, "password": USER_PASSWORD, "role": role.as_str(), "org": org.slug()});
            let user = setup(h, &admin, Method::POST, "/api/v1/users", Some(body)).await;
            let id = user["id"].as_i64().unwrap();
            let token = h.login(&email, USER_PASSWORD).await.unwrap();
            callers.push(Who {
                label: format!("{} {}", org.slug(), role.as_str()),
                org,
                role,
                token,
                key: false,
                user_id: Some(id),
            });
        }
    }
    for org in OWNERS {
        let body = json!({"email": org.member(), "password": USER_PASSWORD, "role": "read-only", "org": org.slug()});
        let member = setup(h, &admin, Method::POST, "/api/v1/users", Some(body)).await;
        world.user.insert(org, member["id"].as_i64().unwrap());
    }
    let token_of = |org: Org, role: Role| -> String {
        callers.iter().find(|c| c.org == org && c.role == role && !c.key).map(|c| c.token.clone()).unwrap()
    };

    // API keys: one or two per tenant, as callers; the platform's one only as a fixture.
    let mut keys = Vec::new();
    for (org, role) in [(Isp, Role::OrgAdmin), (IspA, Role::ReadOnly), (IspA, Role::Advanced), (IspB, Role::Basic)] {
        let name = format!("key-{}-{}", org.token(), role.as_str());
        let body = json!({"name": name, "role": role.as_str(), "rate_limit_per_minute": 1_000_000});
        let created = setup(h, &token_of(org, Role::OrgAdmin), Method::POST, "/api/v1/api-keys", Some(body)).await;
        world.key_names.entry(org).or_default().push(name.clone());
        keys.push(Who {
            label: format!("{} {} API key", org.slug(), role.as_str()),
            org,
            role,
            token: created["key"].as_str().unwrap().to_owned(),
            key: true,
            user_id: None,
        });
    }
    setup(h, &admin, Method::POST, "/api/v1/api-keys", Some(json!({"name": "key-qplt", "role": "read-only"}))).await;
    world.key_names.entry(Platform).or_default().push("key-qplt".into());

    // Onboarding credentials, and a device onboarded with each at its organization's URL; an
    // unclaimed device on a platform credential that names no organization.
    for org in TENANTS {
        let body = json!({"username": org.credential(), "password": CPE_PASSWORD});
        setup(h, &token_of(org, Role::OrgAdmin), Method::POST, "/api/v1/cpe-credentials", Some(body)).await;
    }
    roost::store::credentials::create(
        &app.store,
        Default::default(),
        &Platform.credential(),
        app.secrets.seal(CPE_PASSWORD.as_bytes()),
    )
    .await
    .unwrap();
    for org in OWNERS {
        let path = if org == Platform { "/".to_owned() } else { format!("/cwmp/{}", org.slug()) };
        let status = session(h, &path, &org.serial(), &org.maker(), (&org.credential(), CPE_PASSWORD), None).await;
        assert_eq!(status, 200, "{} onboards its device", org.slug());
        let device = roost::store::devices::by_device_id(&app.store, &org.device_id()).await.unwrap().unwrap();
        let expected = (org != Platform).then(|| world.id(org));
        assert_eq!(device.org_id, expected, "{} device's organization", org.slug());
        world.device_pk.insert(org, device.id);
        world.devices.lock().unwrap().insert(org.device_id(), org);
    }

    // What hangs off each: a task, a faulted task and its fault, a tag, a preset, a plugin, a
    // plugin's settings and limits, a pre-registered serial.
    for org in OWNERS {
        let (basic, advanced) = if org == Platform {
            (admin.clone(), admin.clone())
        } else {
            (token_of(org, Role::Basic), token_of(org, Role::Advanced))
        };
        let device = encode_id(&org.device_id());
        let task =
            setup(h, &basic, Method::POST, &format!("/api/v1/devices/{device}/tasks"), Some(json!({"name": "reboot"})))
                .await;
        world.task.insert(org, task["id"].as_str().unwrap().to_owned());
        let (_, fault) = store_task(h, &world, org, true).await;
        world.fault.insert(org, fault.unwrap().to_string());
        setup(h, &advanced, Method::PUT, &format!("/api/v1/devices/{device}/tags/tag-{}", org.token()), None).await;
        let preset =
            json!({"provision": "reboot", "events": ["0 BOOTSTRAP"], "tags": [format!("never-{}", org.token())]});
        setup(h, &advanced, Method::PUT, &format!("/api/v1/presets/{}", org.preset()), Some(preset)).await;
        let plugin = upload(h, &advanced, &org.plugin(), &world.wasm).await;
        world.plugin.insert(org, plugin["id"].as_str().unwrap().to_owned());
        let config = json!({"owner": org.config_value()});
        setup(h, &advanced, Method::PUT, "/api/v1/plugin-config/cfg-probe", Some(config)).await;
        let serials = json!({"serials": [org.preregistration()]});
        setup(h, &advanced, Method::POST, "/api/v1/preregistrations", Some(serials)).await;
        let subscriber = json!({"username": org.subscriber(), "plan": format!("plan-{}", org.token()),
            "pppoe_username": format!("ppp-{}", org.token()), "pppoe_password": "probe password"});
        let subscriber = setup(h, &advanced, Method::POST, "/api/v1/subscribers", Some(subscriber)).await;
        world.subscriber.insert(org, subscriber["id"].as_str().unwrap().parse().unwrap());
        let file = store_file(h, &world, org, &format!("file-{}", org.token())).await;
        world.file.insert(org, file);
        world.rollout.insert(org, store_rollout(h, &world, org).await);
        world.bulk.insert(org, store_bulk(h, &world, org).await);
        world.webhook.insert(org, store_webhook(h, &world, org).await);
        if org != Platform {
            setup(h, &admin, Method::PUT, &format!("/api/v1/orgs/{}/plugin-limits", org.slug()), Some(org.limits()))
                .await;
        }
    }
    callers.extend(keys);
    (world, callers)
}

// ---------------------------------------------------------------------------------------------
// Running the table.

/// A request ready to send.
struct Prepared {
    path: String,
    query: Vec<(String, String)>,
    body: Option<JsonValue>,
    wasm: bool,
    /// What the request says, which an answer may repeat.
    echoes: Vec<String>,
    fresh: Option<Fresh>,
}

/// What a call was made on, to check afterwards whether it happened.
#[derive(Debug)]
enum Fresh {
    Device(String),
    Webhook(i64),
    AddedTag(roost::store::DevicePk, String),
    RemovedTag(roost::store::DevicePk, String),
    Task(i64),
    FaultedTask(i64),
    Fault(roost::store::DevicePk, i64),
    Plugin(i64),
    Preset(Org, String),
    /// A preset name of `target`'s written by a caller of `by`.
    PresetWrite {
        target: Org,
        by: Org,
        name: String,
        mark: String,
    },
    Org(String),
    NewOrg(String, Org),
    Host(Org, String),
    /// A plugin uploaded under another's plugin's name: the caller's own, the owner's untouched.
    Upload {
        by: Org,
        name: String,
        owner_plugin: i64,
    },
    /// A preset the call makes in the caller's organization.
    NewPreset(Org, String),
    User(i64),
    UserRole(i64),
    Key(i64),
    Preregistration(Org, String),
    Credential(String),
    Subscriber(i64),
    File(i64),
    /// A paused rollout: moved exactly when the call was answered.
    Rollout(i64),
    /// An action's device: a task is queued on it exactly when the action was answered.
    Queued(roost::store::DevicePk),
    Claim(String, Org),
    Unclaimable(String, Org),
}

async fn prepare(h: &Harness, world: &World, who: &Who, row: &Row, case: &Case) -> Prepared {
    let app = h.app();
    let store = &app.store;
    let target = case.target;
    let n = world.next();
    let token = target.token();
    let mut params: Vec<String> = Vec::new();
    let mut query: Vec<(String, String)> = Vec::new();
    let mut fresh = None;
    match row.param {
        Param::None => {}
        Param::Device => params.push(target.device_id()),
        Param::DeviceNewTag => {
            let tag = format!("probe-{token}-{n}");
            params.extend([target.device_id(), tag.clone()]);
            fresh = Some(Fresh::AddedTag(world.device_pk[&target], tag));
        }
        Param::FreshDevice => {
            let org_id = (target != Platform).then(|| world.id(target));
            let (device_id, _) = store_device(h, world, target, org_id, &format!("FR{}{n:05}", target.upper())).await;
            params.push(device_id.clone());
            fresh = Some(Fresh::Device(device_id));
        }
        Param::FreshTag => {
            let tag = format!("fresh-{token}-{n}");
            roost::store::devices::add_tag(store, world.device_pk[&target], &tag).await.unwrap();
            params.extend([target.device_id(), tag.clone()]);
            fresh = Some(Fresh::RemovedTag(world.device_pk[&target], tag));
        }
        Param::Task => params.push(world.task[&target].clone()),
        Param::FreshTask => {
            let (task, _) = store_task(h, world, target, false).await;
            params.push(task.to_string());
            fresh = Some(Fresh::Task(task));
        }
        Param::FreshFaultedTask => {
            let (task, _) = store_task(h, world, target, true).await;
            params.push(task.to_string());
            fresh = Some(Fresh::FaultedTask(task));
        }
        Param::FreshFault => {
            let (_, fault) = store_task(h, world, target, true).await;
            let fault = fault.unwrap();
            params.push(fault.to_string());
            fresh = Some(Fresh::Fault(world.device_pk[&target], fault));
        }
        Param::Plugin => params.push(world.plugin[&target].clone()),
        Param::FreshPlugin => {
            let name = format!("fresh-{token}-{n}");
            let plugin = roost::store::plugins::insert(
                store,
                &roost::store::plugins::NewPlugin {
                    org_id: world.id(target),
                    name: &name,
                    version: "1.0.0",
                    world: "provision",
                    api_version: roost::plugins::API_VERSION,
                    hash: &roost::plugins::PluginRuntime::hash(&world.wasm),
                    component: &world.wasm,
                },
            )
            .await
            .unwrap();
            params.push(plugin.id.to_string());
            fresh = Some(Fresh::Plugin(plugin.id));
        }
        Param::PluginName(name) => params.push(name.to_owned()),
        Param::Preset => {
            params.push(target.preset());
            if row.body == Body::Preset {
                fresh = Some(Fresh::PresetWrite {
                    target,
                    by: who.org,
                    name: target.preset(),
                    mark: format!("written-{n}"),
                });
            }
        }
        Param::FreshPreset => {
            let name = format!("fresh-{token}-{n}");
            let definition = r#"{"provision":"reboot","events":["0 BOOTSTRAP"],"tags":["never"]}"#;
            roost::store::presets::put(store, world.id(target), &name, 0, definition).await.unwrap();
            params.push(name.clone());
            fresh = Some(Fresh::Preset(target, name));
        }
        Param::PresetOf => {
            params.push(target.preset());
            query.push(("org".into(), target.slug().into()));
        }
        Param::FreshPresetOf => {
            let name = format!("fresh-{token}-{n}");
            let definition = r#"{"provision":"reboot","events":["0 BOOTSTRAP"],"tags":["never"]}"#;
            roost::store::presets::put(store, world.id(target), &name, 0, definition).await.unwrap();
            params.push(name.clone());
            query.push(("org".into(), target.slug().into()));
            // Its own preset per call: callers of several organizations run at once.
            fresh = Some(if row.body == Body::Preset {
                Fresh::PresetWrite { target, by: target, name, mark: format!("written-{n}") }
            } else {
                Fresh::Preset(target, name)
            });
        }
        Param::Slug => params.push(target.slug().to_owned()),
        Param::FreshOrgBelow => {
            let slug = format!("below-{token}-{n}");
            let body = json!({"name": format!("Below {n}"), "slug": slug, "parent": target.slug()});
            setup(h, &h.token, Method::POST, "/api/v1/orgs", Some(body)).await;
            params.push(slug.clone());
            fresh = Some(Fresh::Org(slug));
        }
        Param::User => params.push(if case.own { who.user_id.unwrap() } else { world.user[&target] }.to_string()),
        Param::FreshUser => {
            let email = format!("fresh-{n}@{token}.example");
            let user =
                roost::store::users::create(store, world.id(target), &email, "not a hash", "read-only").await.unwrap();
            params.push(user.id.to_string());
            fresh = Some(if row.body == Body::RoleBasic { Fresh::UserRole(user.id) } else { Fresh::User(user.id) });
        }
        Param::FreshKey => {
            let key = roost::store::api_keys::create(
                store,
                roost::store::api_keys::NewApiKey {
                    org_id: world.id(target),
                    name: &format!("fresh-key-{token}-{n}"),
                    role: "read-only",
                    prefix: "roost_fresh",
                    key_hash: &format!("fresh-hash-{n}"),
                    rate_limit_per_minute: None,
                    created_by: "test",
                    expires_at: None,
                },
            )
            .await
            .unwrap();
            params.push(key.id.to_string());
            fresh = Some(Fresh::Key(key.id));
        }
        Param::FreshPreregistration => {
            let serial = format!("PRE-{}-{n}", target.upper());
            roost::store::preregistrations::add(store, world.id(target), std::slice::from_ref(&serial), "test")
                .await
                .unwrap();
            params.push(serial.clone());
            fresh = Some(Fresh::Preregistration(target, serial));
        }
        Param::FreshCredential => {
            let username = format!("fresh-cpe-{token}-{n}");
            let scope = roost::store::credentials::CredentialScope {
                org_id: (target != Platform).then(|| world.id(target)),
                ..Default::default()
            };
            roost::store::credentials::create(store, scope, &username, app.secrets.seal(b"password")).await.unwrap();
            let credential = roost::store::credentials::by_username(store, &username).await.unwrap().unwrap();
            params.push(credential.id.to_string());
            fresh = Some(Fresh::Credential(username));
        }
        Param::Subscriber => params.push(world.subscriber[&target].to_string()),
        Param::File => params.push(world.file[&target].to_string()),
        Param::FreshFile => {
            let id = store_file(h, world, target, &format!("fresh-{token}-{n}")).await;
            params.push(id.to_string());
            fresh = Some(Fresh::File(id));
        }
        Param::Rollout => params.push(world.rollout[&target].to_string()),
        Param::Bulk => params.push(world.bulk[&target].to_string()),
        Param::Webhook => params.push(world.webhook[&target].0.to_string()),
        Param::WebhookDelivery => {
            let (webhook, delivery) = world.webhook[&target];
            params.extend([webhook.to_string(), delivery.to_string()]);
        }
        Param::FreshWebhook => {
            let (id, _) = store_webhook(h, world, target).await;
            params.push(id.to_string());
            fresh = Some(Fresh::Webhook(id));
        }
        Param::FreshRollout => {
            let id = store_rollout(h, world, target).await;
            params.push(id.to_string());
            fresh = Some(Fresh::Rollout(id));
        }
        Param::FileUpload => query.push(("name".into(), format!("up-{}-{n}", who.org.token()))),
        Param::NbiFileUpload => params.push(format!("nbi-{}-{n}", who.org.token())),
        Param::FreshFileName => {
            let name = format!("fresh-{token}-{n}");
            let id = store_file(h, world, target, &name).await;
            params.push(name);
            fresh = Some(Fresh::File(id));
        }
        Param::FreshSubscriber => {
            let username = format!("fresh-{token}-{n}");
            let new = roost::store::subscribers::NewSubscriber {
                org_id: world.id(target),
                username: &username,
                name: "",
                plan: "fresh",
                pppoe_username: "fresh",
                pppoe_password: None,
            };
            let subscriber = roost::store::subscribers::create(store, new).await.unwrap().unwrap();
            params.push(subscriber.id.to_string());
            fresh = Some(Fresh::Subscriber(subscriber.id));
        }
        Param::FreshActionDevice => {
            let org_id = (target != Platform).then(|| world.id(target));
            let (device_id, pk) = store_device(h, world, target, org_id, &format!("AC{}{n:05}", target.upper())).await;
            params.push(device_id);
            fresh = Some(Fresh::Queued(pk));
        }
        Param::OrgQuery => query.push(("org".into(), target.slug().into())),
        Param::SerialQuery => {
            query.push(("query".into(), json!({"_deviceId._SerialNumber": target.serial()}).to_string()))
        }
        Param::DeviceQuery => query.push(("query".into(), json!({"device": target.device_id()}).to_string())),
        Param::Upload => {
            query.push(("name".into(), format!("up-{}-{n}", who.org.token())));
            query.push(("version".into(), "1.0.0".into()));
        }
        Param::UploadNameOf => {
            query.push(("name".into(), target.plugin()));
            query.push(("version".into(), "1.0.0".into()));
            let owner_plugin = world.plugin[&target].parse().unwrap();
            fresh = Some(Fresh::Upload { by: who.org, name: target.plugin(), owner_plugin });
        }
        Param::NewPresetName => {
            let name = format!("new-{}-{n}", who.org.token());
            params.push(name.clone());
            fresh = Some(Fresh::NewPreset(who.org, name));
        }
        Param::SerialFilter => query.push(("serial_number".into(), target.serial())),
        Param::TagFilter => query.push(("tag".into(), format!("tag-{token}"))),
        Param::ParameterFilter => query.push((format!("param.{SOFTWARE_VERSION}"), target.firmware())),
        Param::RegexQuery => {
            query.push(("query".into(), json!({"_id": {"$regex": format!("{}$", target.serial())}}).to_string()))
        }
        Param::TagQuery => query.push(("query".into(), json!({"_tags": format!("tag-{token}")}).to_string())),
        Param::ParameterQuery => query.push(("query".into(), json!({SOFTWARE_VERSION: target.firmware()}).to_string())),
        Param::NameQuery => query.push(("query".into(), json!({"name": "reboot"}).to_string())),
    }
    let slug = target.slug();
    let body = match row.body {
        Body::None | Body::Wasm | Body::FileBytes => None,
        Body::Reboot => Some(json!({"name": "reboot"})),
        Body::SetParameter => Some(json!({
            "name": "setParameterValues",
            "parameterValues": [["InternetGatewayDevice.DeviceInfo.ProvisioningCode", "probe", "xsd:string"]],
        })),
        Body::Preset => {
            Some(json!({"provision": "reboot", "events": ["0 BOOTSTRAP"], "tags": [format!("written-{n}")]}))
        }
        // The platform's own is never renamed (its administrators are refused): any name does.
        Body::OrgName => Some(json!({"name": if target == Platform { "Platform" } else { target.name() }})),
        Body::SpeedTestServer => {
            Some(json!({"speed_test_server": {"download_url": format!("http://speed.{slug}.example/10MB.bin")}}))
        }
        Body::Limits => Some(target.limits()),
        Body::Config => Some(json!({"key": "value"})),
        Body::NewOrg => {
            let new = format!("probe-{n}");
            fresh = Some(Fresh::NewOrg(new.clone(), target));
            Some(json!({"name": format!("Probe {n}"), "slug": new, "parent": slug}))
        }
        Body::NewOrgWithHost => {
            let new = format!("probe-{n}");
            fresh = Some(Fresh::NewOrg(new.clone(), target));
            Some(
                json!({"name": format!("Probe {n}"), "slug": new, "parent": slug, "cwmp_host": format!("acs-{n}.probe.example")}),
            )
        }
        Body::Host => {
            let host = format!("acs-{n}.probe.example");
            fresh = Some(Fresh::Host(target, host.clone()));
            Some(json!({"cwmp_host": host}))
        }
        Body::ProvisionOf => Some(json!({"provision": target.plugin(), "events": ["0 BOOTSTRAP"], "tags": ["never"]})),
        Body::NewUser => Some(
            json!({"email": format!("probe-{n}@probe.example"), "password": USER_PASSWORD, "role": "read-only", "org": slug}),
        ),
        Body::Enable => Some(json!({"disabled": false})),
        Body::SameOrg => Some(json!({"org": slug})),
        Body::BulkNowhere => Some(json!({"query": {"_tags": "nowhere"}, "action": {"name": "reboot"}, "org": slug})),
        Body::NewWebhook => Some(json!({"url": CLOSED_PORT, "events": ["rollout.*"], "org": slug})),
        Body::WebhookDescription => Some(json!({"description": format!("probe {n}")})),
        Body::ReplayRange => Some(json!({"from": roost::api::timestamp(roost::store::now_millis() - 3_600_000)})),
        Body::RolloutOfFile => {
            Some(json!({"file": world.file[&target].to_string(), "target": {"org": slug}, "batch_size": 10}))
        }
        Body::RoleBasic => Some(json!({"role": "basic"})),
        Body::NewKey => Some(json!({"name": format!("probe-key-{n}"), "role": "read-only", "org": slug})),
        Body::Claim => {
            let serial = format!("PENDING{n:05}");
            let (device_id, _) = store_device(h, world, Platform, None, &serial).await;
            fresh = Some(Fresh::Claim(device_id, target));
            Some(json!({"serials": [serial], "org": slug}))
        }
        Body::ClaimAnothers => {
            fresh = Some(Fresh::Unclaimable(target.device_id(), target));
            Some(json!({"serials": [target.serial()]}))
        }
        Body::NewPreregistration => Some(json!({"serials": [format!("PROBE-{n}")], "org": slug})),
        Body::Wifi => Some(json!({"band": "2.4", "ssid": format!("probe-{n}")})),
        Body::ReadOnlyParameter => Some(json!({"values": {SOFTWARE_VERSION: "probe"}})),
        Body::RefreshPath => Some(json!({"path": "InternetGatewayDevice.DeviceInfo."})),
        Body::NewSubscriber => Some(json!({"username": format!("probe-{n}"), "plan": "probe",
            "pppoe_username": "probe", "pppoe_password": "probe password", "org": slug})),
        Body::SubscriberName => Some(json!({"name": format!("Probe {n}")})),
        Body::SubscriberSerial => Some(json!({"serial": format!("SUBSER{n:05}")})),
        Body::SubscriberOf => Some(json!({"subscriber": target.subscriber()})),
        Body::Ping => Some(json!({"host": "192.0.2.1"})),
        Body::UdpEcho => Some(json!({"host": "192.0.2.1", "port": 7})),
        Body::SpeedTest => Some(json!({"size": 1024})),
        Body::NewCredential => {
            Some(json!({"username": format!("probe-cpe-{n}"), "password": "probe password", "org": slug}))
        }
    };
    let mut echoes: Vec<String> = params.clone();
    for (_, value) in &query {
        echoes.push(value.clone());
        if let Ok(parsed) = serde_json::from_str::<JsonValue>(value) {
            strings(&parsed, &mut echoes);
        }
    }
    if let Some(body) = &body {
        strings(body, &mut echoes);
    }
    let mut values = params.into_iter();
    let mut path = String::new();
    let mut rest = row.path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').unwrap() + start;
        path.push_str(&rest[..start]);
        let value = values.next().expect("a value for every path parameter");
        path.push_str(&encode_id(&value));
        rest = &rest[end + 1..];
    }
    path.push_str(rest);
    assert!(values.next().is_none(), "{}: more values than parameters", row.path);
    Prepared { path, query, body, wasm: matches!(row.body, Body::Wasm | Body::FileBytes), echoes, fresh }
}

fn strings(value: &JsonValue, out: &mut Vec<String>) {
    match value {
        JsonValue::String(s) => out.push(s.clone()),
        JsonValue::Array(items) => items.iter().for_each(|v| strings(v, out)),
        JsonValue::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

async fn send(h: &Harness, world: &World, who: &Who, method: &Method, prepared: &Prepared) -> (u16, String) {
    let mut url = reqwest::Url::parse(&h.url(&prepared.path)).unwrap();
    if !prepared.query.is_empty() {
        url.query_pairs_mut().extend_pairs(prepared.query.iter());
    }
    let mut request = h.http.request(method.clone(), url);
    // GenieACS clients add a header; everything else sends a bearer token.
    request = if who.token.is_empty() {
        request
    } else if who.key && prepared.path.starts_with("/nbi/") {
        request.header("X-API-Key", &who.token)
    } else {
        request.bearer_auth(&who.token)
    };
    if prepared.wasm {
        request = request.header("Content-Type", "application/wasm").body(world.wasm.clone());
    } else if let Some(body) = &prepared.body {
        request = request.json(body);
    }
    // A connection the server closed as the request went out on it (a pooled keep-alive one, on
    // a loaded machine) carried no answer: the request is sent once more, on a new connection.
    let retry = request.try_clone();
    let response = match (request.send().await, retry) {
        (Ok(response), _) => response,
        (Err(error), Some(retry)) if error.is_request() && !error.is_timeout() => {
            retry.send().await.expect("API request, sent again")
        }
        (Err(error), _) => panic!("API request: {error:?}"),
    };
    let status = response.status().as_u16();
    // An event stream does not end: its answer is its status (what it carries is checked in
    // tests/e2e/live.rs).
    let streaming =
        response.headers().get("content-type").is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        return (status, String::new());
    }
    (status, response.text().await.unwrap_or_default())
}

fn items(body: &JsonValue) -> Vec<JsonValue> {
    body.get("items").unwrap_or(body).as_array().cloned().unwrap_or_default()
}

fn strs(items: &[JsonValue], field: &str) -> Vec<String> {
    items.iter().filter_map(|i| i[field].as_str().map(str::to_owned)).collect()
}

/// Whether an item's `org` (a slug, or null) is one `who` covers.
fn covered_slug(who: &Who, org: &JsonValue) -> bool {
    match org.as_str() {
        None => who.org == Platform,
        Some(slug) => match Org::by_slug(slug) {
            Some(org) => who.org.covers(org),
            None => who.org == Platform,
        },
    }
}

/// What a successful answer must hold besides carrying nothing foreign.
fn check(world: &World, who: &Who, row: &Row, case: &Case, body: &JsonValue) -> Vec<String> {
    let mut wrong = Vec::new();
    let all = items(body);
    let covered: Vec<Org> = OWNERS.into_iter().filter(|o| who.org.covers(*o)).collect();
    let must_list = |wrong: &mut Vec<String>, present: &[String], expected: Vec<String>, what: &str| {
        for e in expected {
            if !present.contains(&e) {
                wrong.push(format!("{what} {e} of the caller's subtree is missing"));
            }
        }
    };
    match row.check {
        Check::None => {}
        Check::Devices => {
            let expected = covered.iter().map(|o| o.device_id()).collect();
            must_list(&mut wrong, &strs(&all, "id"), expected, "device");
            for item in &all {
                if !covered_slug(who, &item["org"]) {
                    wrong.push(format!("lists device {} of {}", item["id"], item["org"]));
                }
            }
        }
        Check::DevicesIn => {
            let expected = OWNERS
                .into_iter()
                .filter(|o| *o != Platform && case.target.covers(*o))
                .map(|o| o.device_id())
                .collect();
            must_list(&mut wrong, &strs(&all, "id"), expected, "device");
            for item in &all {
                let inside = item["org"].as_str().and_then(Org::by_slug).is_some_and(|o| case.target.covers(o));
                if !inside {
                    wrong.push(format!("?org={} lists device {} of {}", case.target.slug(), item["id"], item["org"]));
                }
            }
        }
        Check::Kinds | Check::KindsIn => {
            let within =
                |org: Org| if row.check == Check::KindsIn { case.target.covers(org) } else { who.org.covers(org) };
            let kinds = body["kinds"].as_array().cloned().unwrap_or_default();
            // Pending devices (a kind without an organization) are the platform's alone, and
            // in no organization's subtree.
            let pending = kinds.iter().any(|k| k["org"].is_null());
            let pending_expected = row.check == Check::Kinds && who.org == Platform;
            if pending != pending_expected {
                wrong.push(format!("adapter usage lists pending devices: {pending}, expected {pending_expected}"));
            }
            let listed: BTreeSet<String> = strs(&kinds, "org").into_iter().collect();
            let expected: BTreeSet<String> =
                OWNERS.into_iter().filter(|o| *o != Platform && within(*o)).map(|o| o.slug().to_owned()).collect();
            if !expected.is_subset(&listed) {
                wrong.push(format!("adapter usage lists devices of {listed:?}, missing some of {expected:?}"));
            }
            for slug in &listed {
                if !Org::by_slug(slug).is_some_and(within) {
                    wrong.push(format!("adapter usage lists devices of {slug}"));
                }
            }
        }
        Check::DeviceIs => {
            if body["id"] != json!(case.target.device_id()) {
                wrong.push(format!("answered device {} for {}", body["id"], case.target.device_id()));
            }
        }
        Check::DeviceFound => {
            let ids = strs(&all, "id");
            let expected: Vec<String> =
                if who.org.covers(case.target) { vec![case.target.device_id()] } else { Vec::new() };
            if ids != expected {
                wrong.push(format!("found {ids:?}, expected {expected:?}"));
            }
        }
        Check::DeviceItems => {
            for item in &all {
                if item["device_id"] != json!(case.target.device_id()) {
                    wrong.push(format!("item of device {}", item["device_id"]));
                }
            }
        }
        Check::TaskOfDevice => {
            if body["device_id"] != json!(case.target.device_id()) {
                wrong.push(format!("a task of device {}", body["device_id"]));
            }
        }
        Check::Orgs => {
            let listed: BTreeSet<String> = strs(&all, "slug").into_iter().collect();
            let expected: BTreeSet<String> =
                ALL_ORGS.into_iter().filter(|o| who.org.covers(*o)).map(|o| o.slug().to_owned()).collect();
            if listed != expected {
                wrong.push(format!("organizations {listed:?}, expected exactly {expected:?}"));
            }
        }
        Check::Users | Check::UsersIn => {
            // `?org=` lists that organization's own users, not its subtree's.
            let filtered = row.check == Check::UsersIn;
            let inside = |org: Org| if filtered { org == case.target } else { who.org.covers(org) };
            for item in &all {
                if !item["org"].as_str().and_then(Org::by_slug).is_some_and(inside) {
                    wrong.push(format!("lists user {} of {}", item["email"], item["org"]));
                }
            }
            let mut expected: Vec<String> = Vec::new();
            for org in OWNERS.into_iter().filter(|o| inside(*o)) {
                expected.push(org.member());
                if org != Platform {
                    expected.extend(ROLES.map(|r| org.email(r)));
                }
            }
            must_list(&mut wrong, &strs(&all, "email"), expected, "user");
        }
        Check::Keys => {
            for item in &all {
                if !covered_slug(who, &item["org"]) {
                    wrong.push(format!("lists key {} of {}", item["name"], item["org"]));
                }
            }
            let expected = covered.iter().flat_map(|o| world.key_names.get(o).cloned().unwrap_or_default()).collect();
            must_list(&mut wrong, &strs(&all, "name"), expected, "API key");
        }
        Check::Preregistrations => {
            for item in &all {
                if !covered_slug(who, &item["org"]) {
                    wrong.push(format!("lists pre-registration {} of {}", item["serial_number"], item["org"]));
                }
            }
            let expected = covered.iter().map(|o| o.preregistration()).collect();
            must_list(&mut wrong, &strs(&all, "serial_number"), expected, "pre-registration");
        }
        Check::Credentials => {
            for item in &all {
                if !covered_slug(who, &item["org"]) {
                    wrong.push(format!("lists credential {} of {}", item["username"], item["org"]));
                }
            }
            let expected = covered.iter().map(|o| o.credential()).collect();
            must_list(&mut wrong, &strs(&all, "username"), expected, "CPE credential");
        }
        Check::Plugins => {
            let above = |org: &JsonValue| org.as_str().and_then(Org::by_slug).is_some_and(|o| o.covers(who.org));
            for item in &all {
                if !above(&item["org"]) && !covered_slug(who, &item["org"]) {
                    wrong.push(format!("lists plugin {} of {}", item["name"], item["org"]));
                }
            }
            let mut expected: Vec<String> = covered.iter().map(|o| o.plugin()).collect();
            let mut ancestor = who.org.parent();
            while let Some(org) = ancestor {
                if org != Platform {
                    expected.push(org.plugin());
                }
                ancestor = org.parent();
            }
            expected.push(Platform.plugin());
            must_list(&mut wrong, &strs(&all, "name"), expected, "plugin");
        }
        Check::Audit => {
            for item in &all {
                if !covered_slug(who, &item["org"]) {
                    wrong.push(format!("audit entry {} {} of {}", item["action"], item["target"], item["org"]));
                }
            }
        }
        Check::Pending => {
            must_list(&mut wrong, &strs(&all, "id"), vec![Platform.device_id()], "unclaimed device");
            for item in &all {
                if !item["org"].is_null() {
                    wrong.push(format!("pending device {} of {}", item["id"], item["org"]));
                }
            }
        }
        Check::Presets => {
            // A tenant's presets are its own only; the platform's include the shipped ones.
            let names = strs(&all, "name");
            let foreign: Vec<&String> = names
                .iter()
                .filter(|n| {
                    *n != &who.org.preset() && (who.org != Platform || FAMILIES.iter().any(|f| n.contains(f.token())))
                })
                .collect();
            if !names.contains(&who.org.preset()) || !foreign.is_empty() {
                wrong.push(format!("presets {names:?}, expected {:?} and no other tenant's", who.org.preset()));
            }
        }
        Check::Limits => {
            if body["overrides"] != who.org.limits() {
                wrong.push(format!("overrides {}, expected {}", body["overrides"], who.org.limits()));
            }
        }
        Check::Config => {
            let expected = json!({"owner": who.org.config_value()});
            if *body != expected {
                wrong.push(format!("configuration {body}, expected {expected}"));
            }
        }
        Check::OwnOrg => {
            if body["org"] != who.org.slug() {
                wrong.push(format!("stored for {}", body["org"]));
            }
        }
        Check::NbiDevices | Check::NbiFound => {
            let ids = strs(&all, "_id");
            for id in &ids {
                match world.owner_of_device(id) {
                    Some(owner) if who.org.covers(owner) => {}
                    owner => wrong.push(format!("lists device {id} of {owner:?}")),
                }
            }
            if row.check == Check::NbiDevices {
                must_list(&mut wrong, &ids, covered.iter().map(|o| o.device_id()).collect(), "device");
            } else {
                let expected: Vec<String> =
                    if who.org.covers(case.target) { vec![case.target.device_id()] } else { Vec::new() };
                if ids != expected {
                    wrong.push(format!("found {ids:?} by {}'s serial, expected {expected:?}", case.target.slug()));
                }
            }
        }
        Check::NbiTasks | Check::NbiTasksOf | Check::NbiFaults | Check::NbiFaultsOf | Check::Faults => {
            let of_device = matches!(row.check, Check::NbiTasksOf | Check::NbiFaultsOf);
            let tasks = matches!(row.check, Check::NbiTasks | Check::NbiTasksOf);
            // The NBI's names, or the REST API's.
            let (device_key, id_key) = if row.check == Check::Faults { ("device_id", "id") } else { ("device", "_id") };
            let fixture = |o: Org| if tasks { world.task[&o].clone() } else { world.fault[&o].clone() };
            for item in &all {
                let device = item[device_key].as_str().unwrap_or_default();
                match world.owner_of_device(device) {
                    Some(owner) if who.org.covers(owner) && (!of_device || owner == case.target) => {}
                    owner => wrong.push(format!("lists {} of device {device} ({owner:?})", item[id_key])),
                }
            }
            let ids = strs(&all, id_key);
            if of_device {
                if who.org.covers(case.target) {
                    must_list(&mut wrong, &ids, vec![fixture(case.target)], "item");
                } else if !ids.is_empty() {
                    wrong.push(format!("{} found by another tenant's device", ids.len()));
                }
            } else {
                must_list(&mut wrong, &ids, covered.iter().map(|o| fixture(*o)).collect(), "item");
            }
        }
    }
    wrong
}

/// Whether the call did what its status says, and nothing when it failed.
async fn effect(h: &Harness, world: &World, fresh: &Fresh, done: bool) -> Vec<String> {
    use roost::store;
    let s = &h.app().store;
    let mut wrong = Vec::new();
    let expect = |wrong: &mut Vec<String>, happened: bool, what: String| {
        if happened != done {
            wrong.push(format!(
                "{what}: {}",
                if happened { "happened though refused" } else { "did not happen though answered" }
            ));
        }
    };
    match fresh {
        Fresh::Device(id) => {
            expect(&mut wrong, store::devices::by_device_id(s, id).await.unwrap().is_none(), format!("deleting {id}"))
        }
        Fresh::AddedTag(pk, tag) => {
            expect(&mut wrong, store::devices::tags(s, *pk).await.unwrap().contains(tag), format!("tagging {tag}"))
        }
        Fresh::RemovedTag(pk, tag) => {
            expect(&mut wrong, !store::devices::tags(s, *pk).await.unwrap().contains(tag), format!("untagging {tag}"))
        }
        Fresh::Task(id) => {
            expect(&mut wrong, store::tasks::by_id(s, *id).await.unwrap().is_none(), format!("deleting task {id}"))
        }
        Fresh::FaultedTask(id) => {
            let task = store::tasks::by_id(s, *id).await.unwrap().unwrap();
            expect(&mut wrong, task.status == roost::store::tasks::TaskStatus::Pending, format!("retrying task {id}"));
        }
        Fresh::Fault(pk, id) => {
            let faults = store::faults::list_for_device(s, *pk, None, 100_000).await.unwrap();
            expect(&mut wrong, !faults.iter().any(|f| f.id == *id), format!("deleting fault {id}"));
        }
        Fresh::Plugin(id) => expect(
            &mut wrong,
            store::plugins::by_id(s, &Scope::All, &[], *id).await.unwrap().is_none(),
            format!("deleting plugin {id}"),
        ),
        Fresh::Preset(owner, name) => expect(
            &mut wrong,
            store::presets::get(s, world.id(*owner), name).await.unwrap().is_none(),
            format!("deleting preset {name}"),
        ),
        Fresh::PresetWrite { target, by, name, mark } => {
            let theirs = store::presets::get(s, world.id(*target), name).await.unwrap().expect("the fixture preset");
            let written = theirs.definition.contains(&format!("\"{mark}\""));
            if target == by {
                expect(&mut wrong, written, format!("writing preset {name}"));
            } else {
                if written {
                    wrong.push(format!("writing {name} as {by:?} changed {target:?}'s preset"));
                }
                // The caller's own preset of that name, made by the call: taken away again.
                let made = store::presets::get(s, world.id(*by), name).await.unwrap().is_some();
                expect(&mut wrong, made, format!("writing preset {name} in the caller's organization"));
                store::presets::delete(s, world.id(*by), name).await.unwrap();
            }
        }
        Fresh::Org(slug) => {
            let exists = store::orgs::by_slug(s, slug).await.unwrap().is_some();
            expect(&mut wrong, !exists, format!("deleting organization {slug}"));
            if exists {
                setup(h, &h.token, Method::DELETE, &format!("/api/v1/orgs/{slug}"), None).await;
            }
        }
        Fresh::NewOrg(slug, parent) => {
            let created = store::orgs::by_slug(s, slug).await.unwrap();
            expect(&mut wrong, created.is_some(), format!("creating organization {slug}"));
            if let Some(created) = created {
                if created.parent_id != Some(world.id(*parent)) {
                    wrong.push(format!("{slug} created below {:?}, not {parent:?}", created.parent_id));
                }
                setup(h, &h.token, Method::DELETE, &format!("/api/v1/orgs/{slug}"), None).await;
            }
        }
        Fresh::Host(org, host) => {
            // Each call names a host of its own: another organization's caller may be setting
            // one on the same organization at this moment.
            let now = store::orgs::by_id(s, world.id(*org)).await.unwrap().unwrap().cwmp_host;
            let given = now.as_deref() == Some(host.as_str());
            expect(&mut wrong, given, format!("giving {} the host {host}", org.slug()));
            if given {
                setup(
                    h,
                    &h.token,
                    Method::PATCH,
                    &format!("/api/v1/orgs/{}", org.slug()),
                    Some(json!({"cwmp_host": null})),
                )
                .await;
            }
        }
        Fresh::Upload { by, name, owner_plugin } => {
            let owner =
                store::plugins::by_id(s, &Scope::All, &[], *owner_plugin).await.unwrap().expect("the owner's plugin");
            let mine = store::plugins::by_name_version(s, world.id(*by), name, "1.0.0").await.unwrap();
            if owner.org_id == world.id(*by) {
                if mine.map(|p| p.id) != Some(*owner_plugin) {
                    wrong.push(format!("{name}: the caller's own plugin was replaced"));
                }
            } else {
                expect(&mut wrong, mine.is_some(), format!("uploading {name} as the caller's own"));
                if let Some(mine) = mine {
                    store::plugins::delete(s, &Scope::All, mine.id).await.unwrap();
                }
            }
        }
        Fresh::NewPreset(by, name) => {
            let made = store::presets::get(s, world.id(*by), name).await.unwrap().is_some();
            expect(&mut wrong, made, format!("writing preset {name}"));
            store::presets::delete(s, world.id(*by), name).await.unwrap();
        }
        Fresh::User(id) => {
            expect(&mut wrong, store::users::by_id(s, *id).await.unwrap().is_none(), format!("deleting user {id}"))
        }
        Fresh::UserRole(id) => {
            let user = store::users::by_id(s, *id).await.unwrap().unwrap();
            expect(&mut wrong, user.role == "basic", format!("changing user {id}'s role"));
        }
        Fresh::Key(id) => expect(
            &mut wrong,
            store::api_keys::visible(s, &Scope::All, *id).await.unwrap().is_none(),
            format!("revoking key {id}"),
        ),
        Fresh::Preregistration(owner, serial) => {
            let listed =
                store::preregistrations::list(s, &Scope::Orgs(vec![world.id(*owner)]), None, 100_000).await.unwrap();
            expect(
                &mut wrong,
                !listed.iter().any(|p| &p.serial_number == serial),
                format!("removing pre-registration {serial}"),
            );
        }
        Fresh::Subscriber(id) => {
            let gone = store::subscribers::visible(s, &store::orgs::Scope::All, *id).await.unwrap().is_none();
            expect(&mut wrong, gone, format!("deleting subscriber {id}"))
        }
        Fresh::File(id) => {
            let gone = store::files::visible(s, &store::orgs::Scope::All, *id).await.unwrap().is_none();
            expect(&mut wrong, gone, format!("deleting file {id}"))
        }
        Fresh::Webhook(id) => {
            let gone = store::webhooks::visible(s, &store::orgs::Scope::All, *id).await.unwrap().is_none();
            expect(&mut wrong, gone, format!("deleting webhook {id}"))
        }
        Fresh::Rollout(id) => {
            let state = store::rollouts::by_id(s, *id).await.unwrap().unwrap().state;
            expect(&mut wrong, state != "paused", format!("moving rollout {id} out of paused"))
        }
        Fresh::Queued(pk) => {
            let queued = !store::tasks::list_for_device(s, *pk, None, 10).await.unwrap().is_empty();
            expect(&mut wrong, queued, format!("queueing a task on {pk}"))
        }
        Fresh::Credential(username) => expect(
            &mut wrong,
            store::credentials::by_username(s, username).await.unwrap().is_none(),
            format!("deleting credential {username}"),
        ),
        Fresh::Claim(device_id, into) => {
            let device = store::devices::by_device_id(s, device_id).await.unwrap().unwrap();
            expect(
                &mut wrong,
                device.org_id == Some(world.id(*into)),
                format!("claiming {device_id} into {}", into.slug()),
            );
            if !done && device.org_id.is_some() {
                wrong.push(format!("{device_id} left the pending devices though refused"));
            }
        }
        Fresh::Unclaimable(device_id, owner) => {
            let device = store::devices::by_device_id(s, device_id).await.unwrap().unwrap();
            let expected = (*owner != Platform).then(|| world.id(*owner));
            if device.org_id != expected {
                wrong.push(format!("a claim moved {device_id} out of {}", owner.slug()));
            }
        }
    }
    wrong
}

fn cases(row: &Row, who: &Who) -> Vec<Case> {
    let on = |orgs: &[Org]| orgs.iter().map(|o| Case { target: *o, own: false }).collect::<Vec<_>>();
    match row.targets {
        Targets::Once => vec![Case { target: who.org, own: false }],
        Targets::Owners => on(&OWNERS),
        Targets::Tenants => on(&TENANTS),
        Targets::Orgs => on(&ALL_ORGS),
        Targets::OwnersAndSelf => {
            let mut cases = on(&OWNERS);
            if who.user_id.is_some() {
                cases.push(Case { target: who.org, own: true });
            }
            cases
        }
    }
}

/// Runs every row for every caller: reads first, while the fixtures are all there is, then the
/// rest. The callers of each organization run one after another (two writers of one
/// organization's presets would race), those of different organizations at once. Returns what
/// went wrong and how many calls were made.
async fn run_table(h: &Harness, world: &World, callers: &[Who], rows: &[Row]) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut calls = 0;
    let (reads, writes): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| r.method == Method::GET);
    for row in reads.into_iter().chain(writes) {
        let groups = OWNERS.map(|org| callers.iter().filter(|w| w.org == org).collect::<Vec<_>>());
        let results = futures::future::join_all(groups.iter().map(|group| run_row(h, world, row, group))).await;
        for (group_failures, group_calls) in results {
            failures.extend(group_failures);
            calls += group_calls;
        }
    }
    (failures, calls)
}

async fn run_row(h: &Harness, world: &World, row: &Row, callers: &[&Who]) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut calls = 0;
    for who in callers {
        for case in cases(row, who) {
            let prepared = prepare(h, world, who, row, &case).await;
            let (status, text) = send(h, world, who, &row.method, &prepared).await;
            calls += 1;
            let expected = (row.expect)(who, &case);
            let call = format!(
                "{} {}{} [{}] as {} on {}{}",
                row.method,
                row.path,
                if row.variant.is_empty() { String::new() } else { format!(" ({})", row.variant) },
                prepared.path,
                who.label,
                case.target.slug(),
                if case.own { " (itself)" } else { "" },
            );
            if status != expected {
                failures.push(format!(
                    "{call}: {status}, expected {expected}: {}",
                    text.chars().take(300).collect::<String>()
                ));
            }
            let mut allowed = prepared.echoes.clone();
            if row.path.starts_with("/api/v1/plugins") {
                // The plugins of the organizations above the caller are its to see: it runs them.
                let mut above = who.org.parent();
                while let Some(org) = above {
                    allowed.extend([org.plugin(), format!("\"org\":\"{}\"", org.slug())]);
                    above = org.parent();
                }
            } else if row.path == "/api/v1/adapter-usage" {
                // An adapter of an organization above handles the caller's devices: its name is
                // the caller's to see (not that organization's devices: kinds name their own).
                let mut above = who.org.parent();
                while let Some(org) = above {
                    allowed.push(org.plugin());
                    above = org.parent();
                }
            }
            let found = leaks(&text, &allowed, Some(who.org));
            if !found.is_empty() {
                failures.push(format!(
                    "{call}: answer carries {}: {}",
                    found.join(", "),
                    text.chars().take(400).collect::<String>()
                ));
            }
            if (200..300).contains(&status) {
                let body: JsonValue = serde_json::from_str(&text).unwrap_or(JsonValue::Null);
                failures.extend(check(world, who, row, &case, &body).into_iter().map(|w| format!("{call}: {w}")));
            }
            if let Some(fresh) = &prepared.fresh {
                let done = (200..300).contains(&status);
                failures.extend(effect(h, world, fresh, done).await.into_iter().map(|w| format!("{call}: {w}")));
            }
        }
    }
    (failures, calls)
}

/// Every row once with no credentials, on `isp-a`'s objects: 401, nothing of anyone's in the
/// answer, and nothing done.
async fn anonymous(h: &Harness, world: &World, rows: &[Row]) -> Vec<String> {
    let nobody = Who {
        label: "no credentials".into(),
        org: Platform,
        role: Role::ReadOnly,
        token: String::new(),
        key: false,
        user_id: None,
    };
    let mut failures = Vec::new();
    for row in rows {
        let case = Case { target: IspA, own: false };
        let prepared = prepare(h, world, &nobody, row, &case).await;
        let (status, text) = send(h, world, &nobody, &row.method, &prepared).await;
        let call = format!("{} {} ({}) with no credentials", row.method, prepared.path, row.variant);
        if status != 401 {
            failures.push(format!("{call}: {status}: {}", text.chars().take(300).collect::<String>()));
        }
        let found = leaks(&text, &prepared.echoes, None);
        if !found.is_empty() {
            failures.push(format!("{call}: answer carries {}", found.join(", ")));
        }
        if let Some(fresh) = &prepared.fresh {
            failures.extend(effect(h, world, fresh, false).await.into_iter().map(|w| format!("{call}: {w}")));
        }
    }
    failures
}

/// An `Idempotency-Key` is the sending principal's: another tenant sending the same key gets its
/// own task, never a replay of the first tenant's, and not on the first tenant's device.
async fn idempotency_across_tenants(h: &Harness, callers: &[Who]) -> Vec<String> {
    let basic =
        |org: Org| callers.iter().find(|c| c.org == org && c.role == Role::Basic && !c.key).unwrap().token.clone();
    let post = |token: String, device: Org| {
        let request = h
            .http
            .post(h.url(&format!("/api/v1/devices/{}/tasks", encode_id(&device.device_id()))))
            .bearer_auth(token)
            .header("Idempotency-Key", "isolation-key")
            .json(&json!({"name": "reboot"}));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotent-replayed");
            (status, replayed, response.json::<JsonValue>().await.unwrap_or(JsonValue::Null))
        }
    };
    let mut failures = Vec::new();
    let (status, _, first) = post(basic(IspA), IspA).await;
    if status != 201 {
        failures.push(format!("idempotency: isp-a's first task: {status} {first}"));
    }
    let (status, replayed, theirs) = post(basic(IspB), IspB).await;
    if (status, replayed) != (201, false)
        || theirs["device_id"] != json!(IspB.device_id())
        || theirs["id"] == first["id"]
    {
        failures.push(format!("idempotency: isp-b reusing isp-a's key: {status} replayed={replayed} {theirs}"));
    }
    let (status, _, answer) = post(basic(IspB), IspA).await;
    if status != 404 || !leaks(&answer.to_string(), &[IspA.device_id()], Some(IspB)).is_empty() {
        failures.push(format!("idempotency: isp-b's key on isp-a's device: {status} {answer}"));
    }
    let (status, replayed, again) = post(basic(IspA), IspA).await;
    if (status, replayed) != (200, true) || again["id"] != first["id"] {
        failures.push(format!("idempotency: isp-a's own retry: {status} replayed={replayed} {again}"));
    }
    failures
}

/// After every call of the table, each tenant's audit log still holds only its subtree's
/// entries, and none names a sibling's or the platform's users or keys.
async fn audit_after(h: &Harness, callers: &[Who]) -> Vec<String> {
    let mut failures = Vec::new();
    for who in callers.iter().filter(|w| w.role >= Role::OrgAdmin && w.org != Platform) {
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/api/v1/audit".to_owned();
            if let Some(c) = &cursor {
                path.push_str(&format!("?cursor={c}"));
            }
            let (status, page) = h.request_as(&who.token, Method::GET, &path, None).await;
            if status != StatusCode::OK {
                failures.push(format!("audit as {}: {status} {page}", who.label));
                break;
            }
            for entry in items(&page) {
                if !covered_slug(who, &entry["org"]) {
                    failures.push(format!("audit as {}: entry of {}: {entry}", who.label, entry["org"]));
                }
                // A parent acting in its child is named in the child's log; a sibling never.
                let actor = entry["actor_name"].as_str().unwrap_or_default().to_lowercase();
                for family in FAMILIES.into_iter().filter(|f| !who.org.covers(*f) && !f.covers(who.org)) {
                    if actor.contains(family.token()) {
                        failures.push(format!("audit as {}: entry by {actor}", who.label));
                    }
                }
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
    }
    failures
}

// ---------------------------------------------------------------------------------------------
// The CWMP side.

/// A device onboarded by `isp-a` stays there whatever URL or Host it later informs at; its own
/// credential opens no session as another device; `isp-a`'s onboarding credential onboards
/// nothing at `isp-b`'s URL or Host.
async fn cwmp_side(h: &Harness, world: &World, callers: &[Who]) -> Vec<String> {
    let app = h.app().clone();
    let store = &app.store;
    let mut failures = Vec::new();
    let reader =
        |org: Org| callers.iter().find(|c| c.org == org && c.role == Role::ReadOnly && !c.key).unwrap().token.clone();
    let b_host = "acs.qbrv.example";
    setup(h, &h.token, Method::PATCH, "/api/v1/orgs/isp-b", Some(json!({"cwmp_host": b_host}))).await;
    // isp-b tags every device of its own in every session: none of isp-a's, wherever they inform.
    let b_advanced =
        callers.iter().find(|c| c.org == IspB && c.role == Role::Advanced && !c.key).unwrap().token.clone();
    let tagger = json!({"provision": "tag", "args": {"add": "tagged-by-qbrv"}});
    setup(h, &b_advanced, Method::PUT, "/api/v1/presets/tagger-qbrv", Some(tagger)).await;
    let tagged = |device_id: String| {
        let store = store.clone();
        async move {
            let Some(device) = roost::store::devices::by_device_id(&store, &device_id).await.unwrap() else {
                return false;
            };
            roost::store::devices::tags(&store, device.id).await.unwrap().iter().any(|t| t == "tagged-by-qbrv")
        }
    };
    let onboarding = (IspA.credential(), CPE_PASSWORD.to_owned());
    let onboarding = (onboarding.0.as_str(), onboarding.1.as_str());
    let org_of = |device_id: String| {
        let store = store.clone();
        async move { roost::store::devices::by_device_id(&store, &device_id).await.unwrap().map(|d| d.org_id) }
    };

    // A device of isp-a, onboarded at isp-a's URL, and the credential it was given.
    let serial = "SNQALF0002";
    let device_id = roost_cwmp::device_id::device_id(OUI, PRODUCT_CLASS, serial);
    assert_eq!(session(h, "/cwmp/isp-a", serial, &IspA.maker(), onboarding, None).await, 200);
    world.devices.lock().unwrap().insert(device_id.clone(), IspA);
    let own = roost::store::credentials::own_of(store, &device_id).await.unwrap().expect("the device's own credential");
    let own_password = app.secrets.open_string(&own.password).unwrap();
    let own = (own.username.as_str(), own_password.as_str());

    // It informs presenting isp-b's host name, then at isp-b's URL: accepted, and still isp-a's.
    let host = format!("{b_host}:7547");
    for (path, host) in [("/", Some(host.as_str())), ("/cwmp/isp-b", None)] {
        let status = session(h, path, serial, &IspA.maker(), own, host).await;
        if status != 200 {
            failures.push(format!("cwmp: the device's own credential at {path} {host:?}: {status}"));
        }
        if org_of(device_id.clone()).await != Some(Some(world.id(IspA))) {
            failures.push(format!("cwmp: informing at {path} {host:?} moved the device out of isp-a"));
        }
    }
    let (status, _) =
        h.request_as(&reader(IspB), Method::GET, &format!("/api/v1/devices/{}", encode_id(&device_id)), None).await;
    if status != StatusCode::NOT_FOUND {
        failures.push(format!("cwmp: isp-b sees the device that informed at its host: {status}"));
    }
    let (status, device) =
        h.request_as(&reader(IspA), Method::GET, &format!("/api/v1/devices/{}", encode_id(&device_id)), None).await;
    if status != StatusCode::OK || device["org"] != "isp-a" {
        failures.push(format!("cwmp: isp-a's device after informing elsewhere: {status} {device}"));
    }
    if tagged(device_id.clone()).await {
        failures.push("cwmp: isp-b's preset ran on isp-a's device".into());
    }
    let isp_b_events =
        roost::store::events::list(store, &Scope::Orgs(vec![world.id(IspB)]), None, None, 1000).await.unwrap();
    if isp_b_events.iter().any(|e| e.subject == device_id) {
        failures.push("cwmp: isp-b's event outbox has an event of isp-a's device".into());
    }

    // Its credential, presented as isp-b's device and as a new one: refused, nothing recorded.
    let b_before = roost::store::devices::by_device_id(store, &IspB.device_id()).await.unwrap().unwrap();
    let status = session(h, "/", &IspB.serial(), &IspB.maker(), own, None).await;
    if status != 401 {
        failures.push(format!("cwmp: a device's own credential opened a session as isp-b's device: {status}"));
    }
    let b_after = roost::store::devices::by_device_id(store, &IspB.device_id()).await.unwrap().unwrap();
    if (b_after.last_inform_at, b_after.org_id) != (b_before.last_inform_at, b_before.org_id) {
        failures.push("cwmp: isp-b's device changed after another device's credential posed as it".into());
    }
    let stranger = "SNQALF0009";
    let status = session(h, "/", stranger, &IspA.maker(), own, None).await;
    if status != 401 {
        failures.push(format!("cwmp: a device's own credential registered another device: {status}"));
    }
    if org_of(roost_cwmp::device_id::device_id(OUI, PRODUCT_CLASS, stranger)).await.is_some() {
        failures.push("cwmp: a device registered on another device's credential".into());
    }

    // isp-a's onboarding credential at isp-b's URL and Host: refused; at no URL, into isp-a.
    for (n, (path, host)) in [("/cwmp/isp-b", None), ("/", Some(host.as_str()))].into_iter().enumerate() {
        let serial = format!("SNQALF001{n}");
        let status = session(h, path, &serial, &IspA.maker(), onboarding, host).await;
        if status != 401 {
            failures.push(format!("cwmp: isp-a's onboarding credential at {path} {host:?}: {status}"));
        }
        if org_of(roost_cwmp::device_id::device_id(OUI, PRODUCT_CLASS, &serial)).await.is_some() {
            failures.push(format!("cwmp: isp-a's onboarding credential registered a device at {path} {host:?}"));
        }
    }
    // The control: a device of isp-b's (a new one: the fixture has the table's tasks queued), in a
    // session of its own, is tagged.
    let b2 = "SNQBRV0002";
    let status = session(h, "/cwmp/isp-b", b2, &IspB.maker(), (&IspB.credential(), CPE_PASSWORD), None).await;
    if status != 200 || !tagged(roost_cwmp::device_id::device_id(OUI, PRODUCT_CLASS, b2)).await {
        failures.push(format!(
            "cwmp: isp-b's preset did not run on isp-b's own device ({status}): the check above proves nothing"
        ));
    }
    if tagged(IspA.device_id()).await || tagged(device_id.clone()).await {
        failures.push("cwmp: isp-b's preset tagged a device of isp-a".into());
    }
    let serial = "SNQALF0020";
    let status = session(h, "/", serial, &IspA.maker(), onboarding, None).await;
    let joined = org_of(roost_cwmp::device_id::device_id(OUI, PRODUCT_CLASS, serial)).await;
    if (status, joined) != (200, Some(Some(world.id(IspA)))) {
        failures.push(format!("cwmp: isp-a's onboarding credential with no URL: {status}, joined {joined:?}"));
    }
    failures
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_leak_detector_finds_foreign_markers_and_spares_echoes() {
    let body = r#"{"id":"00D09E-IsoBox-SNQBRV0001","org":"isp-b"}"#;
    assert!(!leaks(body, &[], Some(IspA)).is_empty(), "a sibling's device");
    assert!(leaks(body, &[], Some(Isp)).is_empty(), "the parent's child's");
    assert!(leaks(body, &["00D09E-IsoBox-SNQBRV0001".into(), "isp-b".into()], Some(IspA)).is_empty(), "echoes");
    assert!(!leaks(r#"{"detail":"organization \"isp\" not found"}"#, &[], Some(IspA)).is_empty(), "the parent's slug");
    assert!(leaks(r#"{"slug":"isp-a","parent":"isp"}"#, &[], Some(IspA)).is_empty(), "one's own parent");
    assert!(!leaks(r#"{"name":"Bravo Wireless"}"#, &[], Some(IspA)).is_empty(), "a sibling's name");
    assert!(
        !leaks(r#"{"serial":"PENDINGx","maker":"Isolation Labs QPLT"}"#, &[], Some(Isp)).is_empty(),
        "the platform's"
    );
    assert!(leaks(r#"{"org":"platform"}"#, &[], Some(IspB)).is_empty());
    assert!(!leaks(r#"{"org":"isp-a"}"#, &[], None).is_empty(), "anything, to a caller with no credentials");
    assert!(contains_word("\"isp\"", "isp") && !contains_word("\"isp-a\"", "isp") && !contains_word("display", "isp"));
}

on_both_backends! {
    async fn every_route_answers_each_role_of_each_tenant_exactly_and_nothing_foreign(backend: Backend) {
        let h = Harness::start_configured(backend, roost::config::CpeAuthMode::Required, |c| c.cwmp.allow_basic_without_tls = true).await;
        let started = Instant::now();

        // The table covers the document, and only it.
        let rows = table();
        let documented: BTreeSet<(String, String)> = documented_operations(&h)
            .await
            .into_iter()
            .filter(|(method, path)| !UNAUTHENTICATED.contains(&(method.as_str(), path.as_str())))
            .collect();
        let tabled: BTreeSet<(String, String)> = rows.iter().map(|r| (r.method.to_string(), template(r.path))).collect();
        let missing: Vec<_> = documented.difference(&tabled).collect();
        let undocumented: Vec<_> = tabled.difference(&documented).collect();
        assert!(missing.is_empty(), "operations of the OpenAPI document with no row in the isolation table: {missing:?}");
        assert!(undocumented.is_empty(), "rows of the isolation table that the OpenAPI document does not list: {undocumented:?}");

        let (world, callers) = build_world(&h).await;
        let setup_time = started.elapsed();
        let (mut failures, calls) = run_table(&h, &world, &callers, &rows).await;
        failures.extend(anonymous(&h, &world, &rows).await);
        failures.extend(idempotency_across_tenants(&h, &callers).await);
        failures.extend(audit_after(&h, &callers).await);
        failures.extend(cwmp_side(&h, &world, &callers).await);
        eprintln!(
            "isolation ({backend:?}): {} operations, {} rows, {} callers, {calls} calls; setup {:.1?}, total {:.1?}",
            tabled.len(),
            rows.len(),
            callers.len(),
            setup_time,
            started.elapsed()
        );
        let shown: Vec<&String> = failures.iter().take(300).collect();
        assert!(failures.is_empty(), "{} isolation failures:\n{}", failures.len(), shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"));
        h.finish().await;
    }
}
