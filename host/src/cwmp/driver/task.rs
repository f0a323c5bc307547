//! The driver's queued tasks: each task's first request, its answers, and how it ends.

use std::sync::Arc;

use anyhow::Result;
use roost_cwmp::{AcsRequest, CpeResponse, ParameterValue, TransferComplete, ValueType};
use serde_json::{Value, json};

use crate::answers::refresh::Refresh;
use crate::answers::{self, Answer};
use crate::app::App;
use crate::diagnostics::RunStatus;
use crate::fault_code::FaultCode;
use crate::provisioning::engine::{Provisioning, TaskFault};
use crate::provisioning::intent::Intent;
use crate::store::devices::Device;
use crate::store::tasks::{TaskRow, TaskStatus};
use crate::store::{diagnostics, faults, now_millis, parameters, subscribers, tasks};
use crate::tasks::{PppoeCredentials, TaskSpec};

mod answered;

use super::{Driver, Work};
use answered::{Decided, Failure, values_json};

#[derive(Debug)]
pub(super) struct TaskRun {
    pub(super) task: TaskRow,
    spec: TaskSpec,
    /// The subtree refresh a refreshObject runs, or an addObject runs on its new instance
    /// (with the instance number to report).
    follow_up: Option<(Option<u32>, Refresh)>,
    /// A getParameterValues naming objects, read object by object.
    expansion: Option<Expansion>,
    /// A task carried out through the device's adapter: the provisioning that converges it.
    intent: Option<Box<Provisioning>>,
}

impl TaskRun {
    fn new(task: TaskRow, spec: TaskSpec) -> Self {
        Self { task, spec, follow_up: None, expansion: None, intent: None }
    }
}

/// A getParameterValues whose object paths are read as discovery reads trees: each object's
/// names, then its leaves by name; then the leaves the task named, in one call.
#[derive(Debug, Default)]
struct Expansion {
    objects: std::collections::VecDeque<String>,
    leaves: Vec<String>,
    /// The values read so far, for the task's result.
    values: Vec<ParameterValue>,
}

impl Expansion {
    /// `None` when no name is an object, or the caller asked for partial paths as they are.
    fn of(spec: &TaskSpec) -> Option<Self> {
        let TaskSpec::GetParameterValues { names, partial_path: false } = spec else { return None };
        let (objects, leaves): (Vec<String>, Vec<String>) = names.iter().cloned().partition(|n| n.ends_with('.'));
        (!objects.is_empty()).then(|| Self { objects: objects.into(), leaves, values: Vec::new() })
    }
}

/// How a task ended.
enum Outcome {
    Continue(AcsRequest),
    Done(Value),
    /// Download/Upload accepted with Status 1: TransferComplete will close the task later.
    Transferring,
    Failed(Failure),
}

