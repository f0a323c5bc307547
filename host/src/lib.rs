//! Roost: a multi-tenant TR-069 (CWMP) auto-configuration server.
//!
//! The map is in `ARCHITECTURE.md`. In short: [`cwmp`] serves CPEs on port 7547 through the
//! sans-IO `roost-cwmp` crate, [`api`] serves people and integrations on port 8080, and both
//! share one [`app::App`] over the [`store`].

pub mod answers;
pub mod api;
pub mod app;
pub mod breaker;
pub mod bulk;
pub mod cli;
pub mod config;
pub mod cwmp;
pub mod diagnostics;
pub mod events;
pub mod fault_code;
pub mod files;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod permissions;
pub mod plugins;
pub mod portal;
pub mod provisioning;
pub mod replicas;
pub mod rollouts;
pub mod secrets;
pub mod store;
pub mod tasks;
pub mod tls;
