//! The test bed's proofs: each EC2 behaviour the launcher adds, checked on the test bed and
//! shown missing from plain moto, and the adapters against the emulator (EC2, EventBridge).

mod foundation;
mod iam;
mod publish;
mod testbed;
