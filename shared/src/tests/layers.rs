//! The layers' one-way doors, checked over every `crate::` path in the library's source.

use std::path::{Path, PathBuf};

/// The layer of a source file (its path under `src/`), or none for the crate root and the
/// test-only files (a `tests.rs`, or a file of a `tests/` folder), which may import anything.
fn layer(file: &str) -> Option<&'static str> {
    let top = file.split('/').next().unwrap_or_default();
    if file.ends_with("/tests.rs") || file.contains("/tests/") {
        return None;
    }
    match top {
        "error.rs" | "domain" => Some("domain"),
        "ports.rs" => Some("ports"),
        "jobs" => Some("jobs"),
        "adapters" => Some("adapters"),
        "lambda" => Some("lambda"),
        _ => None,
    }
}

/// The layers (first segment after `crate::`) each layer may import.
fn allowed(layer: &str) -> &'static [&'static str] {
    match layer {
        "domain" => &["domain", "error"],
        "ports" => &["domain", "error", "ports"],
        "jobs" => &["domain", "error", "ports", "jobs"],
        "adapters" => &["domain", "error", "ports", "adapters"],
        _ => &[
            "domain",
            "error",
            "ports",
            "jobs",
            "adapters",
            "lambda",
            "lambda_runtime",
        ],
    }
}

/// The jobs: each folder of `src/jobs` (its files, such as `proof.rs`, serve every job).
fn jobs() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/jobs");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .expect("src/jobs")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// Every import of `file`'s text that breaks the rules: a lower layer reaching up, or a job
/// reaching into another job (`crate::jobs::<other>`, one of `jobs`).
fn violations(file: &str, text: &str, jobs: &[String]) -> Vec<String> {
    let Some(layer) = layer(file) else {
        return Vec::new();
    };
    let own_job = file
        .strip_prefix("jobs/")
        .and_then(|rest| rest.split(['/', '.']).next().filter(|j| *j != "mod"));
    // Unit tests at the end of a file may use the test support.
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            let path: Vec<&str> = line[at + "crate::".len()..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or_default()
                .split("::")
                .collect();
            let target = path[0];
            let bad_layer = !allowed(layer).contains(&target);
            let other_job = layer == "jobs"
                && target == "jobs"
                && path.len() > 2
                && jobs.iter().any(|j| j == path[1])
                && Some(path[1]) != own_job;
            if bad_layer || other_job {
                found.push(format!(
                    "{file}:{}: {layer} imports crate::{}",
                    n + 1,
                    path.join("::")
                ));
            }
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_import_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found only {files:?}");
    let jobs = jobs();
    let mut all = Vec::new();
    for path in files {
        let name = path
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        all.extend(violations(
            &name,
            &std::fs::read_to_string(&path).expect("read"),
            &jobs,
        ));
    }
    assert!(
        all.is_empty(),
        "imports against the layers:\n{}",
        all.join("\n")
    );
}

#[test]
fn the_check_finds_each_kind_of_wrong_import() {
    let cases = [
        ("domain/model.rs", "use crate::jobs::share::Grant;", true),
        (
            "domain/policy/validation.rs",
            "x = crate::jobs::build::render_name(a);",
            true,
        ),
        ("adapters/ec2/scan.rs", "use crate::jobs::copy::plan;", true),
        ("ports.rs", "use crate::adapters::ec2::Ec2;", true),
        (
            "jobs/copy/plan.rs",
            "use crate::jobs::build::FUNCTION;",
            true,
        ),
        ("jobs/ageout/mod.rs", "use crate::lambda::app::App;", true),
        (
            "jobs/publish/execute.rs",
            "use crate::jobs::share::reconcile;",
            true,
        ),
        (
            "jobs/share/mod.rs",
            "use crate::jobs::publish::FUNCTION;",
            true,
        ),
        ("jobs/publish/execute.rs", "use crate::jobs::proof;", false),
        (
            "jobs/copy/plan.rs",
            "use crate::jobs::copy::FUNCTION;",
            false,
        ),
        (
            "jobs/copy/plan.rs",
            "use crate::jobs::{Context, Line};",
            false,
        ),
        ("jobs/share/execute.rs", "use crate::jobs::Context;", false),
        ("adapters/kms.rs", "use crate::ports::KeyInfo;", false),
        ("lambda/handler.rs", "use crate::jobs::ageout;", false),
        ("domain/model.rs", "// see crate::jobs::ageout", false),
    ];
    let jobs = jobs();
    for (file, line, wrong) in cases {
        assert_eq!(
            !violations(file, line, &jobs).is_empty(),
            wrong,
            "{file}: {line}"
        );
    }
}

#[test]
fn every_job_folder_is_a_module_of_jobs_and_the_check_covers_it() {
    let declared =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/jobs/mod.rs"))
            .expect("jobs/mod.rs");
    let jobs = jobs();
    assert!(jobs.len() >= 5, "found only {jobs:?}");
    for job in &jobs {
        assert!(
            declared.contains(&format!("pub mod {job};")),
            "{job} is a folder of src/jobs but no module of jobs"
        );
        let reaching = format!("use crate::jobs::{job}::X;");
        let other = jobs.iter().find(|j| *j != job).expect("another job");
        assert!(
            !violations(&format!("jobs/{other}/mod.rs"), &reaching, &jobs).is_empty(),
            "an import of {job} from {other} is caught"
        );
    }
}
