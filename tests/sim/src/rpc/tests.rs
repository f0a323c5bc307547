use std::sync::{Arc, OnceLock};

use roost_cwmp::fault::cpe_codes;
use roost_cwmp::{AcsRequest, CpeBody, CpeResponse, ParameterValue, SetParameterAttribute, ValueType};

use super::*;
use crate::tree::{CsvLayout, DataModel, DataModelKind, ParameterTree};
use crate::{bundled_model_path, data_dir};

fn model(kind: DataModelKind) -> Arc<DataModel> {
    static TR098: OnceLock<Arc<DataModel>> = OnceLock::new();
    static TR181: OnceLock<Arc<DataModel>> = OnceLock::new();
    let cell = match kind {
        DataModelKind::Tr098 => &TR098,
        DataModelKind::Tr181 => &TR181,
    };
    cell.get_or_init(|| Arc::new(DataModel::load(bundled_model_path(kind)).unwrap())).clone()
}

fn cpe(kind: DataModelKind) -> CpeState {
    CpeState::new(ParameterTree::new(model(kind)))
}

fn names(list: &[ParameterInfo]) -> Vec<&str> {
    list.iter().map(|p| p.name.as_str()).collect()
}

fn fault_of(handled: &Handled) -> &Fault {
    match &handled.body {
        CpeBody::Fault(fault) => fault,
        other => panic!("expected a fault, got {other:?}"),
    }
}

fn pv(name: &str, value: &str, value_type: ValueType) -> ParameterValue {
    ParameterValue { name: name.into(), value: value.into(), value_type }
}

// ---- loading -------------------------------------------------------------------------------

#[test]
fn every_bundled_csv_loads_with_the_counts_the_readme_gives() {
    // (file, parameters, objects, layout, root kind, serial from the DeviceID rows)
    let expected = [
        (
            "huawei-eg8145v5_tr098_genieacs-export.csv",
            3147,
            643,
            CsvLayout::GenieAcsExport,
            DataModelKind::Tr098,
            "48575443A94196A5",
        ),
        (
            "zte-zxhn-h199a_tr098_genieacs-export.csv",
            1457,
            284,
            CsvLayout::GenieAcsExport,
            DataModelKind::Tr098,
            "ZTEYH86LCN10105",
        ),
        (
            "nokia-g-1425g-a_tr098_genieacs-export.csv",
            3188,
            563,
            CsvLayout::GenieAcsExport,
            DataModelKind::Tr098,
            "ALCLFC265D6F",
        ),
        (
            "tplink-xx230v_tr181_genieacs-export.csv",
            5420,
            980,
            CsvLayout::GenieAcsExport,
            DataModelKind::Tr181,
            "22275A7000395",
        ),
        (
            "huawei-bm632w_tr098_genieacs-sim.csv",
            792,
            210,
            CsvLayout::GenieAcsSim,
            DataModelKind::Tr098,
            "8KA8WA1151100043",
        ),
    ];
    let mut seen = 0;
    for entry in std::fs::read_dir(data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("csv") {
            continue;
        }
        seen += 1;
        let file = path.file_name().unwrap().to_str().unwrap();
        let (_, parameters, objects, layout, kind, serial) =
            expected.iter().find(|e| e.0 == file).unwrap_or_else(|| panic!("no expectation for {file}"));
        let model = DataModel::load(&path).unwrap();
        assert_eq!(model.parameter_count(), *parameters, "{file} parameters");
        assert_eq!(model.object_count(), *objects, "{file} objects");
        assert_eq!(model.layout(), *layout, "{file} layout");
        assert_eq!(model.kind(), *kind, "{file} root");
        // GenieACS bookkeeping rows are not parameters, but they do give the identity.
        assert!(model.iter().all(|(k, _)| !k.starts_with("DeviceID") && !k.starts_with("Events")), "{file}");
        assert_eq!(model.export_identity().unwrap().serial_number, *serial, "{file}");
        assert!(model.node(model.root()).is_some_and(|n| n.object), "{file} root object");
    }
    assert_eq!(seen, expected.len(), "a CSV was added or removed under tests/data/cpe");
}

