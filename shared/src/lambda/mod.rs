//! The Lambda wiring, the top layer: configuration and clients loaded once per cold start
//! ([`app`], [`settings`]), the handler every function shares ([`handler`]), the six
//! functions' jobs behind it ([`functions`]), age-out's continuations ([`continuation`]) and
//! the reports ([`report`], [`metrics`]).

pub mod accounts;
pub mod app;
pub mod continuation;
pub mod distribute;
pub mod functions;
pub mod handler;
pub mod metrics;
pub mod report;
pub mod settings;

pub use crate::domain::function::Function;
pub use distribute::DistributeJob;
pub use functions::{AgeOutJob, BuildJob, CopyJob, PublishJob, ShareJob};
pub use handler::{serve, Job};
