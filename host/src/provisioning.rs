//! Provisioning: what provisions declare, turned into CWMP calls.
//!
//! A session runs the presets that match the device; their provisions declare; [`plan`] turns
//! the declarations and the device's tree into the calls of one round; the driver sends them,
//! stores the answers, and runs the provisions again until a round plans nothing.

pub mod plan;