#[test]
fn odd_xsd_spellings_are_normalised_and_writable_flags_kept() {
    let nokia = DataModel::load(data_dir().join("nokia-g-1425g-a_tr098_genieacs-export.csv")).unwrap();
    let types: std::collections::HashSet<_> =
        nokia.iter().filter(|(_, n)| !n.object).map(|(_, n)| n.value_type.clone()).collect();
    assert!(types.contains(&ValueType::Base64));
    assert!(types.iter().all(|t| !matches!(t, ValueType::Other(_))), "{types:?}");
    let tplink = model(DataModelKind::Tr181);
    let url = tplink.node("Device.ManagementServer.ConnectionRequestURL").unwrap();
    assert!(!url.writable && !url.object);
    assert!(tplink.node("Device.ManagementServer.PeriodicInformInterval").unwrap().writable);
    assert_eq!(
        tplink.node("Device.ManagementServer.PeriodicInformInterval").unwrap().value_type,
        ValueType::UnsignedInt
    );
}

#[test]
fn a_multi_line_value_survives_loading() {
    // The EG8145V5 export carries a device log with embedded newlines in one value.
    let m = model(DataModelKind::Tr098);
    assert!(m.iter().any(|(_, n)| n.value.contains('\n') && n.value.contains("DiagnosticsState:Requested")));
}

#[test]
fn a_five_column_file_without_parent_rows_gets_its_objects() {
    let csv = "Parameter,Object,Writable,Value,Value type\n\
               Device.DeviceInfo.SoftwareVersion,false,false,1.0,xsd:string\n\
               Device.X.1.Y,false,true,5,xsd:unsignedInt\n";
    let model = DataModel::from_csv(csv.as_bytes()).unwrap();
    assert_eq!(model.layout(), CsvLayout::GenieAcsSim);
    assert_eq!(model.parameter_count(), 2);
    assert_eq!(model.object_count(), 4, "Device., DeviceInfo., X., X.1.");
    assert!(DataModel::from_csv("Name,Value\nx,1\n".as_bytes()).is_err());
}

// ---- GetParameterNames -----------------------------------------------------------------------

#[test]
fn gpn_on_the_empty_path_lists_the_root_or_everything() {
    let cpe = cpe(DataModelKind::Tr098);
    let top = cpe.get_parameter_names("", true).unwrap();
    assert_eq!(names(&top), ["InternetGatewayDevice."]);
    let all = cpe.get_parameter_names("", false).unwrap();
    assert_eq!(all.len(), 3147 + 643);
    assert_eq!(all[0].name, "InternetGatewayDevice.");
}

#[test]
fn gpn_next_level_on_the_root_lists_children_only() {
    let cpe = cpe(DataModelKind::Tr098);
    let list = cpe.get_parameter_names("InternetGatewayDevice.", true).unwrap();
    let list = names(&list);
    assert!(list.contains(&"InternetGatewayDevice.DeviceInfo."));
    assert!(list.contains(&"InternetGatewayDevice.DeviceSummary"));
    assert!(!list.contains(&"InternetGatewayDevice."), "NextLevel=true excludes the path itself");
    for name in &list {
        let rest = name.strip_prefix("InternetGatewayDevice.").unwrap();
        assert!(!rest.trim_end_matches('.').contains('.'), "{name} is more than one level down");
    }
}

