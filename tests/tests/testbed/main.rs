//! The test bed's proofs: each behaviour `tests/support/testbed/` adds around moto, checked on the
//! test bed and shown missing from plain moto, one file per section of the test bed (the file of
//! the same name there holds the patch); and the adapters against the emulator (foundation.rs).

mod consistency;
mod contract;
mod description;
mod faults;
mod foundation;
mod iam;
mod images;
mod instances;
mod kms;
mod launch_templates;
mod recycle_bin;
mod references;
mod scheduler;
mod sharing;
mod snapshots;
mod ssm;
mod usage_reports;

use e2e_tests::TestBed;

/// The test bed with its additions, or moto as it is (`plain`): a proof runs the same steps on
/// both.
fn bed(plain: bool) -> TestBed {
    if plain {
        TestBed::start_plain()
    } else {
        TestBed::start()
    }
}
