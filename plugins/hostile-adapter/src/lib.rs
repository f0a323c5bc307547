//! An adapter whose `identify` misbehaves, chosen by the device's serial number. The host's tests
//! upload it and check that a misbehaving `identify` becomes a fault of this adapter on that
//! device, and that other adapters still identify the device.
//!
//! | serial number starts with | `identify` | expected fault |
//! |---|---|---|
//! | `SPIN` | spins forever | `plugin.cpu_time` |
//! | `TRAP` | panics | `plugin.trap` |
//! | anything else | declines the device | none |

use roost_plugin_sdk::prelude::*;

struct HostileAdapter;

impl Adapter for HostileAdapter {
    fn identify(facts: &DeviceFacts) -> Option<Identification> {
        if facts.serial_number.starts_with("SPIN") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        #[allow(clippy::panic)]
        if facts.serial_number.starts_with("TRAP") {
            panic!("the hostile adapter panicked on purpose");
        }
        None
    }
}

export_adapter!(HostileAdapter);