#[test]
fn gpn_next_level_on_a_table_lists_its_instances_in_numeric_order() {
    let cpe = cpe(DataModelKind::Tr181);
    let list = cpe.get_parameter_names("Device.WiFi.SSID.", true).unwrap();
    let expected: Vec<String> = (1..=14).map(|i| format!("Device.WiFi.SSID.{i}.")).collect();
    assert_eq!(names(&list), expected.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(list.iter().all(|p| p.writable), "instances of a writable table are deletable");

    let subtree = cpe.get_parameter_names("Device.WiFi.SSID.1.", false).unwrap();
    assert_eq!(subtree[0].name, "Device.WiFi.SSID.1.", "NextLevel=false includes the object itself");
    assert!(subtree.iter().any(|p| p.name == "Device.WiFi.SSID.1.Stats."));
    assert!(subtree.iter().any(|p| p.name == "Device.WiFi.SSID.1.Stats.BytesSent"));
    assert!(subtree.iter().all(|p| p.name.starts_with("Device.WiFi.SSID.1.")));
}

#[test]
fn gpn_on_a_leaf_and_on_unknown_paths() {
    let cpe = cpe(DataModelKind::Tr181);
    let leaf = cpe.get_parameter_names("Device.ManagementServer.URL", false).unwrap();
    assert_eq!(names(&leaf), ["Device.ManagementServer.URL"]);
    assert!(leaf[0].writable);
    assert_eq!(cpe.get_parameter_names("Device.ManagementServer.URL", true).unwrap_err().code, 9003);
    assert_eq!(cpe.get_parameter_names("Device.NoSuchThing.", true).unwrap_err().code, 9005);
    // An object named without its dot is not a parameter name.
    assert_eq!(cpe.get_parameter_names("Device.ManagementServer", false).unwrap_err().code, 9005);
}

// ---- GetParameterValues ----------------------------------------------------------------------

#[test]
fn gpv_partial_path_expands_to_every_leaf_below() {
    let cpe = cpe(DataModelKind::Tr181);
    let values = cpe.get_parameter_values(&["Device.ManagementServer.".into()]).unwrap();
    let leaves = cpe.tree.walk("Device.ManagementServer.").filter(|(_, n)| !n.object).count();
    assert_eq!(values.len(), leaves);
    assert!(values.iter().all(|v| !v.name.ends_with('.')), "objects are not values");
    let interval = values.iter().find(|v| v.name == "Device.ManagementServer.PeriodicInformInterval").unwrap();
    assert_eq!((interval.value.as_str(), &interval.value_type), ("60", &ValueType::UnsignedInt));
    // Several names: in request order.
    let two = cpe
        .get_parameter_values(&["Device.DeviceInfo.SoftwareVersion".into(), "Device.RootDataModelVersion".into()])
        .unwrap();
    assert_eq!(two[0].name, "Device.DeviceInfo.SoftwareVersion");
    assert_eq!(two[1].name, "Device.RootDataModelVersion");
}

#[test]
fn gpv_unknown_name_faults_the_whole_request() {
    let cpe = cpe(DataModelKind::Tr098);
    let err = cpe
        .get_parameter_values(&[
            "InternetGatewayDevice.DeviceInfo.SoftwareVersion".into(),
            "InternetGatewayDevice.Nope".into(),
        ])
        .unwrap_err();
    assert_eq!(err.code, 9005);
    assert_eq!(cpe.get_parameter_values(&["InternetGatewayDevice.DeviceInfo".into()]).unwrap_err().code, 9005);
}

#[test]
fn passwords_read_back_empty_but_are_kept() {
    let mut cpe = cpe(DataModelKind::Tr181);
    let password = "Device.ManagementServer.ConnectionRequestPassword";
    let passphrase = "Device.WiFi.AccessPoint.1.Security.KeyPassphrase";
    cpe.set_local(password, "s3cret").unwrap();
    cpe.set_local(passphrase, "wifi-pass").unwrap();
    let values = cpe.get_parameter_values(&[password.into(), passphrase.into()]).unwrap();
    assert_eq!(values[0].value, "");
    assert_eq!(values[1].value, "");
    assert_eq!(cpe.value(password).unwrap().0, "s3cret");
    assert_eq!(cpe.value(passphrase).unwrap().0, "wifi-pass");
    // The username is not a secret.
    let user = cpe.get_parameter_values(&["Device.ManagementServer.ConnectionRequestUsername".into()]).unwrap();
    assert!(!user[0].value.is_empty());
}

// ---- SetParameterValues ----------------------------------------------------------------------

#[test]
fn spv_is_all_or_nothing_with_one_detail_per_bad_parameter() {
    let mut cpe = cpe(DataModelKind::Tr098);
    let interval = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
    let before = cpe.value(interval).unwrap().0;
    let key_path = "InternetGatewayDevice.ManagementServer.ParameterKey";
    let handled = cpe.handle(&AcsRequest::SetParameterValues {
        values: vec![
            pv(interval, "61", ValueType::UnsignedInt),
            pv("InternetGatewayDevice.DeviceInfo.NoSuchParameter", "x", ValueType::String),
            pv("InternetGatewayDevice.DeviceInfo.SoftwareVersion", "hacked", ValueType::String),
        ],
        parameter_key: "k1".into(),
    });
    let fault = fault_of(&handled);
    assert_eq!(fault.code, 9003);
    let details: Vec<(&str, u32)> =
        fault.set_parameter_values_faults.iter().map(|f| (f.parameter_name.as_str(), f.code)).collect();
    assert_eq!(
        details,
        [
            ("InternetGatewayDevice.DeviceInfo.NoSuchParameter", 9005),
            ("InternetGatewayDevice.DeviceInfo.SoftwareVersion", 9008)
        ]
    );
    assert_eq!(cpe.value(interval).unwrap().0, before, "nothing applied");
    assert_eq!(cpe.value(key_path).unwrap().0, "", "ParameterKey unchanged on failure");
    assert_eq!(cpe.tree.overlay_len(), 0);
}

#[test]
fn spv_rejects_values_and_types_that_do_not_fit() {
    let mut cpe = cpe(DataModelKind::Tr181);
    let interval = "Device.ManagementServer.PeriodicInformInterval";
    for bad in ["-5", "abc", "4294967296", ""] {
        let err = cpe.set_parameter_values(&[pv(interval, bad, ValueType::UnsignedInt)], "k").unwrap_err();
        assert_eq!(err.code, 9003);
        assert_eq!(err.set_parameter_values_faults[0].code, 9007, "{bad:?}");
    }
    let err = cpe.set_parameter_values(&[pv(interval, "60", ValueType::String)], "k").unwrap_err();
    assert_eq!(err.set_parameter_values_faults[0].code, 9006);
    cpe.strict_types = false;
    cpe.set_parameter_values(&[pv(interval, "60", ValueType::String)], "k").unwrap();
    // Booleans take 0/1/true/false only.
    let err = cpe
        .set_parameter_values(&[pv("Device.ManagementServer.PeriodicInformEnable", "yes", ValueType::Boolean)], "k")
        .unwrap_err();
    assert_eq!(err.set_parameter_values_faults[0].code, 9007);
}

#[test]
fn spv_with_a_name_twice_is_invalid_arguments() {
    let mut cpe = cpe(DataModelKind::Tr181);
    let interval = "Device.ManagementServer.PeriodicInformInterval";
    let err = cpe
        .set_parameter_values(
            &[pv(interval, "60", ValueType::UnsignedInt), pv(interval, "70", ValueType::UnsignedInt)],
            "k",
        )
        .unwrap_err();
    assert_eq!(err.code, 9003);
    assert_eq!(err.set_parameter_values_faults.len(), 1);
    assert_eq!(err.set_parameter_values_faults[0].code, cpe_codes::INVALID_ARGUMENTS);
    assert_eq!(cpe.value(interval).unwrap().0, "60");
}

#[test]
fn spv_success_applies_everything_and_sets_the_parameter_key() {
    let mut cpe = cpe(DataModelKind::Tr181);
    let handled = cpe.handle(&AcsRequest::SetParameterValues {
        values: vec![
            pv("Device.ManagementServer.PeriodicInformInterval", "300", ValueType::UnsignedInt),
            pv("Device.ManagementServer.ConnectionRequestPassword", "cr-pass", ValueType::String),
            pv("Device.WiFi.SSID.1.SSID", "Roost", ValueType::String),
        ],
        parameter_key: "rev-7".into(),
    });
    assert_eq!(handled.body, CpeBody::Response(CpeResponse::SetParameterValues { status: 0 }));
    assert_eq!(handled.after, None);
    assert_eq!(cpe.value("Device.ManagementServer.PeriodicInformInterval").unwrap().0, "300");
    assert_eq!(cpe.value("Device.ManagementServer.ConnectionRequestPassword").unwrap().0, "cr-pass");
    assert_eq!(cpe.value("Device.WiFi.SSID.1.SSID").unwrap().0, "Roost");
    assert_eq!(cpe.value("Device.ManagementServer.ParameterKey").unwrap().0, "rev-7");
}

#[test]
fn requesting_a_diagnostic_schedules_it_after_the_session() {
    let mut cpe = cpe(DataModelKind::Tr098);
    let handled = cpe.handle(&AcsRequest::SetParameterValues {
        values: vec![
            pv("InternetGatewayDevice.IPPingDiagnostics.Host", "192.0.2.7", ValueType::String),
            pv("InternetGatewayDevice.IPPingDiagnostics.DiagnosticsState", "Requested", ValueType::String),
        ],
        parameter_key: String::new(),
    });
    assert_eq!(
        handled.after,
        Some(AfterSession::Diagnostics { object: "InternetGatewayDevice.IPPingDiagnostics.".into() })
    );
    crate::diagnostics::complete(&mut cpe, "InternetGatewayDevice.IPPingDiagnostics.", None);
    assert_eq!(cpe.value("InternetGatewayDevice.IPPingDiagnostics.DiagnosticsState").unwrap().0, "Complete");
    assert_eq!(cpe.value("InternetGatewayDevice.IPPingDiagnostics.SuccessCount").unwrap().0, "4");
    crate::diagnostics::complete(&mut cpe, "InternetGatewayDevice.DownloadDiagnostics.", None);
    assert_eq!(cpe.value("InternetGatewayDevice.DownloadDiagnostics.DiagnosticsState").unwrap().0, "Completed");
    crate::diagnostics::complete(&mut cpe, "InternetGatewayDevice.TraceRouteDiagnostics.", None);
    assert!(cpe.tree.has_parameter("InternetGatewayDevice.TraceRouteDiagnostics.RouteHops.1.HopHost"));
}

// ---- attributes ------------------------------------------------------------------------------

#[test]
fn attributes_are_kept_per_parameter_and_partial_paths_expand() {
    let mut cpe = cpe(DataModelKind::Tr181);
    cpe.set_parameter_attributes(&[SetParameterAttribute {
        name: "Device.ManagementServer.".into(),
        notification_change: true,
        notification: 2,
        access_list_change: true,
        access_list: vec!["Subscriber".into()],
    }])
    .unwrap();
    let got = cpe.get_parameter_attributes(&["Device.ManagementServer.URL".into()]).unwrap();
    assert_eq!(got[0].notification, 2);
    assert_eq!(got[0].access_list, ["Subscriber"]);
    let other = cpe.get_parameter_attributes(&["Device.DeviceInfo.SoftwareVersion".into()]).unwrap();
    assert_eq!(other[0].notification, 0);
    let unknown = cpe.handle(&AcsRequest::SetParameterAttributes {
        attributes: vec![SetParameterAttribute {
            name: "Device.Nope".into(),
            notification_change: true,
            notification: 1,
            access_list_change: false,
            access_list: vec![],
        }],
    });
    assert_eq!(fault_of(&unknown).code, 9005);
    // A local change to a notified parameter is reported.
    cpe.set_local("Device.ManagementServer.URL", "http://elsewhere/").unwrap();
    assert_eq!(cpe.changed_parameters().collect::<Vec<_>>(), ["Device.ManagementServer.URL"]);
}

// ---- AddObject / DeleteObject ----------------------------------------------------------------

#[test]
fn add_object_numbers_after_the_highest_and_never_reuses() {
    let mut cpe = cpe(DataModelKind::Tr098);
    let table = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.";
    assert_eq!(cpe.tree.instances(table), [1, 2, 4, 5]);
    let handled = cpe.handle(&AcsRequest::AddObject { object_name: table.into(), parameter_key: "add-1".into() });
    assert_eq!(handled.body, CpeBody::Response(CpeResponse::AddObject { instance_number: 6, status: 0 }));
    assert_eq!(cpe.value("InternetGatewayDevice.ManagementServer.ParameterKey").unwrap().0, "add-1");

    // Shaped like instance 1, with default values and empty nested tables.
    let template: Vec<String> = cpe
        .tree
        .walk(&format!("{table}1."))
        .map(|(k, _)| k[format!("{table}1.").len()..].to_owned())
        .filter(|rest| !rest.split('.').any(|s| s.parse::<u32>().is_ok()))
        .collect();
    let created: Vec<String> =
        cpe.tree.walk(&format!("{table}6.")).map(|(k, _)| k[format!("{table}6.").len()..].to_owned()).collect();
    assert_eq!(created, template);
    assert!(created.contains(&"WANPPPConnection.".to_owned()));
    assert!(cpe.tree.instances(&format!("{table}6.WANPPPConnection.")).is_empty());
    for (path, node) in cpe.tree.walk(&format!("{table}6.")).filter(|(_, n)| !n.object) {
        let expected = match node.value_type {
            ValueType::UnsignedInt | ValueType::Int | ValueType::UnsignedLong | ValueType::Long => "0",
            ValueType::Boolean => "false",
            ValueType::DateTime => UNKNOWN_TIME,
            _ => "",
        };
        assert_eq!(node.value, expected, "{path}");
    }
    assert_eq!(cpe.value("InternetGatewayDevice.WANDevice.1.WANConnectionNumberOfEntries").unwrap().0, "5");

    let deleted =
        cpe.handle(&AcsRequest::DeleteObject { object_name: format!("{table}6."), parameter_key: "del-1".into() });
    assert_eq!(deleted.body, CpeBody::Response(CpeResponse::DeleteObject { status: 0 }));
    assert!(cpe.tree.node(&format!("{table}6.")).is_none());
    assert!(cpe.tree.walk(&format!("{table}6.")).next().is_none());
    assert_eq!(cpe.value("InternetGatewayDevice.ManagementServer.ParameterKey").unwrap().0, "del-1");
    assert_eq!(cpe.add_object(table, "add-2").unwrap(), 7, "6 is not reused");
    // Deleting a base instance and adding again does not reuse it either.
    cpe.delete_object(&format!("{table}7."), "").unwrap();
    cpe.delete_object(&format!("{table}5."), "").unwrap();
    assert_eq!(cpe.add_object(table, "").unwrap(), 8);
}

#[test]
fn add_object_on_a_tr181_table_sets_alias_and_entry_count() {
    let mut cpe = cpe(DataModelKind::Tr181);
    assert_eq!(cpe.add_object("Device.WiFi.SSID.", "k").unwrap(), 15);
    assert_eq!(cpe.value("Device.WiFi.SSID.15.Alias").unwrap().0, "cpe-15");
    assert_eq!(cpe.value("Device.WiFi.SSID.15.SSID").unwrap().0, "");
    assert_eq!(cpe.value("Device.WiFi.SSID.15.Enable").unwrap().0, "false");
    assert!(cpe.tree.node("Device.WiFi.SSID.15.Stats.").is_some());
    assert_eq!(cpe.value("Device.WiFi.SSIDNumberOfEntries").unwrap().0, "15");
    // The shared model is untouched: another device still has 14.
    assert_eq!(ParameterTree::new(model(DataModelKind::Tr181)).instances("Device.WiFi.SSID.").len(), 14);
}

#[test]
fn add_and_delete_object_fault_like_firmware() {
    let mut cpe = cpe(DataModelKind::Tr181);
    let key = "Device.ManagementServer.ParameterKey";
    for not_a_table in ["Device.DeviceInfo.", "Device.WiFi.SSID.1.", "Device.WiFi.SSID", "Device.Nope.", "Device."] {
        assert_eq!(cpe.add_object(not_a_table, "k").unwrap_err().code, 9005, "{not_a_table}");
    }
    // A fixed table: instances exist, but the device does not let the ACS add.
    assert_eq!(cpe.add_object("Device.Ethernet.Interface.", "k").unwrap_err().code, 9005);
    for not_an_instance in ["Device.WiFi.SSID.99.", "Device.WiFi.SSID.", "Device.WiFi.SSID.1", "Device.DeviceInfo."] {
        let handled =
            cpe.handle(&AcsRequest::DeleteObject { object_name: not_an_instance.into(), parameter_key: "k".into() });
        assert_eq!(fault_of(&handled).code, 9005, "{not_an_instance}");
    }
    assert_eq!(cpe.value(key).unwrap().0, "", "ParameterKey changes only on success");
}

#[test]
fn after_session_work_and_unsupported_protocols() {
    let mut cpe = cpe(DataModelKind::Tr181);
    let reboot = cpe.handle(&AcsRequest::Reboot { command_key: "r1".into() });
    assert_eq!(reboot.body, CpeBody::Response(CpeResponse::Reboot));
    assert_eq!(reboot.after, Some(AfterSession::Reboot { command_key: "r1".into() }));
    let download = roost_cwmp::Download {
        url: "ftp://files/fw.bin".into(),
        file_type: "1 Firmware Upgrade Image".into(),
        ..Default::default()
    };
    let refused = cpe.handle(&AcsRequest::Download(download.clone()));
    assert_eq!(fault_of(&refused).code, 9013);
    assert_eq!(refused.after, None);
    let accepted =
        cpe.handle(&AcsRequest::Download(roost_cwmp::Download { url: "http://files/fw.bin".into(), ..download }));
    assert!(matches!(accepted.body, CpeBody::Response(CpeResponse::Download { status: 1, .. })));
    let methods = cpe.handle(&AcsRequest::GetRpcMethods);
    let CpeBody::Response(CpeResponse::GetRpcMethods { methods }) = methods.body else { panic!() };
    assert!(methods.iter().any(|m| m == "ScheduleInform"));
}

#[test]
fn factory_reset_forgets_everything_the_acs_set() {
    let mut cpe = cpe(DataModelKind::Tr181);
    cpe.set_parameter_values(
        &[pv("Device.ManagementServer.ConnectionRequestPassword", "acs-set", ValueType::String)],
        "k",
    )
    .unwrap();
    cpe.add_object("Device.WiFi.SSID.", "").unwrap();
    cpe.factory_reset();
    let shipped =
        model(DataModelKind::Tr181).node("Device.ManagementServer.ConnectionRequestPassword").unwrap().value.clone();
    assert_eq!(cpe.value("Device.ManagementServer.ConnectionRequestPassword").unwrap().0, shipped);
    assert_ne!(shipped, "acs-set");
    assert_eq!(cpe.tree.overlay_len(), 0);
    assert_eq!(cpe.add_object("Device.WiFi.SSID.", "").unwrap(), 15, "counters reset with the factory state");
}

// ---- Quirks ----------------------------------------------------------------------------------

fn quirky(kind: DataModelKind, quirks: crate::Quirks) -> CpeState {
    let mut cpe = cpe(kind);
    cpe.quirks = Arc::new(quirks);
    cpe
}

#[test]
fn gpn_leaves_only_drops_every_object_node_with_next_level_false() {
    let standard = cpe(DataModelKind::Tr181);
    let mut cpe = quirky(DataModelKind::Tr181, crate::Quirks { gpn_leaves_only: true, ..crate::Quirks::default() });

    let subtree = cpe.get_parameter_names("Device.WiFi.SSID.1.", false).unwrap();
    assert!(!subtree.is_empty());
    assert!(subtree.iter().all(|p| !p.name.ends_with('.')), "{:?}", names(&subtree));
    assert!(subtree.iter().any(|p| p.name == "Device.WiFi.SSID.1.Stats.BytesSent"));
    let leaves: Vec<_> = standard
        .get_parameter_names("Device.WiFi.SSID.1.", false)
        .unwrap()
        .into_iter()
        .filter(|p| !p.name.ends_with('.'))
        .collect();
    assert_eq!(subtree, leaves, "the same leaves, in the same order");

    let everything = cpe.get_parameter_names("", false).unwrap();
    assert_eq!(everything.len(), 5420, "the TP-Link export's parameters, none of its objects");
    assert!(everything.iter().all(|p| !p.name.ends_with('.')));

    // A leaf is still itself; NextLevel=true still lists objects.
    assert_eq!(
        names(&cpe.get_parameter_names("Device.ManagementServer.URL", false).unwrap()),
        ["Device.ManagementServer.URL"]
    );
    assert_eq!(
        cpe.get_parameter_names("Device.WiFi.SSID.", true).unwrap(),
        standard.get_parameter_names("Device.WiFi.SSID.", true).unwrap()
    );
    assert_eq!(names(&cpe.get_parameter_names("", true).unwrap()), ["Device."]);
    // Through handle() as well.
    let handled = cpe.handle(&AcsRequest::GetParameterNames {
        parameter_path: "Device.ManagementServer.".into(),
        next_level: false,
    });
    let CpeBody::Response(CpeResponse::GetParameterNames { parameters }) = handled.body else { panic!() };
    assert!(parameters.iter().all(|p| !p.name.ends_with('.')));
    assert!(parameters.iter().any(|p| p.name == "Device.ManagementServer.PeriodicInformEnable"));
}

#[test]
fn spv_refuse_faults_the_refused_parameter_yet_applies_the_others() {
    let mut cpe = quirky(
        DataModelKind::Tr181,
        crate::Quirks {
            spv_refuse: vec![("ManagementServer.PeriodicInformEnable".into(), cpe_codes::NON_WRITABLE_PARAMETER)],
            ..crate::Quirks::default()
        },
    );
    let enable = "Device.ManagementServer.PeriodicInformEnable";
    let interval = "Device.ManagementServer.PeriodicInformInterval";
    let user = "Device.ManagementServer.ConnectionRequestUsername";
    let key = "Device.ManagementServer.ParameterKey";
    let enable_before = cpe.value(enable).unwrap().0;
    let handled = cpe.handle(&AcsRequest::SetParameterValues {
        values: vec![
            pv(interval, "300", ValueType::UnsignedInt),
            pv(enable, "false", ValueType::Boolean),
            pv(user, "acs-user", ValueType::String),
        ],
        parameter_key: "k1".into(),
    });
    let fault = fault_of(&handled);
    assert_eq!(fault.code, 9003);
    let details: Vec<(&str, u32)> =
        fault.set_parameter_values_faults.iter().map(|f| (f.parameter_name.as_str(), f.code)).collect();
    assert_eq!(details, [(enable, 9008)]);
    assert_eq!(fault.set_parameter_values_faults[0].string, "Attempt to set a non-writable parameter");
    assert_eq!(cpe.value(interval).unwrap().0, "300", "the other parameters are applied");
    assert_eq!(cpe.value(user).unwrap().0, "acs-user");
    assert_eq!(cpe.value(enable).unwrap().0, enable_before, "the refused one is not");
    assert_eq!(cpe.value(key).unwrap().0, "", "the ParameterKey marks complete success only");

    // Invalid parameters beside a refused one fault too and are not applied.
    let err = cpe
        .set_parameter_values(
            &[
                pv(enable, "true", ValueType::Boolean),
                pv(interval, "abc", ValueType::UnsignedInt),
                pv("Device.IP.Diagnostics.IPPing.Host", "192.0.2.1", ValueType::String),
                pv("Device.IP.Diagnostics.IPPing.DiagnosticsState", "Requested", ValueType::String),
            ],
            "k2",
        )
        .unwrap_err();
    let codes: Vec<u32> = err.set_parameter_values_faults.iter().map(|f| f.code).collect();
    assert_eq!(codes, [9008, 9007]);
    assert_eq!(cpe.value(interval).unwrap().0, "300");
    assert_eq!(cpe.value("Device.IP.Diagnostics.IPPing.Host").unwrap().0, "192.0.2.1");
    // What was applied still takes effect after the session, as on the firmware.
    let handled = cpe.handle(&AcsRequest::SetParameterValues {
        values: vec![
            pv(enable, "true", ValueType::Boolean),
            pv("Device.IP.Diagnostics.IPPing.DiagnosticsState", "Requested", ValueType::String),
        ],
        parameter_key: "k3".into(),
    });
    assert_eq!(fault_of(&handled).code, 9003);
    assert_eq!(handled.after, Some(AfterSession::Diagnostics { object: "Device.IP.Diagnostics.IPPing.".into() }));

    // An SPV naming no refused parameter is all-or-nothing and sets the key, as before.
    let err = cpe
        .set_parameter_values(
            &[pv(interval, "600", ValueType::UnsignedInt), pv("Device.DeviceInfo.Nope", "x", ValueType::String)],
            "k4",
        )
        .unwrap_err();
    assert_eq!(err.set_parameter_values_faults.len(), 1);
    assert_eq!(cpe.value(interval).unwrap().0, "300", "nothing applied");
    cpe.set_parameter_values(&[pv(interval, "600", ValueType::UnsignedInt)], "k5").unwrap();
    assert_eq!(cpe.value(interval).unwrap().0, "600");
    assert_eq!(cpe.value(key).unwrap().0, "k5");
}
