//! One provisioning round: which presets apply, their provisions run (natively, in the
//! sandbox, or replayed), and the plan of what to send.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use roost_params::Value;
use roost_params::pattern::Pattern;
use serde_json::json;
use tokio::runtime::Handle;

use super::calls::Command;
use super::tree::{KnownSecrets, SessionSecrets};
use crate::fault_code::FaultCode;
use crate::plugins::bindings::provision::roost::plugin::log::Level;
use crate::plugins::{Declared, DeviceView, Loaded, PluginFault};
use crate::provisioning::Provisioner;
use crate::provisioning::adapters;
use crate::provisioning::intent::Intent;
use crate::provisioning::plan::{self, Clock, Plan, PlanError};
use crate::provisioning::presets::{ActivePreset, OrgProvisioning};
use crate::provisioning::reads::{DeviceReads, RunMemo};
use crate::store::plugin_logs::{LogLevel, NewLogLine};

/// A fault to record.
#[derive(Debug)]
pub(super) struct FaultNote {
    pub(super) channel: String,
    pub(super) code: FaultCode,
    pub(super) message: String,
    pub(super) detail: Option<serde_json::Value>,
}

/// What a round produced.
#[derive(Debug, Default)]
pub(super) struct RoundOutcome {
    pub(super) plan: Option<Result<Plan, PlanError>>,
    pub(super) faults: Vec<FaultNote>,
    pub(super) failed: Vec<String>,
    pub(super) ran: Vec<Arc<ActivePreset>>,
    pub(super) tags_added: Vec<String>,
    pub(super) tags_removed: Vec<String>,
    pub(super) commands: Vec<(String, Command)>,
    /// The outputs of its plugin runs that the next session may replay, when it memoizes.
    pub(super) memos: Vec<(String, Arc<RunMemo>)>,
    /// Plugin runs in the sandbox, and outputs replayed instead.
    pub(super) sandboxed: u64,
    pub(super) replayed: u64,
    /// What the plugins that ran in the sandbox logged (replayed outputs log nothing: their
    /// lines were stored when they ran).
    pub(super) logs: Vec<NewLogLine>,
    /// The round's intent (a task's) could not be declared: provisioning stops.
    pub(super) intent_failed: bool,
    /// What the intent returned this round.
    pub(super) intent_value: Option<serde_json::Value>,
    /// The health figures the round's runs read (`RunOutput::health`), laid over each other.
    pub(super) health: Option<Arc<crate::health::HealthFigures>>,
}

/// The adapter of the session's device.
#[derive(Debug)]
pub(super) struct SessionAdapter {
    pub(super) name: String,
    pub(super) hash: String,
    pub(super) loaded: Arc<Loaded>,
}

/// What one round needs, owned, for the blocking pool.
pub(super) struct Round {
    pub(super) org: Arc<OrgProvisioning>,
    pub(super) presets: Vec<Arc<ActivePreset>>,
    pub(super) events: Vec<String>,
    pub(super) view: Arc<DeviceView>,
    pub(super) adapter: Option<Arc<SessionAdapter>>,
    pub(super) clock: Clock,
    /// Whether this round's plugin outputs may be replayed and kept: the first round, over a
    /// view of the tree at the Inform's revision.
    pub(super) memoize: bool,
    /// What the previous session at this revision kept.
    pub(super) kept: Option<Arc<DeviceReads>>,
    /// A task's intent, called on the adapter after the presets: its declarations come last,
    /// so they win over a preset's.
    pub(super) intent: Option<Arc<Intent>>,
    /// The first round of a task that starts a diagnostic: its `DiagnosticsState=Requested` is
    /// sent even where the store already says `Requested` (a run that never ran, a device that
    /// never reported): it is a trigger, not a setting.
    pub(super) trigger_diagnostic: bool,
    /// What the built-in `stun` provision writes to this device; `None` without a STUN server.
    pub(super) stun: Option<Arc<crate::provisioning::StunWrite>>,
}

