//! The Lambda wiring, the top layer: configuration and clients loaded once per cold start
//! ([`app`]), the handler every function shares ([`handler`]) and the reports ([`report`]).

pub mod app;
pub mod handler;
pub mod metrics;
pub mod report;

pub use handler::{serve, AgeOutJob, BuildJob, CopyJob, Function, Job, PublishJob, ShareJob};
