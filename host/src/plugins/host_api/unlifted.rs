//! The two host functions that take a plugin's text of any size, `declare` and `log`, look at
//! the text where it lies, in the plugin's memory, and copy it only once it fits the run's limits.
//!
//! The bindings `bindgen!` generates lift every `string` into a host `String` before host code
//! runs: a plugin that declares a 64 MiB value made the server allocate 64 MiB (and more) only to
//! refuse it. These definitions replace the generated ones in the linker; they lift strings as
//! `WasmStr` (a bounds-checked range of the plugin's memory), measure them, and hand the generated
//! `declare::Host` and `log::Host` implementations owned values only when those will be kept.
//! (Measuring UTF-8 text, which the Rust SDK's components use, copies nothing; a component that
//! declared UTF-16 strings would have them transcoded, and so copied, first.)

use std::borrow::Cow;

use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker, WasmStr};

use super::{RunState, SCALAR_VALUE_BYTES, Value, declare, log};

/// The WIT `declaration` record, its strings unlifted. Field names and order are the WIT's:
/// instantiation checks them against the component's import.
#[derive(ComponentType, Lift)]
#[component(record)]
struct Declaration {
    path: WasmStr,
    #[component(name = "max-age-ms")]
    max_age_ms: Option<u64>,
    value: Option<UnliftedValue>,
    instances: Option<declare::InstanceCount>,
}

/// The WIT `value` variant, its strings unlifted.
#[derive(ComponentType, Lift)]
#[component(variant)]
enum UnliftedValue {
    #[component(name = "text")]
    Text(WasmStr),
    #[component(name = "signed")]
    Signed(i64),
    #[component(name = "unsigned")]
    Unsigned(u64),
    #[component(name = "boolean")]
    Boolean(bool),
    #[component(name = "date-time")]
    DateTime(WasmStr),
    #[component(name = "base64")]
    Base64(WasmStr),
    #[component(name = "hex-binary")]
    HexBinary(WasmStr),
}

/// Replaces the generated `declare` and `log` in `linker` (after `add_to_linker`).
///
/// The names carry the host's version: the linker holds each name exactly as defined, and finds
/// it for a component's import either exactly or, for an import of another version of the track,
/// through the track's newest definition. A replacement under `@0.1.0` beside the generated
/// `@0.1.1` would be what 0.1.0 components get while 0.1.1 components got the generated one.
pub(in crate::plugins) fn shadow_generated(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    let declare_interface = format!("roost:plugin/declare@{}", super::super::API_VERSION);
    let log_interface = format!("roost:plugin/log@{}", super::super::API_VERSION);
    linker.allow_shadowing(true);
    linker.instance(&declare_interface)?.func_wrap(
        "declare",
        |mut store: StoreContextMut<'_, RunState>, (declaration,): (Declaration,)| {
            let outcome = match lift_declaration(&store, declaration)? {
                Ok(declaration) => declare::Host::declare(store.data_mut(), declaration),
                Err(refused) => Err(refused),
            };
            Ok((outcome,))
        },
    )?;
    linker.instance(&log_interface)?.func_wrap(
        "log",
        |mut store: StoreContextMut<'_, RunState>, (level, message): (log::Level, WasmStr)| {
            let kept = {
                let state = store.data();
                let room = state.limits.max_log_bytes.saturating_sub(state.output.log_bytes);
                let full = state.output.logs.len() >= state.limits.max_log_messages;
                let text = message.to_str(&store)?;
                (!full && text.len() <= room).then(|| text.into_owned())
            };
            match kept {
                Some(message) => log::Host::log(store.data_mut(), level, message),
                None => store.data_mut().output.logs_dropped += 1,
            }
            Ok(())
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The declaration as the generated bindings would have lifted it, or the refusal of one larger
/// than what is left of the run's `max_declaration_bytes`, made before anything is copied. Text
/// that is not UTF-8 traps, as the generated lifting does.
fn lift_declaration(
    store: &StoreContextMut<'_, RunState>,
    declaration: Declaration,
) -> wasmtime::Result<Result<declare::Declaration, super::Error>> {
    let state = store.data();
    // The limits in the order the bindings' `declare` checks them: the count first.
    if state.output.declarations.len() >= state.limits.max_declarations {
        return Ok(Err(state.too_many_declarations()));
    }
    let room = state.limits.max_declaration_bytes.saturating_sub(state.output.declaration_bytes);
    let path = declaration.path.to_str(store)?;
    let text = match &declaration.value {
        Some(
            UnliftedValue::Text(text)
            | UnliftedValue::DateTime(text)
            | UnliftedValue::Base64(text)
            | UnliftedValue::HexBinary(text),
        ) => Some(text.to_str(store)?),
        _ => None,
    };
    let value_bytes = match (&declaration.value, &text) {
        (None, _) => 0,
        (Some(_), Some(text)) => text.len(),
        (Some(_), None) => SCALAR_VALUE_BYTES,
    };
    if path.len() + value_bytes > room {
        return Ok(Err(state.declarations_too_large()));
    }
    // It fits: now copy, once.
    let mut text = text.map(Cow::into_owned).unwrap_or_default();
    let value = declaration.value.map(|value| match value {
        UnliftedValue::Text(_) => Value::Text(std::mem::take(&mut text)),
        UnliftedValue::DateTime(_) => Value::DateTime(std::mem::take(&mut text)),
        UnliftedValue::Base64(_) => Value::Base64(std::mem::take(&mut text)),
        UnliftedValue::HexBinary(_) => Value::HexBinary(std::mem::take(&mut text)),
        UnliftedValue::Signed(n) => Value::Signed(n),
        UnliftedValue::Unsigned(n) => Value::Unsigned(n),
        UnliftedValue::Boolean(b) => Value::Boolean(b),
    });
    Ok(Ok(declare::Declaration {
        path: path.into_owned(),
        max_age_ms: declaration.max_age_ms,
        value,
        instances: declaration.instances,
    }))
}