/// How a round runs its plugin presets.
pub(super) enum Runner<'a> {
    /// On the blocking pool: plugins run in the sandbox (or are replayed), the view loads from
    /// the store.
    Blocking { p: &'a Arc<Provisioner>, handle: &'a Handle },
    /// On an async worker: replays only; a plugin that would have to run sets `missed`.
    Replay { missed: &'a Cell<bool> },
}

impl Round {
    /// The round from replays and the view alone, or `None` if it needs more: a plugin run, a
    /// load from the store, a secret to read.
    pub(super) fn run_inline(&self, secrets: &SessionSecrets) -> Option<RoundOutcome> {
        let missed = Cell::new(false);
        let secrets = KnownSecrets { secrets, unknown: Cell::new(false) };
        let outcome = self.view.without_loading(|| self.run(&Runner::Replay { missed: &missed }, &secrets))?;
        (!missed.get() && !secrets.unknown.get()).then_some(outcome)
    }

    pub(super) fn run_blocking(
        &self,
        p: &Arc<Provisioner>,
        handle: &Handle,
        secrets: &dyn plan::Secrets,
    ) -> RoundOutcome {
        self.run(&Runner::Blocking { p, handle }, secrets)
    }

    /// Which presets apply now, their runs, and the plan.
    fn run(&self, runner: &Runner<'_>, secrets: &dyn plan::Secrets) -> RoundOutcome {
        let view = &self.view;
        let mut outcome = RoundOutcome::default();
        let mut declarations: Vec<Declared> = Vec::new();
        let tags = if self.presets.iter().any(|p| !p.definition.tags.is_empty()) { view.tags() } else { Vec::new() };
        for preset in &self.presets {
            if !preset.selects(&self.events, &tags) {
                continue;
            }
            let holds = preset.precondition_patterns().all(|p| view.read_pattern(&p, |_| ()).is_ok())
                && view.read_loaded(|tree| preset.precondition_holds(tree));
            if !holds {
                continue;
            }
            outcome.ran.push(preset.clone());
            let channel = format!("preset:{}", preset.name);
            let definition = &preset.definition;
            let result = match definition.provision.as_str() {
                "refresh" | "value" | "tag" | "reboot" | "reset" | "download" | "stun" => {
                    let context = BuiltInContext { view, stun: self.stun.as_deref() };
                    built_in(preset, &context, &mut declarations, &mut outcome).map_err(|message| FaultNote {
                        channel: channel.clone(),
                        code: FaultCode::InvalidPreset,
                        message,
                        detail: None,
                    })
                }
                _ => {
                    let result = self.run_plugin(runner, preset, &mut declarations, &mut outcome);
                    if let Runner::Replay { missed } = runner
                        && missed.get()
                    {
                        return outcome;
                    }
                    result
                }
            };
            if let Err(note) = result {
                outcome.failed.push(preset.name.clone());
                outcome.faults.push(note);
            }
        }
        if let Some(intent) = &self.intent {
            match runner {
                Runner::Replay { missed } => {
                    missed.set(true);
                    return outcome;
                }
                Runner::Blocking { p, .. } => {
                    if let Err(note) = self.run_intent(p, intent, &mut declarations, &mut outcome) {
                        outcome.intent_failed = true;
                        outcome.faults.push(note);
                        return outcome;
                    }
                }
            }
        }
        for d in &declarations {
            // The plan reads every declared pattern's whole subtree: whether a table was ever
            // listed is told by what lies below its literal prefix. A literal leaf the store does
            // not hold needs its object's row too: when the object was last listed is since when
            // the device is known to lack the leaf (`plan::plan`).
            let prefix = d.pattern.literal_prefix();
            let loaded = view
                .read(&prefix, |tree| d.pattern.is_literal() && !d.pattern.is_object() && tree.get(&prefix).is_none())
                .and_then(|lacking| match d.pattern.parent().filter(|_| lacking) {
                    Some(object) => view.read(&object.literal_prefix(), |_| ()),
                    None => Ok(()),
                });
            if let Err(error) = loaded {
                outcome.faults.push(FaultNote {
                    channel: "provisioning".into(),
                    code: FaultCode::ProvisioningStore,
                    message: error.message,
                    detail: None,
                });
                return outcome;
            }
        }
        if self.trigger_diagnostic {
            view.update(|tree| {
                for d in declarations.iter().filter(|d| is_diagnostic_trigger(d)) {
                    if let Some(node) = tree.get_mut(&d.pattern.literal_prefix()) {
                        node.value = None;
                    }
                }
            });
        }
        outcome.plan = Some(view.read_loaded(|tree| plan::plan(tree, &declarations, self.clock, secrets)));
        outcome
    }

