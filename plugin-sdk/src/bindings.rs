//! Code generated from `wit/roost-plugin@0.1.1`. Plugin authors use the crate root instead;
//! these are public only because the export macros expand inside the plugin's crate.
//!
//! The adapter world reuses the provision world's types (`with`), so one `Value`, one
//! `WifiSettings`, … serve both worlds. Every adapter is built as the `radio-adapter` world (the
//! `adapter` world and `radio`); [`crate::Adapter::cellular`] answers `unsupported` unless the
//! adapter implements it.

#![allow(missing_docs, clippy::all)]

pub mod provision {
    wit_bindgen::generate!({
        world: "provision",
        path: "wit/roost-plugin@0.1.1",
        pub_export_macro: true,
        export_macro_name: "__roost_export_provision_world",
        default_bindings_module: "roost_plugin_sdk::__private::bindings::provision",
        runtime_path: "roost_plugin_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            // One definition of a value for the host, the SDK and its test device.
            "roost:plugin/types@0.1.1/value": roost_params::Value,
        },
    });
}

pub mod adapter {
    wit_bindgen::generate!({
        world: "radio-adapter",
        path: "wit/roost-plugin@0.1.1",
        pub_export_macro: true,
        export_macro_name: "__roost_export_adapter_world",
        default_bindings_module: "roost_plugin_sdk::__private::bindings::adapter",
        runtime_path: "roost_plugin_sdk::__private::wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "roost:plugin/types@0.1.1": crate::bindings::provision::roost::plugin::types,
            "roost:plugin/intent-types@0.1.1": crate::bindings::provision::roost::plugin::intent_types,
            "roost:plugin/radio-types@0.1.1": crate::bindings::provision::roost::plugin::radio_types,
            "roost:plugin/device@0.1.1": crate::bindings::provision::roost::plugin::device,
            "roost:plugin/declare@0.1.1": crate::bindings::provision::roost::plugin::declare,
            "roost:plugin/log@0.1.1": crate::bindings::provision::roost::plugin::log,
        },
    });
}
