//! End-to-end: the real server, simulated CPEs built from real device exports, SQLite and
//! PostgreSQL. Each test runs once per backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod bootstrap;
mod bulk;
mod cwmp_edges;
mod device_ops;
mod diagnostics;
mod faults;
mod files;
mod health;
mod interop;
mod isolation;
mod live;
mod nat;
mod nbi;
mod observability;
mod onboarding;
mod openapi;
mod plugins;
mod portal;
mod provisioning;
mod replicas;
mod restart;
mod rollouts;
mod support_desk;
mod tasks;
mod tenancy;
mod tls;
mod webhooks;

pub use roost_tests::*;
