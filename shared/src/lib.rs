//! The common library of the AMI lifecycle functions.
//!
//! Every decision about AMIs lives here; the binaries in `functions/` only wire a handler to
//! the Lambda runtime. The layout follows "plan, then act":
//!
//! - [`policy`]: the policy document (parsed once, every error names its JSON path);
//! - [`trigger`]: every payload a function accepts (EventBridge envelopes and run requests);
//! - [`model`]: plain data about the account, free of SDK types;
//! - [`ageout::plan`]: the pure retention planner; [`ageout::execute`]: the executor;
//! - [`build`]: CreateImage and RegisterImage, with deterministic names;
//! - [`share`]: launch and snapshot permissions reconciled to the policy;
//! - [`copy`]: cross-region copies with lineage, idempotent by client token;
//! - [`ec2`] and [`publish`]: the adapters that own the EC2 and EventBridge clients;
//! - [`app`]: configuration, clients and the invocation deadline, loaded once per cold start.

pub mod ageout;
pub mod app;
pub mod build;
pub mod copy;
pub mod ec2;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod ids;
pub mod model;
pub mod pace;
pub mod payload;
pub mod policy;
pub mod publish;
pub mod respond;
pub mod share;
pub mod trigger;

pub use error::{Error, Result};

/// Re-exported so the functions need no direct dependency on the runtime's version.
pub use lambda_runtime;
