//! The driver's queued tasks: each task's first request, its answers, and how it ends.

use std::sync::Arc;

use anyhow::Result;
use roost_cwmp::{AcsRequest, CpeResponse, Download, ParameterValue, TransferComplete, Upload, ValueType};
use serde_json::{Value, json};

use crate::answers::refresh::Refresh;
use crate::answers::{self, Answer, StoreWrite, describe_unanswered, spv_fault_detail, unanswered_code};
use crate::app::App;
use crate::store::devices::Device;
use crate::store::tasks::{TaskRow, TaskStatus};
use crate::store::{faults, now_millis, parameters, tasks};
use crate::tasks::{ParameterWrite, TaskSpec};

use super::{Driver, MAX_ATTEMPTS, Work};

#[derive(Debug)]
pub(super) struct TaskRun {
    pub(super) task: TaskRow,
    spec: TaskSpec,
    /// The subtree refresh a refreshObject runs, or an addObject runs on its new instance
    /// (with the instance number to report).
    follow_up: Option<(Option<u32>, Refresh)>,
    /// A getParameterValues naming objects, read object by object.
    expansion: Option<Expansion>,
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
    Failed {
        code: String,
        message: String,
        detail: Option<Value>,
    },
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
        let spec = match serde_json::from_str::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|body| TaskSpec::parse(&body).map(|(_, spec)| spec).map_err(|e| e.0))
        {
            Ok(spec) => spec,
            Err(error) => {
                // Only possible for rows written by hand or by an older version: fail, don't loop.
                tasks::mark_fault(&app.store, &task, "invalid_task", &error, None).await?;
                app.task_finished(task.id);
                return Ok(Some((
                    Work::Task(Box::new(TaskRun { task, spec: TaskSpec::Reboot, follow_up: None, expansion: None })),
                    None,
                )));
            }
        };
        if task.attempts >= MAX_ATTEMPTS {
            let message = format!("Sent {MAX_ATTEMPTS} times without an answer; the session died each time");
            tasks::mark_fault(&app.store, &task, "too_many_attempts", &message, None).await?;
            app.task_finished(task.id);
            return Ok(Some((Work::Task(Box::new(TaskRun { task, spec, follow_up: None, expansion: None })), None)));
        }
        let request = self.first_task_request(app, &task, &spec).await?;
        // On success the store takes what was sent, with the type sent: a value given without
        // one was sent with the stored type, which must not become the default xsd:string.
        let spec = match (spec, &request) {
            (TaskSpec::SetParameterValues { .. }, AcsRequest::SetParameterValues { values, .. }) => {
                TaskSpec::SetParameterValues {
                    values: values
                        .iter()
                        .map(|p| ParameterWrite {
                            path: p.name.clone(),
                            value: p.value.clone(),
                            value_type: Some(p.value_type.clone()),
                        })
                        .collect(),
                }
            }
            (spec, _) => spec,
        };
        tasks::mark_attempt(&app.store, task.id).await?;
        let mut run = TaskRun { task, spec, follow_up: None, expansion: None };
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

    async fn first_task_request(&self, app: &Arc<App>, task: &TaskRow, spec: &TaskSpec) -> Result<AcsRequest> {
        let command_key = format!("roost-{}", task.id);
        let needs_key = matches!(
            spec,
            TaskSpec::Reboot | TaskSpec::Download(_) | TaskSpec::Upload(_) | TaskSpec::ScheduleInform { .. }
        );
        if needs_key && task.command_key != command_key {
            tasks::set_command_key(&app.store, task.id, &command_key).await?;
        }
        Ok(match spec {
            TaskSpec::GetParameterValues { names, .. } => AcsRequest::GetParameterValues { names: names.clone() },
            TaskSpec::SetParameterValues { values } => {
                let untyped: Vec<&str> =
                    values.iter().filter(|w| w.value_type.is_none()).map(|w| w.path.as_str()).collect();
                let stored = if untyped.is_empty() {
                    Default::default()
                } else {
                    parameters::stored_values(&app.store, self.device.id, &untyped).await?
                };
                let values = values
                    .iter()
                    .map(|write| ParameterValue {
                        name: write.path.clone(),
                        value: write.value.clone(),
                        // Always send xsi:type: the stored one when the caller gave none.
                        value_type: write.value_type.clone().unwrap_or_else(|| {
                            stored
                                .get(&write.path)
                                .map(|(_, t)| ValueType::parse(t))
                                .filter(|t| !t.as_str().is_empty())
                                .unwrap_or_default()
                        }),
                    })
                    .collect();
                AcsRequest::SetParameterValues { values, parameter_key: command_key }
            }
            TaskSpec::RefreshObject { object } => {
                AcsRequest::GetParameterNames { parameter_path: object.clone(), next_level: false }
            }
            TaskSpec::AddObject { object } => {
                AcsRequest::AddObject { object_name: object.clone(), parameter_key: command_key }
            }
            TaskSpec::DeleteObject { object } => {
                AcsRequest::DeleteObject { object_name: object.clone(), parameter_key: command_key }
            }
            TaskSpec::Reboot => AcsRequest::Reboot { command_key },
            TaskSpec::FactoryReset => AcsRequest::FactoryReset,
            TaskSpec::Download(d) => AcsRequest::Download(Download {
                command_key,
                file_type: d.file_type.clone(),
                url: d.url.clone(),
                username: d.username.clone(),
                password: d.password.clone(),
                file_size: d.file_size,
                target_file_name: d.target_file_name.clone(),
                delay_seconds: d.delay_seconds,
                success_url: String::new(),
                failure_url: String::new(),
            }),
            TaskSpec::Upload(u) => AcsRequest::Upload(Upload {
                command_key,
                file_type: u.file_type.clone(),
                url: u.url.clone(),
                username: u.username.clone(),
                password: u.password.clone(),
                delay_seconds: u.delay_seconds,
            }),
            TaskSpec::ScheduleInform { delay_seconds } => {
                AcsRequest::ScheduleInform { delay_seconds: *delay_seconds, command_key }
            }
            TaskSpec::GetParameterAttributes { names } => AcsRequest::GetParameterAttributes { names: names.clone() },
            TaskSpec::SetParameterAttributes { attributes } => {
                AcsRequest::SetParameterAttributes { attributes: attributes.clone() }
            }
        })
    }

    pub(super) async fn continue_task(
        &mut self,
        app: &Arc<App>,
        mut run: Box<TaskRun>,
        answer: Answer,
    ) -> Result<Option<AcsRequest>> {
        let outcome = match answer {
            Answer::Nothing => return Ok(None),
            Answer::Fault(fault) => Outcome::Failed {
                code: fault.code.to_string(),
                message: fault.string.clone(),
                detail: spv_fault_detail(&fault),
            },
            Answer::Unanswered(reason) => Outcome::Failed {
                code: unanswered_code(&reason).into(),
                message: describe_unanswered(&reason),
                detail: None,
            },
            Answer::Response(response) => self.task_response(app, &mut run, response).await?,
        };
        match outcome {
            Outcome::Continue(request) => {
                self.work = Some(Work::Task(run));
                Ok(Some(request))
            }
            Outcome::Done(result) => {
                tasks::mark_done(&app.store, run.task.id, Some(&result)).await?;
                app.task_finished(run.task.id);
                Ok(None)
            }
            Outcome::Transferring => {
                tasks::mark_transferring(&app.store, run.task.id, &format!("roost-{}", run.task.id)).await?;
                Ok(None)
            }
            Outcome::Failed { code, message, detail } => {
                tasks::mark_fault(&app.store, &run.task, &code, &message, detail.as_ref()).await?;
                app.task_finished(run.task.id);
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
        Ok(match (&run.spec, response) {
            (TaskSpec::GetParameterValues { names, .. }, CpeResponse::GetParameterValues { parameters: values }) => {
                if values.is_empty() {
                    // INTEROP: an empty list for explicit names is a failure without a fault.
                    return Ok(Outcome::Failed {
                        code: "empty_response".into(),
                        message: format!("The CPE returned no values for {}", names.join(", ")),
                        detail: None,
                    });
                }
                let write = StoreWrite::Read { values: values.clone(), at: now };
                answers::apply(&app.store, &app.secrets, device_pk, vec![write]).await?;
                let mut all = run.expansion.take().map(|e| e.values).unwrap_or_default();
                all.extend(values);
                Outcome::Done(json!({ "parameterValues": values_json(&all) }))
            }
            (TaskSpec::SetParameterValues { .. }, CpeResponse::SetParameterValues { status }) => {
                if let TaskSpec::SetParameterValues { values } = &run.spec {
                    let written: Vec<ParameterValue> = values
                        .iter()
                        .map(|write| ParameterValue {
                            name: write.path.clone(),
                            value: write.value.clone(),
                            value_type: write.value_type.clone().unwrap_or_default(),
                        })
                        .collect();
                    let write = StoreWrite::Accepted { values: written, model: self.device.model(), at: now };
                    answers::apply(&app.store, &app.secrets, device_pk, vec![write]).await?;
                }
                Outcome::Done(json!({ "status": status }))
            }
            (TaskSpec::RefreshObject { object }, response @ CpeResponse::GetParameterNames { .. }) => {
                let mut refresh = Refresh::new(object.clone(), self.learnt_batch(), run.task.created_at.min(now));
                let next = self.refreshed(app, &mut refresh, response).await?;
                match next {
                    Some(request) => {
                        run.follow_up = Some((None, refresh));
                        Outcome::Continue(request)
                    }
                    None => Outcome::Done(json!({})),
                }
            }
            (TaskSpec::AddObject { object }, CpeResponse::AddObject { instance_number, status }) => {
                let instance_number = match answers::added_instance(instance_number, status) {
                    Ok(number) => number,
                    Err(why) => {
                        return Ok(Outcome::Failed {
                            code: "invalid_response".into(),
                            message: format!("AddObject {why}"),
                            detail: None,
                        });
                    }
                };
                let mut refresh = Refresh::new(format!("{object}{instance_number}."), self.learnt_batch(), now);
                let request = refresh.first_request();
                run.follow_up = Some((Some(instance_number), refresh));
                Outcome::Continue(request)
            }
            (TaskSpec::DeleteObject { object }, CpeResponse::DeleteObject { status }) => {
                if status > 1 {
                    return Ok(Outcome::Failed {
                        code: "invalid_response".into(),
                        message: format!("DeleteObject answered Status {status}"),
                        detail: None,
                    });
                }
                let write = StoreWrite::Deleted { object: object.clone() };
                answers::apply(&app.store, &app.secrets, device_pk, vec![write]).await?;
                Outcome::Done(json!({ "status": status }))
            }
            (TaskSpec::Reboot, CpeResponse::Reboot)
            | (TaskSpec::ScheduleInform { .. }, CpeResponse::ScheduleInform)
            | (TaskSpec::SetParameterAttributes { .. }, CpeResponse::SetParameterAttributes) => {
                Outcome::Done(json!({}))
            }
            (TaskSpec::FactoryReset, CpeResponse::FactoryReset) => {
                answers::apply(&app.store, &app.secrets, device_pk, vec![StoreWrite::Reset]).await?;
                Outcome::Done(json!({}))
            }
            (TaskSpec::Download(_), CpeResponse::Download { status, start_time, complete_time })
            | (TaskSpec::Upload(_), CpeResponse::Upload { status, start_time, complete_time }) => match status {
                0 => Outcome::Done(json!({ "startTime": start_time, "completeTime": complete_time })),
                _ => Outcome::Transferring,
            },
            (
                TaskSpec::GetParameterAttributes { .. },
                CpeResponse::GetParameterAttributes { parameters: attributes },
            ) => {
                let attributes: Vec<Value> = attributes
                    .iter()
                    .map(|a| json!({ "name": a.name, "notification": a.notification, "accessList": a.access_list }))
                    .collect();
                Outcome::Done(json!({ "parameterAttributes": attributes }))
            }
            (_, other) => Outcome::Failed {
                code: "wrong_response".into(),
                message: format!("Unexpected {}Response for task {}", other.method_name(), run.task.name),
                detail: None,
            },
        })
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
            let code = complete.fault.code.to_string();
            faults::record(&app.store, device.id, device.org_id, &format!("preset:{preset}"), &code, &message, None)
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
    } else {
        let message = if complete.fault.string.is_empty() {
            format!("Transfer failed with fault {}", complete.fault.code)
        } else {
            complete.fault.string.clone()
        };
        tasks::mark_fault(&app.store, &task, &complete.fault.code.to_string(), &message, None).await?;
    }
    app.task_finished(task.id);
    Ok(())
}

fn values_json(values: &[ParameterValue]) -> Vec<Value> {
    values.iter().map(|p| json!([p.name, p.value, p.value_type.as_str()])).collect()
}
