//! The common library of the AMI lifecycle functions.
//!
//! Layers with one-way doors, each importing only the layers below it (a unit test,
//! `tests::layers::every_import_points_down`, checks every `crate::` path):
//!
//! 1. [`domain`] and [`error`]: the vocabulary: ids, tag keys, the model of the account, the
//!    policy document, AMI names, grants, the payloads a function accepts, events, deadlines.
//! 2. [`ports`]: one narrow trait per capability the jobs act through (inventory, retire,
//!    build, permissions, copy, key info, events, pacing).
//! 3. [`jobs`]: `ageout`, `build`, `share`, `copy`, `publish`, each a pure `plan` (inputs → decisions with
//!    reasons) and an `execute` that runs the decisions through the ports. A job never
//!    imports an adapter, another job or the wiring.
//! 4. [`adapters`]: the ports implemented against AWS (EC2 split by concern, KMS,
//!    EventBridge) and the pacer. An adapter never imports a job.
//! 5. [`lambda`]: the wiring on top: configuration, the handler every function shares, the
//!    reports. Each binary in `functions/` is one call to [`lambda::serve`].

pub mod adapters;
pub mod domain;
pub mod error;
pub mod jobs;
pub mod lambda;
pub mod ports;

#[cfg(test)]
mod tests;

pub use error::{Error, Result};

/// Re-exported so the functions need no direct dependency on the runtime's version.
pub use lambda_runtime;
