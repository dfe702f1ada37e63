//! Adapters: the ports implemented against AWS. Each owns its SDK client; none knows a job.
//!
//! A new EC2 call goes into the file of its concern in [`ec2`], behind the port the job uses.

pub mod ec2;
pub mod eventbridge;
pub mod kms;
pub mod organizations;
pub mod pace;
pub mod rbin;
pub mod scheduler;
pub mod sqs;
pub mod ssm;
pub mod sts;
