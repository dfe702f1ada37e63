//! The Lambda wiring, the top layer: configuration and clients loaded once per cold start
//! ([`app`]), the handler every function shares ([`handler`]) and the reports ([`report`]).

pub mod app;
pub mod handler;
pub mod metrics;
pub mod report;
pub mod settings;

pub use crate::domain::function::Function;
pub use handler::{serve, AgeOutJob, BuildJob, CopyJob, Job, PublishJob, ShareJob};