impl Driver {
    pub(super) async fn next_task(&mut self, app: &Arc<App>) -> Result<Option<(Work, Option<AcsRequest>)>> {
        let now = now_millis();
        for task in tasks::expire(&app.store, self.device.id, now).await? {
            app.task_finished(task.id);
        }
        let Some(task) = tasks::next_queued(&app.store, self.device.id).await? else {
            self.may_have_tasks = false;
            return Ok(None);
        };
        let body = match &task.sealed_body {
            Some(sealed) => app.secrets.open_string(sealed).unwrap_or_else(|error| {
                tracing::error!(task = task.id, "cannot open the sealed task body: {error:#}");
                String::new()
            }),
            None => task.body.clone(),
        };
        let parsed = serde_json::from_str::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|body| TaskSpec::parse(&body).map(|(_, spec)| spec).map_err(|e| e.message));
        let spec = match answered::opening(parsed, task.attempts) {
            Ok(spec) => spec,
            Err(failure) => {
                self.task_failed(app, &task, failure).await?;
                // Finished while starting: no request, and the driver picks the next work.
                return Ok(Some((Work::Task(Box::new(TaskRun::new(task, TaskSpec::Reboot))), None)));
            }
        };
        if spec.is_intent() {
            tasks::mark_attempt(&app.store, task.id).await?;
            return self.start_intent(app, TaskRun::new(task, spec)).await;
        }
        let command_key = format!("roost-{}", task.id);
        if answered::needs_command_key(&spec) && task.command_key != command_key {
            tasks::set_command_key(&app.store, task.id, &command_key).await?;
        }
        let untyped = answered::untyped(&spec);
        let stored = if untyped.is_empty() {
            Default::default()
        } else {
            parameters::stored_values(&app.store, self.device.id, &untyped).await?
        };
        let Some(request) = answered::task_request(&spec, command_key, &stored) else {
            return Ok(None);
        };
        let spec = answered::as_sent(spec, &request);
        tasks::mark_attempt(&app.store, task.id).await?;
        let mut run = TaskRun::new(task, spec);
        let request = match Expansion::of(&run.spec) {
            Some(mut expansion) => {
                let Some(object) = expansion.objects.pop_front() else { return Ok(None) };
                let mut refresh = Refresh::new(object, self.learnt_batch(), now_millis());
                let request = refresh.first_request();
                run.follow_up = Some((None, refresh));
                run.expansion = Some(expansion);
                request
            }
            None => request,
        };
        Ok(Some((Work::Task(Box::new(run)), Some(request))))
    }

    /// Starts a task that goes through the device's adapter: its intent, converged like a
    /// provision's declarations.
    async fn start_intent(&mut self, app: &Arc<App>, mut run: TaskRun) -> Result<Option<(Work, Option<AcsRequest>)>> {
        let intent = match self.intent_of(app, &run.spec).await? {
            Ok(intent) => intent,
            Err(failure) => {
                self.task_failed(app, &run.task, failure).await?;
                return Ok(Some((Work::Task(Box::new(run)), None)));
            }
        };
        let mut provisioning =
            Provisioning::for_intent(&app.provisioning, &self.device, intent, self.started_at).await?;
        let request = provisioning.next(&app.provisioning, Answer::Nothing).await?;
        run.intent = Some(Box::new(provisioning));
        if request.is_none() {
            self.intent_ended(app, &run).await?;
        }
        Ok(Some((Work::Task(Box::new(run)), request)))
    }

    /// The intent a task asks for, with the subscriber's credentials read now for a push of
    /// them; `Err` when there is nothing to push.
    async fn intent_of(&self, app: &App, spec: &TaskSpec) -> Result<Result<Intent, Failure>> {
        Ok(Ok(match spec {
            TaskSpec::ConfigureWifi(change) => Intent::wifi(change),
            TaskSpec::ConfigurePppoe(PppoeCredentials::Given { username, password, connection }) => {
                Intent::pppoe(username.clone(), password.clone(), connection.clone())
            }
            TaskSpec::ConfigurePppoe(PppoeCredentials::Subscriber) => {
                let Some(subscriber) = subscribers::of_device(&app.store, self.device.id).await? else {
                    let message = "The device is not linked to a subscriber any more; nothing to push".to_owned();
                    return Ok(Err(Failure::new(FaultCode::NoSubscriber, message)));
                };
                let password = match &subscriber.pppoe_password {
                    Some(sealed) => app.secrets.open_string(sealed)?,
                    None => String::new(),
                };
                Intent::pppoe(subscriber.pppoe_username, password, None)
            }
            TaskSpec::StartDiagnostic(request) => Intent::start_diagnostic(request),
            TaskSpec::CollectDiagnostic(kind) => Intent::diagnostic_result(*kind),
            other => return Ok(Err(Failure::new(FaultCode::InvalidTask, format!("{other:?} is not an intent")))),
        }))
    }

    /// Closes a task whose intent's provisioning is over, and moves its diagnostic along.
    async fn intent_ended(&mut self, app: &App, run: &TaskRun) -> Result<()> {
        let Some(provisioning) = &run.intent else { return Ok(()) };
        let outcome = provisioning.task_outcome();
        match &outcome {
            Ok(value) => {
                let result = if value.is_null() { json!({}) } else { value.clone() };
                tasks::mark_done(&app.store, run.task.id, Some(&result)).await?;
                app.metrics.tasks.inc(&run.task.name, "done");
            }
            Err(fault) => {
                let failure =
                    Failure { code: fault.code, message: fault.message.clone(), detail: fault.detail.clone() };
                tasks::mark_fault(&app.store, &run.task, failure.code, &failure.message, failure.detail.as_ref())
                    .await?;
                app.metrics.tasks.inc(&run.task.name, "fault");
            }
        }
        if matches!(run.spec, TaskSpec::StartDiagnostic(_) | TaskSpec::CollectDiagnostic(_))
            && self.diagnostic_moved(app, run, outcome).await?
        {
            // The next run of the same request (a speed test's upload) starts in this session.
            self.may_have_tasks = true;
        }
        app.task_finished(run.task.id);
        Ok(())
    }

    /// Records what a diagnostic's start or collect task came to; whether a task was queued
    /// for the run that waited for this one.
    async fn diagnostic_moved(
        &self,
        app: &App,
        run: &TaskRun,
        outcome: Result<serde_json::Value, TaskFault>,
    ) -> Result<bool> {
        let Some(diagnostic) = diagnostics::of_task(&app.store, self.device.id, run.task.id).await? else {
            return Ok(false);
        };
        let fault = |status| diagnostics::Collected { status, state: None, results: None, raw: None, summary: None };
        let next = match (&run.spec, outcome) {
            (_, Err(failure)) => {
                let fault_note = Some((failure.code, failure.message.as_str()));
                diagnostics::finish(&app.store, &diagnostic, &self.device, fault(RunStatus::Fault), fault_note).await?
            }
            (TaskSpec::StartDiagnostic(_), Ok(_)) => {
                diagnostics::requested(&app.store, &diagnostic).await?;
                None
            }
            (_, Ok(report)) if report.is_null() => {
                let message = "The device's adapter reports no such diagnostic on this device";
                let note = Some((FaultCode::InvalidTask, message));
                diagnostics::finish(&app.store, &diagnostic, &self.device, fault(RunStatus::Fault), note).await?
            }
            (_, Ok(report)) => {
                let collected = self.collected(app, &diagnostic, report).await?;
                diagnostics::finish(&app.store, &diagnostic, &self.device, collected, None).await?
            }
        };
        Ok(next.is_some())
    }

    /// A collected report as the run keeps it: its state, the canonical results, the data
    /// model's own values of the diagnostic's object, and the normalized figures.
    async fn collected(
        &self,
        app: &App,
        diagnostic: &diagnostics::Run,
        report: serde_json::Value,
    ) -> Result<diagnostics::Collected> {
        let state = report.get("state").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        let status = crate::diagnostics::status_of(&state);
        let results = report.get("results").filter(|r| !r.is_null()).cloned();
        let kind = diagnostic.kind();
        let summary = match (kind, &results) {
            (Some(kind), Some(results)) if status == RunStatus::Complete => {
                Some(crate::diagnostics::summary(kind, results))
            }
            _ => None,
        };
        let object = self.device.model().zip(kind).and_then(|(model, kind)| crate::diagnostics::object(model, kind));
        let raw = match object {
            Some(object) => {
                let rows = parameters::list(&app.store, self.device.id, object, None, 1000).await?;
                let values: serde_json::Map<String, serde_json::Value> = rows
                    .into_iter()
                    .filter(|p| !p.is_object)
                    .map(|p| (p.path[object.len()..].to_owned(), json!(p.value)))
                    .collect();
                Some(serde_json::Value::Object(values))
            }
            None => None,
        };
        Ok(diagnostics::Collected { status, state: Some(state), results, raw, summary })
    }

    pub(super) async fn continue_task(
        &mut self,
        app: &Arc<App>,
        mut run: Box<TaskRun>,
        answer: Answer,
    ) -> Result<Option<AcsRequest>> {
        if let Some(provisioning) = run.intent.as_mut() {
            // Provisioning takes faults and missing answers itself: they are the task's.
            if let Some(request) = provisioning.next(&app.provisioning, answer).await? {
                self.work = Some(Work::Task(run));
                return Ok(Some(request));
            }
            self.intent_ended(app, &run).await?;
            return Ok(None);
        }
        if let Some(failure) = answered::failure(&answer) {
            self.task_failed(app, &run.task, failure).await?;
            return Ok(None);
        }
        let Answer::Response(response) = answer else { return Ok(None) };
        let outcome = self.task_response(app, &mut run, response).await?;
        match outcome {
            Outcome::Continue(request) => {
                self.work = Some(Work::Task(run));
                Ok(Some(request))
            }
            Outcome::Done(result) => {
                tasks::mark_done(&app.store, run.task.id, Some(&result)).await?;
                app.metrics.tasks.inc(&run.task.name, "done");
                app.task_finished(run.task.id);
                Ok(None)
            }
            Outcome::Transferring => {
                tasks::mark_transferring(&app.store, run.task.id, &format!("roost-{}", run.task.id)).await?;
                Ok(None)
            }
            Outcome::Failed(failure) => {
                self.task_failed(app, &run.task, failure).await?;
                Ok(None)
            }
        }
    }

    async fn task_response(&mut self, app: &Arc<App>, run: &mut TaskRun, response: CpeResponse) -> Result<Outcome> {
        let device_pk = self.device.id;
        let now = now_millis();
        if let Some((instance, refresh)) = run.follow_up.as_mut() {
            let instance = *instance;
            if let Some(request) = self.refreshed(app, refresh, response).await? {
                return Ok(Outcome::Continue(request));
            }
            let Some(expansion) = run.expansion.as_mut() else {
                return Ok(Outcome::Done(match instance {
                    Some(n) => json!({ "instanceNumber": n }),
                    None => json!({}),
                }));
            };
            // One object read: its leaves join the result; then the next object, the named
            // leaves, or the end.
            let paths = parameters::leaf_paths(&app.store, device_pk, &refresh.prefix).await?;
            let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
            let stored = parameters::stored_values(&app.store, device_pk, &path_refs).await?;
            expansion.values.extend(paths.iter().filter_map(|path| {
                let (value, value_type) = stored.get(path)?;
                Some(ParameterValue {
                    name: path.clone(),
                    value: value.clone().unwrap_or_default(),
                    value_type: ValueType::parse(value_type),
                })
            }));
            if let Some(object) = expansion.objects.pop_front() {
                let mut next = Refresh::new(object, self.learnt_batch(), now_millis());
                let request = next.first_request();
                run.follow_up = Some((None, next));
                return Ok(Outcome::Continue(request));
            }
            run.follow_up = None;
            if !expansion.leaves.is_empty() {
                return Ok(Outcome::Continue(AcsRequest::GetParameterValues { names: expansion.leaves.clone() }));
            }
            return Ok(Outcome::Done(json!({ "parameterValues": values_json(&expansion.values) })));
        }
        let earlier = run.expansion.take().map(|e| e.values).unwrap_or_default();
        Ok(match answered::decide(&run.spec, &run.task.name, response, self.device.model(), earlier, now) {
            Decided::Done { result, writes } => {
                answers::apply(&app.store, &app.secrets, device_pk, writes).await?;
                Outcome::Done(result)
            }
            Decided::Transferring => Outcome::Transferring,
            Decided::Failed(failure) => Outcome::Failed(failure),
            Decided::Refresh { object, listing } => {
                let mut refresh = Refresh::new(object, self.learnt_batch(), run.task.created_at.min(now));
                match self.refreshed(app, &mut refresh, listing).await? {
                    Some(request) => {
                        run.follow_up = Some((None, refresh));
                        Outcome::Continue(request)
                    }
                    None => Outcome::Done(json!({})),
                }
            }
            Decided::ReadInstance { prefix, instance } => {
                let mut refresh = Refresh::new(prefix, self.learnt_batch(), now);
                let request = refresh.first_request();
                run.follow_up = Some((Some(instance), refresh));
                Outcome::Continue(request)
            }
        })
    }

    /// Records why a task failed (and ends the diagnostic run it was for), and wakes whoever
    /// waits on it.
    async fn task_failed(&mut self, app: &App, task: &TaskRow, failure: Failure) -> Result<()> {
        tasks::mark_fault(&app.store, task, failure.code, &failure.message, failure.detail.as_ref()).await?;
        app.metrics.tasks.inc(&task.name, "fault");
        if diagnostics::end_with_task(&app.store, &self.device, task.id, failure.code, &failure.message)
            .await?
            .is_some()
        {
            // The next run of the same request (a speed test's upload) may start in this session.
            self.may_have_tasks = true;
        }
        app.task_finished(task.id);
        Ok(())
    }
}

