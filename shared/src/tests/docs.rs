//! The docs state facts the code holds: each such page is checked against the code here (the
//! settings' table is checked in `lambda::settings`).

use std::collections::BTreeSet;
use std::path::Path;

use crate::domain::event::detail_type;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The first cell of each row of the page's tables, without its backquotes.
fn first_cells(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_events_page_lists_every_detail_type_the_code_sends() {
    let listed = first_cells(&read("docs/events.md"));
    let sent: BTreeSet<String> = detail_type::ALL.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        listed, sent,
        "docs/events.md's table against detail_type::ALL"
    );
}

#[test]
fn the_triggers_page_describes_every_sample_event() {
    let listed = first_cells(&read("docs/triggers.md"));
    let samples: BTreeSet<String> = std::fs::read_dir(root().join("events"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .map(|name| format!("events/{name}"))
        .collect();
    assert_eq!(
        listed, samples,
        "docs/triggers.md's table against events/*.json"
    );
}

#[test]
fn every_page_the_readme_links_exists() {
    let readme = read("README.md");
    let links: Vec<&str> = readme
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|link| !link.starts_with("http") && !link.starts_with('#'))
        .collect();
    assert!(links.iter().any(|l| l.starts_with("docs/")), "{links:?}");
    for link in links {
        let path = link.split('#').next().unwrap_or(link);
        assert!(
            root().join(path).exists(),
            "README.md links {link}, which does not exist"
        );
    }
}

/// The names of `template.yaml`'s parameters (the keys indented once under `Parameters:`).
fn template_parameters() -> BTreeSet<String> {
    let template = read("template.yaml");
    let section = template
        .split("\nParameters:\n")
        .nth(1)
        .expect("template.yaml has Parameters");
    section
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.trim_end().ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':').to_string())
        .collect()
}

#[test]
fn the_deploy_page_describes_every_template_parameter() {
    let parameters = template_parameters();
    assert!(parameters.contains("PolicyDocument"), "{parameters:?}");
    let listed = first_cells(&read("docs/deploy.md"));
    let missing: Vec<_> = parameters.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "docs/deploy.md does not describe {missing:?}"
    );
}