    /// Runs (or replays) a provision plugin once; its declarations join the round's, its tag
    /// changes the outcome.
    fn run_plugin(
        &self,
        runner: &Runner<'_>,
        preset: &ActivePreset,
        declarations: &mut Vec<Declared>,
        outcome: &mut RoundOutcome,
    ) -> Result<(), FaultNote> {
        let channel = format!("preset:{}", preset.name);
        let Some(plugin) = &preset.plugin else {
            return Err(FaultNote {
                channel,
                code: FaultCode::UnknownProvision,
                message: format!("No provision named {:?} is installed any more", preset.definition.provision),
                detail: None,
            });
        };
        let config = self.org.config.get(&plugin.name).cloned().unwrap_or_default();
        let key = self.memoize.then(|| {
            // Everything the run saw besides the tree, which the revision stands for.
            format!(
                "{:?}",
                (
                    &plugin.hash,
                    self.adapter.as_ref().map(|a| &a.hash),
                    &preset.definition.args,
                    &config,
                    self.org.limits,
                    &self.events,
                    &self.view.facts,
                )
            )
        });
        let replay = key.as_ref().and_then(|key| {
            let kept = self.kept.as_ref()?;
            kept.runs.iter().find(|(k, _)| k == key).map(|(_, memo)| memo.clone())
        });
        let (memo, replayable) = match (replay, runner) {
            (Some(memo), _) => {
                outcome.replayed += 1;
                (memo, true)
            }
            (None, Runner::Replay { missed }) => {
                missed.set(true);
                return Ok(());
            }
            (None, Runner::Blocking { p, handle }) => {
                outcome.sandboxed += 1;
                self.run_sandboxed(p, handle, plugin, config, preset, &channel, outcome)?
            }
        };
        declarations.extend(memo.declarations.iter().cloned());
        outcome.tags_added.extend(memo.tags_added.iter().cloned());
        outcome.tags_removed.extend(memo.tags_removed.iter().cloned());
        if let Some(health) = &memo.health {
            // Each provision adds the figures it read: one may read `health`, another `radio`.
            outcome.health = Some(match &outcome.health {
                Some(older) => Arc::new(older.overlaid(health)),
                None => health.clone(),
            });
        }
        if let Some(key) = key.filter(|_| replayable) {
            outcome.memos.push((key, memo));
        }
        Ok(())
    }

    /// Calls the task's intent on the device's adapter; its declarations join the round's.
    fn run_intent(
        &self,
        p: &Arc<Provisioner>,
        intent: &Intent,
        declarations: &mut Vec<Declared>,
        outcome: &mut RoundOutcome,
    ) -> Result<(), FaultNote> {
        let Some(adapter) = &self.adapter else {
            return Err(FaultNote {
                channel: "task".into(),
                code: FaultCode::NoAdapter,
                message: format!("No installed adapter handles this device, so it cannot {}", intent.name()),
                detail: None,
            });
        };
        let (result, output) = intent.call(&p.plugins, &adapter.loaded, self.view.clone(), self.org.limits);
        outcome.sandboxed += 1;
        outcome.logs.extend(log_lines(&adapter.name, "task", output.logs, output.logs_dropped, &self.org.limits));
        let value = result.map_err(|fault| FaultNote {
            channel: format!("adapter:{}", adapter.name),
            code: fault.code(),
            message: format!("{}, asked to {}: {fault}", adapter.name, intent.name()),
            detail: Some(json!({ "plugin": adapter.name, "intent": intent.name() })),
        })?;
        outcome.intent_value = Some(value);
        declarations.extend(output.declarations);
        Ok(())
    }

