//! The functions' names are written once, in [`Function`]: the template, the binaries and the
//! harnesses (which read the template) name exactly those.

use std::collections::BTreeSet;
use std::path::Path;

use crate::domain::function::Function;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn names() -> BTreeSet<String> {
    Function::ALL.iter().map(|f| f.name().to_string()).collect()
}

/// The values of `key: value` (YAML) or `key = "value"` (TOML) lines of a text.
fn values(text: &str, key: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim_matches(|c: char| c == ' ' || c == '"' || c == ':' || c == '='))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_template_deploys_exactly_the_functions() {
    let template = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    assert_eq!(values(&template, "Binary:"), names());
}

#[test]
fn each_function_is_a_binary_of_the_workspace() {
    let mut binaries = BTreeSet::new();
    for dir in std::fs::read_dir(root().join("functions")).unwrap() {
        let manifest = std::fs::read_to_string(dir.unwrap().path().join("Cargo.toml")).unwrap();
        let bin = manifest.split("[[bin]]").nth(1).unwrap_or_default();
        binaries.extend(values(bin, "name"));
    }
    assert_eq!(binaries, names());
}

#[test]
fn a_function_is_found_by_its_name_only() {
    for f in Function::ALL {
        assert_eq!(Function::named(f.name()), Some(f));
    }
    assert_eq!(Function::named("ami-cleaner"), None);
}
