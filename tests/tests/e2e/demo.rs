//! The README's main job (`scripts/demo`) runs end to end and checks the account against its report.

use std::process::Command;

#[test]
fn the_demo_runs_the_lifecycle_and_the_account_ends_as_reported() {
    e2e_tests::function_binary("ami-build");
    e2e_tests::function_binary("ami-share");
    e2e_tests::function_binary("ami-copy");
    e2e_tests::function_binary("ami-age-out");
    e2e_tests::function_binary("ami-publish");
    let target = e2e_tests::bin_dir()
        .parent()
        .map(|p| p.to_path_buf())
        .expect("target dir");
    let out = Command::new(e2e_tests::venv_python())
        .arg(e2e_tests::root().join("scripts/demo.py"))
        .env("CARGO_TARGET_DIR", target)
        .current_dir(e2e_tests::root())
        .output()
        .expect("run scripts/demo.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for section in [
        "== build: images created (2) ==",
        "found existing, nothing created",
        "== publish: launch tests started (2) ==",
        "2 test instances for 2 AMIs: each launched once",
        "validation_failed",
        "timed out after 15 minutes",
        "test instances still running: 0",
        "held by the promotion gate",
        "== share: AMI Validated and AMI available events delivered (2) ==",
        "already as their policy says",
        "== copy: AMI Validated and AMI available events delivered, each twice (4) ==",
        "== publish: rollback ==",
        "the sweep keeps the pin until a newer AMI passes",
        "AMI Copy Started",
        "== age-out dry run: actions",
        "== age-out real run: actions",
        "AMI Deregistered",
        "Policy Run Completed",
        "The account ends exactly as the report says.",
        "saving: freed",
        "usage reports age-out asked for",
        "in_use_by_account",
        "was recoverable: True",
        "restored",
        "1 AMI registered again",
    ] {
        assert!(
            stdout.contains(section),
            "missing `{section}` in:\n{stdout}"
        );
    }
}
