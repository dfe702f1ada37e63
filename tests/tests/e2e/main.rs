//! End-to-end tests: one test binary, with the test bed's proofs, the adapters and each function.

mod age_out;
mod build;
mod copy;
mod demo;
mod evidence;
mod faults;
mod foundation;
mod invalid;
mod races;
mod seed;
mod share;
mod testbed;