    /// Runs the plugin in the sandbox: its output, and whether a later session may replay it.
    #[allow(clippy::too_many_arguments)]
    fn run_sandboxed(
        &self,
        p: &Arc<Provisioner>,
        handle: &Handle,
        plugin: &crate::store::plugins::PluginRow,
        config: Vec<(String, String)>,
        preset: &ActivePreset,
        channel: &str,
        outcome: &mut RoundOutcome,
    ) -> Result<(Arc<RunMemo>, bool), FaultNote> {
        let loaded = adapters::load_blocking(p, handle, plugin).map_err(|error| FaultNote {
            channel: channel.to_owned(),
            code: FaultCode::PluginInstantiate,
            message: format!("{error:#}"),
            detail: None,
        })?;
        let args: Vec<(String, String)> = preset.definition.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let (result, output) = p.plugins.run_provision(
            &loaded,
            self.view.clone(),
            self.adapter.as_ref().map(|a| a.loaded.clone()),
            self.org.limits,
            config,
            &args,
        );
        for fault in &output.adapter_faults {
            let name = self.adapter.as_ref().map_or("adapter", |a| a.name.as_str());
            outcome.faults.push(FaultNote {
                channel: format!("adapter:{name}"),
                code: fault.code(),
                message: format!("{name}, called by {}: {fault}", plugin.name),
                detail: None,
            });
        }
        outcome.logs.extend(log_lines(&plugin.name, &preset.name, output.logs, output.logs_dropped, &self.org.limits));
        if let Err(fault) = result {
            return Err(plugin_fault(channel.to_owned(), plugin.name.as_str(), &plugin.version, &fault));
        }
        let replayable = !output.impure && output.adapter_faults.is_empty();
        let memo = RunMemo {
            declarations: output.declarations,
            tags_added: output.tags_added,
            tags_removed: output.tags_removed,
            health: output.health,
        };
        Ok((Arc::new(memo), replayable))
    }
}

/// A declaration of `…DiagnosticsState` = `Requested`: what starts a diagnostic.
fn is_diagnostic_trigger(d: &Declared) -> bool {
    let path = d.pattern.literal_prefix();
    d.pattern.is_literal()
        && path.ends_with(".DiagnosticsState")
        && matches!(&d.value, Some(Value::Text(text)) if text == "Requested")
}

/// Whether two sets of runs are the same outputs under the same keys.
pub(super) fn same_runs(a: &[(String, Arc<RunMemo>)], b: &[(String, Arc<RunMemo>)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((ka, ma), (kb, mb))| ka == kb && Arc::ptr_eq(ma, mb))
}

/// A run's log lines as stored, with a line of the host's own saying how many it dropped.
fn log_lines(
    plugin: &str,
    preset: &str,
    logs: Vec<(Level, String)>,
    dropped: usize,
    limits: &crate::plugins::PluginLimits,
) -> Vec<NewLogLine> {
    let line = |level, message| NewLogLine { plugin: plugin.to_owned(), preset: preset.to_owned(), level, message };
    let dropped = (dropped > 0).then(|| {
        line(
            LogLevel::Warn,
            format!(
                "roost: dropped {dropped} more log message{} of this run (a run keeps {} messages, {} bytes)",
                if dropped == 1 { "" } else { "s" },
                limits.max_log_messages,
                limits.max_log_bytes
            ),
        )
    });
    logs.into_iter().map(|(level, message)| line(log_level(level), message)).chain(dropped).collect()
}

