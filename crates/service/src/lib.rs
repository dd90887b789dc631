//! What every Slipway process shares, written once: configuration
//! ([`config`]), telemetry ([`telemetry`]) and graceful shutdown
//! ([`shutdown`]).
//!
//! A service's `main` is three lines on top of this crate:
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let config = slipway_service::config::Config::load(None)?;
//! let _telemetry = slipway_service::telemetry::init("slipway-exporter", &config.telemetry)?;
//! let shutdown = slipway_service::shutdown::on_signal();
//! # Ok(()) }
//! ```
//!
//! This crate never talks to the broker or the database itself.

pub mod args;
pub mod config;
pub mod shutdown;
pub mod telemetry;
pub mod worker;
