//! Running the daemon as an operator expects: metrics, logs, systemd readiness and signals.

pub mod chain;
pub mod control;
pub mod http;
pub mod metrics;
pub mod occurrence;
pub mod owner;
pub mod status;
pub mod systemd;
pub mod telemetry;

pub use chain::Chain;
pub use occurrence::Occurrence;