fn log_level(level: Level) -> LogLevel {
    match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    }
}

pub(super) fn plugin_fault(channel: String, name: &str, version: &str, fault: &PluginFault) -> FaultNote {
    FaultNote {
        channel,
        code: fault.code(),
        message: format!("{name} {version}: {fault}"),
        detail: Some(json!({ "plugin": name, "version": version })),
    }
}

/// What a built-in provision may read besides its arguments.
pub(super) struct BuiltInContext<'a> {
    pub(super) view: &'a DeviceView,
    pub(super) stun: Option<&'a crate::provisioning::StunWrite>,
}

/// The built-in provisions, on the same footing as plugins: they declare, tag, or ask for a
/// command. Their arguments were checked when the preset was written.
pub(super) fn built_in(
    preset: &ActivePreset,
    context: &BuiltInContext<'_>,
    declarations: &mut Vec<Declared>,
    outcome: &mut RoundOutcome,
) -> Result<(), String> {
    let d = &preset.definition;
    let arg = |name: &str| d.args.get(name).map(String::as_str);
    let pattern = || Pattern::parse(arg("path").unwrap_or_default()).map_err(|e| format!("{}: {e}", d.provision));
    match d.provision.as_str() {
        "refresh" => {
            let seconds: u64 = arg("max-age").and_then(|a| a.parse().ok()).unwrap_or(0);
            declarations.push(Declared {
                pattern: pattern()?,
                value: None,
                max_age: Some(Duration::from_secs(seconds)),
                instances: None,
            });
        }
        "value" => {
            let pattern = pattern()?;
            // The value's leaves must be known to be written: fetch them when never seen.
            declarations.push(Declared {
                pattern,
                value: Some(Value::Text(arg("value").unwrap_or_default().to_owned())),
                max_age: Some(Duration::MAX),
                instances: None,
            });
        }
        "tag" => {
            outcome.tags_added.extend(arg("add").map(str::to_owned));
            outcome.tags_removed.extend(arg("remove").map(str::to_owned));
        }
        "reboot" => outcome.commands.push((preset.name.clone(), Command::Reboot)),
        "reset" => outcome.commands.push((preset.name.clone(), Command::FactoryReset)),
        "download" => outcome.commands.push((
            preset.name.clone(),
            Command::Download {
                url: arg("url").unwrap_or_default().to_owned(),
                file_type: arg("file-type").unwrap_or("1 Firmware Upgrade Image").to_owned(),
            },
        )),
        "stun" => {
            if let Some(stun) = context.stun {
                declare_stun(context.view, stun, declarations)?;
            }
        }
        other => return Err(format!("{other} is not a built-in provision")),
    }
    Ok(())
}

/// `stun`: turns on the device's STUN client (TR-111) towards Roost's STUN server, with the
/// credentials the server checks. Devices without `ManagementServer.STUNEnable` are left alone;
/// the server's host is the configured one, or the host the device reaches the ACS at.
fn declare_stun(
    view: &DeviceView,
    stun: &crate::provisioning::StunWrite,
    declarations: &mut Vec<Declared>,
) -> Result<(), String> {
    if view.facts.root.is_empty() {
        return Ok(());
    }
    let ms = format!("{}.ManagementServer.", view.facts.root);
    let leaf = |name: &str, value: Value| -> Result<Declared, String> {
        Ok(Declared {
            pattern: Pattern::parse(&format!("{ms}{name}")).map_err(|e| format!("stun: {e}"))?,
            value: Some(value),
            max_age: Some(Duration::MAX),
            instances: None,
        })
    };
    // What the stored tree says (the device's discovery, which comes first): a leaf it lacks is
    // not declared, since a declaration of a parameter the device does not have would be
    // fetched again every round.
    let (supported, acs_url) = view
        .read(&ms, |tree| {
            (
                tree.get(&format!("{ms}STUNEnable")).is_some(),
                tree.get(&format!("{ms}URL")).and_then(|n| n.value.clone()),
            )
        })
        .map_err(|e| format!("stun: {e}"))?;
    let Some(host) = stun.host.clone().or_else(|| acs_url.as_deref().and_then(url_host)) else { return Ok(()) };
    if !supported {
        return Ok(());
    }
    declarations.extend([
        leaf("STUNEnable", Value::Boolean(true))?,
        leaf("STUNServerAddress", Value::Text(host))?,
        leaf("STUNServerPort", Value::Unsigned(u64::from(stun.port)))?,
        leaf("STUNUsername", Value::Text(stun.username.clone()))?,
        leaf("STUNPassword", Value::Text(stun.password.clone()))?,
    ]);
    Ok(())
}