/// Closes the transfer task a TransferComplete reports on. Idempotent: the CPE re-sends until it
/// gets the response, and a task already closed stays as it is.
pub async fn transfer_complete(app: &Arc<App>, device: &Device, complete: &TransferComplete) -> Result<()> {
    let Some(task) = tasks::by_command_key(&app.store, device.id, &complete.command_key).await? else {
        if let Some(preset) = complete.command_key.strip_prefix("roost-preset-")
            && complete.fault.code != 0
        {
            let message = format!("The download preset {preset} failed: {}", complete.fault.string);
            faults::record(
                &app.store,
                device.id,
                &format!("preset:{preset}"),
                FaultCode::Cwmp(complete.fault.code),
                &message,
                None,
            )
            .await?;
            return Ok(());
        }
        tracing::info!(device = %device.device_id, command_key = %complete.command_key, "TransferComplete for no known task");
        return Ok(());
    };
    if task.status != TaskStatus::Pending {
        return Ok(());
    }
    if complete.fault.code == 0 {
        let result = json!({ "startTime": complete.start_time, "completeTime": complete.complete_time });
        tasks::mark_done(&app.store, task.id, Some(&result)).await?;
        app.metrics.tasks.inc(&task.name, "done");
    } else {
        let message = if complete.fault.string.is_empty() {
            format!("Transfer failed with fault {}", complete.fault.code)
        } else {
            complete.fault.string.clone()
        };
        tasks::mark_fault(&app.store, &task, FaultCode::Cwmp(complete.fault.code), &message, None).await?;
        app.metrics.tasks.inc(&task.name, "fault");
    }
    app.task_finished(task.id);
    Ok(())
}
