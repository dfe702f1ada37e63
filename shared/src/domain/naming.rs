//! AMI names: EC2's rules, and the deterministic names the build makes from a template and its
//! schedule window (a re-delivered event renders the same name and creates nothing).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// How the launch template versions the tool makes are described (`ami-publish: <ami> of
/// <policy>/<family>`): a `$Latest` so described is the tool's, not a consumer's staged version.
pub const TEMPLATE_VERSION_PREFIX: &str = "ami-publish:";

/// Checks EC2's AMI name rules: 3 to 128 characters of letters, digits and `( ) [ ] . / - ' @ _`
/// and space.
pub fn check_image_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if !(3..=128).contains(&len) {
        return Err(format!(
            "`{name}` has {len} characters: an AMI name has 3 to 128"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(*c)))
    {
        return Err(format!(
            "`{name}` contains `{bad}`: an AMI name takes letters, digits, spaces and ( ) [ ] . / - ' @ _"
        ));
    }
    Ok(())
}

/// Fills a name template: `{policy}`, `{instance_id}` (or the snapshot id), `{timestamp}`
/// (`20260101T120000Z`) and `{date}` (`2026-01-01`) of the schedule window.
pub fn render_name(
    template: &str,
    policy: &str,
    source_id: &str,
    window: DateTime<Utc>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            return Err(format!("`{template}`: a `{{` without its `}}`"));
        };
        let key = &rest[start + 1..start + end];
        match key {
            "policy" => out.push_str(policy),
            "instance_id" | "source_id" => out.push_str(source_id),
            "timestamp" => out.push_str(&window.format("%Y%m%dT%H%M%SZ").to_string()),
            "date" => out.push_str(&window.format("%Y-%m-%d").to_string()),
            other => {
                return Err(format!(
                    "`{template}`: unknown placeholder `{{{other}}}` (use {{policy}}, {{instance_id}}, {{timestamp}}, {{date}})"
                ))
            }
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    check_image_name(&out)?;
    Ok(out)
}

/// The start of the schedule window that contains `at`.
pub fn window_start(at: DateTime<Utc>, minutes: u32) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(i64::from(minutes.max(1))))
        .unwrap_or(at)
}