/// The host of an `http(s)://host[:port]/…` URL (an IPv6 literal without its brackets).
fn url_host(url: &str) -> Option<String> {
    let rest = url.trim().split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stun_host_is_the_host_the_device_reaches_the_acs_at() {
        assert_eq!(url_host("https://acs.isp.example:7548/cwmp/isp-a").as_deref(), Some("acs.isp.example"));
        assert_eq!(url_host("http://203.0.113.5/").as_deref(), Some("203.0.113.5"));
        assert_eq!(url_host("http://user:pw@acs.example").as_deref(), Some("acs.example"));
        assert_eq!(url_host("http://[2001:db8::7]:7547/").as_deref(), Some("2001:db8::7"));
        assert_eq!(url_host("acs.example"), None);
        assert_eq!(url_host("http:///x"), None);
    }

    #[test]
    fn only_a_literal_requested_diagnostics_state_is_a_trigger() {
        let declared = |path: &str, value: &str| Declared {
            pattern: Pattern::parse(path).unwrap_or_else(|e| panic!("{e}")),
            value: Some(Value::Text(value.into())),
            max_age: None,
            instances: None,
        };
        assert!(is_diagnostic_trigger(&declared("Device.IP.Diagnostics.IPPing.DiagnosticsState", "Requested")));
        assert!(!is_diagnostic_trigger(&declared("Device.IP.Diagnostics.IPPing.DiagnosticsState", "None")));
        assert!(!is_diagnostic_trigger(&declared("Device.IP.Diagnostics.IPPing.Host", "Requested")));
        assert!(!is_diagnostic_trigger(&declared("Device.X.*.DiagnosticsState", "Requested")));
    }

    #[test]
    fn a_runs_lines_keep_their_order_and_end_with_what_was_dropped() {
        let limits = crate::plugins::PluginLimits::default();
        let logs = vec![(Level::Info, "first".to_owned()), (Level::Error, "second".to_owned())];
        let lines = log_lines("wifi", "default-wifi", logs, 3, &limits);
        let said: Vec<(LogLevel, &str)> = lines.iter().map(|l| (l.level, l.message.as_str())).collect();
        assert_eq!(said[..2], [(LogLevel::Info, "first"), (LogLevel::Error, "second")]);
        assert_eq!(said[2].0, LogLevel::Warn);
        assert!(
            said[2].1.starts_with("roost: dropped 3 more log messages of this run (a run keeps 200 messages"),
            "{}",
            said[2].1
        );
        assert!(lines.iter().all(|l| l.plugin == "wifi" && l.preset == "default-wifi"));
        // Nothing dropped, no line about it.
        assert_eq!(log_lines("wifi", "default-wifi", vec![(Level::Debug, "x".into())], 0, &limits).len(), 1);
        let one = log_lines("wifi", "p", Vec::new(), 1, &limits);
        assert!(one[0].message.starts_with("roost: dropped 1 more log message of"), "{}", one[0].message);
    }
}
