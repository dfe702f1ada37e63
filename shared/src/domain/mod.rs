//! The domain vocabulary, the bottom layer: ids, tag keys, the model of the account, the policy
//! document, AMI names, grants, the payloads a function accepts, events and the deadline. It
//! imports nothing of the layers above (ports, jobs, adapters, the Lambda wiring).

pub mod deadline;
pub mod event;
pub mod function;
pub mod grant;
pub mod ids;
pub mod model;
pub mod naming;
pub mod payload;
pub mod policy;
pub mod recycle_bin;
pub mod register;
pub mod seal;
pub mod tags;
pub mod trigger;

/// What to do with something a job was asked about: act on it, or acknowledge it without work,
/// saying why (an event about an AMI no policy manages, a stop event for a running instance).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<T> {
    /// Do the work.
    Act(T),
    /// Nothing to do, and why.
    Ignore(String),
}
