//! End-to-end tests of the functions: each real binary, driven through the Lambda runtime API,
//! against the test bed. The test bed's own proofs are the `testbed` test binary.

mod age_out;
mod build;
mod copy;
mod demo;
mod distribute;
mod distribute_templates;
mod evidence;
mod faults;
mod invalid;
mod publish;
mod races;
mod recall;
mod share;
mod trust;
