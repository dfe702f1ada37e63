//! Jobs: what each function does. Each job has a pure `plan` (inputs → decisions with
//! reasons) and an `execute` that runs the decisions through the ports ([`crate::ports`]).
//! A job imports the domain and the ports only: never an adapter, another job or the Lambda
//! wiring.

pub mod ageout;
pub mod announce;
pub mod build;
pub mod copies;
pub mod copy;
pub mod distribute;
pub mod promotion;
pub mod proof;
pub mod publish;
pub mod recall;
pub mod requests;
pub mod share;
pub mod templates;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::deadline::Deadline;
use crate::domain::policy::PolicyDocument;

/// Why an action left for the next run was not started: the run reached its deadline.
pub const PAST_DEADLINE: &str = "the run reached its deadline; the next sweep continues";

/// Limits of a run, from the deployment's settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Mutating calls in flight at once per region.
    pub concurrency: usize,
    /// Whether the deployment allows public sharing (`ALLOW_PUBLIC_SHARING`).
    pub allow_public_sharing: bool,
    /// USD per GB-month of snapshot storage, for the estimated saving of a run.
    pub snapshot_price: f64,
    /// Launch-test instances up at once per region (`AMI_MAX_TEST_INSTANCES`).
    pub max_test_instances: usize,
}

/// What every job run is given: the ports, the policy document, the limits and the deadline.
pub struct Context<'a, C> {
    /// The ports, for any region.
    pub cloud: &'a C,
    /// The policy document.
    pub document: &'a PolicyDocument,
    /// Limits of the run.
    pub limits: Limits,
    /// When the run stops starting work.
    pub deadline: Deadline,
}

/// One line of a build, share or copy report.
pub trait Line: Serialize {
    /// What happened to it (its serde name is counted).
    type Outcome: Serialize;
    /// What happened to it.
    fn outcome(&self) -> &Self::Outcome;
    /// Whether it makes the invocation a partial failure (refused or failed).
    fn failed(&self) -> bool;
}

/// The serde name of a value (the outcome labels of the reports).
pub fn label<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Counts by label.
pub fn count<'a, T: Serialize + 'a>(
    values: impl IntoIterator<Item = &'a T>,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for v in values {
        *counts.entry(label(v)).or_insert(0) += 1;
    }
    counts
}
