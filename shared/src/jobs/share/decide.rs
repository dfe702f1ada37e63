//! One AMI's decision, pure: from what [`super::read`] saw, the changes that make its
//! permissions equal to its policy, and its report line. The second of read → plan → apply.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::plan;
use super::read::{KeyKind, Observed};
use super::{LaunchAccess, ShareOutcome, ShareResult};
use crate::domain::grant::Grant;
use crate::domain::model::Image;
use crate::domain::policy::Share;

/// A change to a key's grants.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantChange {
    Create { key: String, account: String },
    Retire { key: String, grant_id: String },
}

/// What applying the decision changes, in the order it is applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Tag the AMI `shared-at` first: it is deprecated and gets a new target.
    pub mark_shared: bool,
    /// Launch permissions to add (without public) and to remove, in one call.
    pub add: Vec<Grant>,
    pub remove: Vec<Grant>,
    /// Per snapshot: createVolumePermission to add and to remove.
    pub snapshots: Vec<(String, Vec<Grant>, Vec<Grant>)>,
    /// KMS grants to create and retire.
    pub grants: Vec<GrantChange>,
    /// Add public, in a call of its own.
    pub make_public: bool,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.remove.is_empty()
            && self.snapshots.is_empty()
            && !self.make_public
            && self.grants.is_empty()
    }
}

/// The policy, its share and its targets, as the decision reads them.
pub struct Wanted<'a> {
    pub policy: &'a str,
    pub share: &'a Share,
    pub targets: &'a BTreeSet<Grant>,
}

/// Decides one AMI and fills its line `r`: the changes to apply, or none (the line then says
/// unchanged, or refused and why). `now` tells whether the AMI is deprecated already.
pub fn decide(
    image: &Image,
    wanted: &Wanted<'_>,
    seen: &Observed,
    now: DateTime<Utc>,
    r: &mut ShareResult,
) -> Option<Changes> {
    let (mut add, remove) = plan::diff(&seen.launch, wanted.targets);
    if remove.contains(&Grant::Public) {
        r.findings.push(plan::public_finding(
            &image.id,
            wanted.policy,
            wanted.share.public,
        ));
    }
    if let Some(key) = seen.aws_managed_key().filter(|_| !add.is_empty()) {
        r.outcome = ShareOutcome::Refused;
        r.reason = Some(plan::aws_managed_key_refusal(&image.id, key));
        return None;
    }

    r.remove = remove.clone();
    let grants = grant_changes(wanted, seen, r);
    r.launch = launch_access(wanted, seen);
    let snapshots = snapshot_changes(wanted, seen, r);

    // Public goes in a call of its own (ModifyImageAttribute is all or nothing): EC2 refuses
    // it for encrypted AMIs, AMIs with product codes, and while block public access for AMIs is
    // on in the region; such a refusal must not cost the account, organization and OU grants.
    let public = add.contains(&Grant::Public);
    add.retain(|g| *g != Grant::Public);
    let make_public = public && public_allowed(image, seen, r);
    r.add = add.clone();
    if make_public {
        r.add.push(Grant::Public);
    }

    let deprecated = image.deprecation_time.is_some_and(|at| at <= now);
    let changes = Changes {
        mark_shared: deprecated && (!add.is_empty() || make_public),
        add,
        remove,
        snapshots,
        grants,
        make_public,
    };
    if changes.is_empty() {
        r.outcome = if r.public_refused.is_some() {
            ShareOutcome::Refused
        } else {
            ShareOutcome::Unchanged
        };
        r.reason = r.public_refused.clone();
        return None;
    }
    Some(changes)
}

/// Whether public can be added; if not, `r.public_refused` says why.
fn public_allowed(image: &Image, seen: &Observed, r: &mut ShareResult) -> bool {
    let why_not = match plan::never_public(image) {
        Some(why) => Some(why),
        None if seen.block_public_access => Some(format!(
            "block public access for AMIs is on in {} (GetImageBlockPublicAccessState): turn it off there to share publicly",
            r.region
        )),
        None => None,
    };
    match why_not {
        Some(why) => {
            r.public_refused = Some(format!("not made public: {why}"));
            false
        }
        None => true,
    }
}

/// With `kms_grants`, the grant changes that make each customer managed key granted to
/// exactly the policy's target accounts.
fn grant_changes(wanted: &Wanted<'_>, seen: &Observed, r: &mut ShareResult) -> Vec<GrantChange> {
    let mut changes = Vec::new();
    if !wanted.share.kms_grants {
        return changes;
    }
    let accounts: BTreeSet<String> = wanted
        .targets
        .iter()
        .filter_map(|g| match g {
            Grant::Account(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    for key in seen.customer_managed_keys() {
        let existing = seen.grants.get(key).map(Vec::as_slice).unwrap_or_default();
        let (add, retire) = plan::grant_diff(wanted.policy, &accounts, existing);
        for account in add {
            r.kms_grants_created.push(format!("{key} → {account}"));
            changes.push(GrantChange::Create {
                key: key.clone(),
                account,
            });
        }
        for grant in retire {
            r.kms_grants_retired
                .push(format!("{key} → {}", grant.grantee));
            changes.push(GrantChange::Retire {
                key: key.clone(),
                grant_id: grant.grant_id,
            });
        }
    }
    changes
}

/// For every target, whether it can launch the AMI: an unencrypted AMI always, an encrypted
/// one when every key is granted to it or its key policy allows it (KMS grants cannot name
/// organizations or OUs: their line carries the key policy statement they need). Best effort:
/// what could not be read leaves the answer unknown (`can_launch` null).
fn launch_access(wanted: &Wanted<'_>, seen: &Observed) -> Vec<LaunchAccess> {
    let unknown = seen.keys.iter().rev().find_map(|(_, kind)| match kind {
        KeyKind::Unknown(why) => Some(why.clone()),
        _ => None,
    });
    wanted
        .targets
        .iter()
        .map(|target| {
            let mut access = LaunchAccess {
                target: target.clone(),
                can_launch: Some(true),
                why_not: None,
                key_policy_statement: None,
            };
            if let Some(why) = &unknown {
                access.can_launch = None;
                access.why_not = Some(why.clone());
            }
            if !plan::granted_or_public(wanted.share, target) {
                key_policy_access(target, &seen.key_policies, seen, &mut access);
            }
            access
        })
        .collect()
}

/// A target's access through the key policies: the first customer managed key whose policy
/// does not allow it (or cannot be read) decides.
fn key_policy_access(
    target: &Grant,
    policies: &BTreeMap<String, std::result::Result<String, String>>,
    seen: &Observed,
    access: &mut LaunchAccess,
) {
    for key in seen.customer_managed_keys() {
        match policies.get(key) {
            Some(Ok(text)) if plan::key_policy_allows(text, target) => continue,
            Some(Ok(_)) => {
                access.can_launch = Some(false);
                access.why_not = Some(match target {
                    Grant::Account(_) => format!(
                        "the AMI's snapshots are encrypted with {key}, which it may not use: set share.kms_grants, or allow the account in the key policy"
                    ),
                    _ => format!(
                        "the AMI's snapshots are encrypted with {key}, whose key policy does not allow it (KMS grants cannot name organizations or OUs): add key_policy_statement to the key policy"
                    ),
                });
                access.key_policy_statement = plan::org_key_statement(target);
            }
            Some(Err(e)) => {
                access.can_launch = None;
                access.why_not = Some(format!(
                    "unknown: the key policy of {key} could not be read ({e})"
                ));
            }
            None => {
                access.can_launch = None;
                access.why_not = Some(format!("unknown: the key policy of {key} was not read"));
            }
        }
        break;
    }
}

/// With `snapshots`, the createVolumePermission changes that give each snapshot exactly the
/// target accounts (never public: a public snapshot is made private and reported).
fn snapshot_changes(
    wanted: &Wanted<'_>,
    seen: &Observed,
    r: &mut ShareResult,
) -> Vec<(String, Vec<Grant>, Vec<Grant>)> {
    let accounts = plan::snapshot_grants(wanted.targets);
    let mut changes = Vec::new();
    for (snap, current) in &seen.snapshots {
        let (add, remove) = plan::diff(current, &accounts);
        if remove.contains(&Grant::Public) {
            r.findings
                .push(format!("snapshot {snap} was public: made private"));
        }
        if !add.is_empty() {
            r.snapshot_add.insert(snap.clone(), add.clone());
        }
        if !remove.is_empty() {
            r.snapshot_remove.insert(snap.clone(), remove.clone());
        }
        if !add.is_empty() || !remove.is_empty() {
            changes.push((snap.clone(), add, remove));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::Region;
    use crate::domain::policy::{Deployment, PolicyDocument};
    use crate::ports::KeyGrant;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/k1";
    const ORG: &str = "arn:aws:organizations::123456789012:organization/o-abc1234567";

    fn share(json: &str) -> Share {
        let doc = format!(r#"{{"policies": [{{"name": "p", "share": {json}}}]}}"#);
        let deployment = Deployment {
            allow_public_sharing: true,
            ..Deployment::default()
        };
        let d = PolicyDocument::parse(&doc, deployment).expect("policy");
        d.policies[0].share.clone().expect("share")
    }

    fn image(encrypted: bool, deprecated: bool) -> Image {
        let now = Utc::now();
        let mut image = Image::new("ami-1", "web-1", "123456789012", now);
        image.encrypted = encrypted;
        image.snapshot_ids = vec!["snap-1".into()];
        image.deprecation_time = deprecated.then(|| now - chrono::Duration::days(1));
        image
    }

    fn account(a: &str) -> Grant {
        Grant::Account(a.into())
    }

    fn customer_key() -> Vec<(String, KeyKind)> {
        vec![(KEY.into(), KeyKind::CustomerManaged)]
    }

    /// Decides with the share `json` over what was `seen`: the changes and the report line.
    fn run(json: &str, image: &Image, seen: &Observed) -> (Option<Changes>, ShareResult) {
        let share = share(json);
        let targets = plan::desired(&share, true);
        let wanted = Wanted {
            policy: "p",
            share: &share,
            targets: &targets,
        };
        let region: Region = "us-east-1".parse().expect("region");
        let mut r = ShareResult::new(&image.id, &region, "p");
        let changes = decide(image, &wanted, seen, Utc::now(), &mut r);
        (changes, r)
    }

    /// A case: what it is, the share section, the AMI, what was read, the changes, the outcome.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a Image,
        Observed,
        Option<Changes>,
        ShareOutcome,
    );

    #[test]
    fn each_case_decides_the_changes_and_the_line_a_user_reads() {
        let plain = image(false, false);
        let encrypted = image(true, false);
        let deprecated = image(false, true);
        let launch = |gs: &[Grant]| gs.iter().cloned().collect::<BTreeSet<_>>();
        let one = r#"{"accounts": ["111111111111"]}"#;
        let cases: Vec<Case> = vec![
            (
                "nothing differs: no change",
                one,
                &plain,
                Observed {
                    launch: launch(&[account("111111111111")]),
                    ..Observed::default()
                },
                None,
                ShareOutcome::Unchanged,
            ),
            (
                "a new target and one the policy dropped: one add, one remove",
                one,
                &plain,
                Observed {
                    launch: launch(&[account("999999999999")]),
                    ..Observed::default()
                },
                Some(Changes {
                    add: vec![account("111111111111")],
                    remove: vec![account("999999999999")],
                    ..Changes::default()
                }),
                ShareOutcome::Unchanged,
            ),
            (
                "a deprecated AMI given a new target is marked shared-at first",
                one,
                &deprecated,
                Observed::default(),
                Some(Changes {
                    mark_shared: true,
                    add: vec![account("111111111111")],
                    ..Changes::default()
                }),
                ShareOutcome::Unchanged,
            ),
            (
                "an AWS managed key with a target to add: refused, nothing changes",
                one,
                &encrypted,
                Observed {
                    keys: vec![(KEY.into(), KeyKind::AwsManaged)],
                    ..Observed::default()
                },
                None,
                ShareOutcome::Refused,
            ),
            (
                "an AWS managed key and only a removal: the removal goes through",
                r#"{"accounts": []}"#,
                &encrypted,
                Observed {
                    launch: launch(&[account("999999999999")]),
                    keys: vec![(KEY.into(), KeyKind::AwsManaged)],
                    ..Observed::default()
                },
                Some(Changes {
                    remove: vec![account("999999999999")],
                    ..Changes::default()
                }),
                ShareOutcome::Unchanged,
            ),
            (
                "public under block public access: refused alone",
                r#"{"accounts": [], "public": true}"#,
                &plain,
                Observed {
                    block_public_access: true,
                    ..Observed::default()
                },
                None,
                ShareOutcome::Refused,
            ),
            (
                "public and an account, public allowed: public in its own call",
                r#"{"accounts": ["111111111111"], "public": true}"#,
                &plain,
                Observed::default(),
                Some(Changes {
                    add: vec![account("111111111111")],
                    make_public: true,
                    ..Changes::default()
                }),
                ShareOutcome::Unchanged,
            ),
            (
                "kms_grants: a grant for the new target, the dropped target's retired",
                r#"{"accounts": ["111111111111"], "kms_grants": true}"#,
                &encrypted,
                Observed {
                    launch: launch(&[account("111111111111")]),
                    keys: customer_key(),
                    grants: BTreeMap::from([(
                        KEY.to_string(),
                        vec![KeyGrant {
                            grant_id: "g-old".into(),
                            name: plan::grant_name("p", "999999999999"),
                            grantee: "arn:aws:iam::999999999999:root".into(),
                        }],
                    )]),
                    ..Observed::default()
                },
                Some(Changes {
                    grants: vec![
                        GrantChange::Create {
                            key: KEY.into(),
                            account: "111111111111".into(),
                        },
                        GrantChange::Retire {
                            key: KEY.into(),
                            grant_id: "g-old".into(),
                        },
                    ],
                    ..Changes::default()
                }),
                ShareOutcome::Unchanged,
            ),
            (
                "a public snapshot is made private",
                r#"{"accounts": [], "snapshots": true}"#,
                &plain,
                Observed {
                    snapshots: vec![("snap-1".into(), launch(&[Grant::Public]))],
                    ..Observed::default()
                },
                Some(Changes {
                    snapshots: vec![("snap-1".into(), vec![], vec![Grant::Public])],
                    ..Changes::default()
                }),
                ShareOutcome::Unchanged,
            ),
        ];
        for (case, json, image, seen, expected, outcome) in cases {
            let (changes, r) = run(json, image, &seen);
            assert_eq!(changes, expected, "{case}");
            assert_eq!(r.outcome, outcome, "{case}");
        }
    }

    #[test]
    fn refusals_and_findings_say_why_in_the_line() {
        let encrypted = image(true, false);
        let seen = Observed {
            keys: vec![(KEY.into(), KeyKind::AwsManaged)],
            launch: BTreeSet::from([Grant::Public]),
            ..Observed::default()
        };
        let (_, r) = run(r#"{"accounts": ["111111111111"]}"#, &encrypted, &seen);
        let reason = r.reason.expect("a refusal says why");
        assert!(reason.contains(KEY) && reason.contains("customer managed key"));
        assert!(r.findings[0].contains("is public"), "{:?}", r.findings);

        let plain = image(false, false);
        let seen = Observed {
            block_public_access: true,
            ..Observed::default()
        };
        let (_, r) = run(r#"{"accounts": [], "public": true}"#, &plain, &seen);
        assert!(r.reason.expect("why").contains("block public access"));
        assert!(r.add.is_empty());
    }

    #[test]
    fn launch_access_follows_the_grants_and_the_key_policies() {
        let encrypted = image(true, false);
        let json = format!(r#"{{"accounts": ["111111111111"], "organizations": ["{ORG}"]}}"#);
        let access = |policy: std::result::Result<String, String>| {
            let seen = Observed {
                keys: customer_key(),
                key_policies: BTreeMap::from([(KEY.to_string(), policy)]),
                ..Observed::default()
            };
            run(&json, &encrypted, &seen).1.launch
        };

        let denied = access(Ok(r#"{"Statement": []}"#.into()));
        assert!(denied.iter().all(|a| a.can_launch == Some(false)));
        let org = denied
            .iter()
            .find(|a| matches!(a.target, Grant::Organization(_)))
            .expect("org line");
        assert!(
            org.key_policy_statement.is_some(),
            "the org is told what to add"
        );

        let unreadable = access(Err("AccessDenied".into()));
        assert!(unreadable.iter().all(|a| a.can_launch.is_none()));
        assert!(unreadable[0]
            .why_not
            .as_deref()
            .unwrap_or("")
            .contains("AccessDenied"));

        let granted = {
            let json = r#"{"accounts": ["111111111111"], "kms_grants": true}"#;
            let seen = Observed {
                keys: customer_key(),
                ..Observed::default()
            };
            run(json, &encrypted, &seen).1.launch
        };
        assert_eq!(
            granted[0].can_launch,
            Some(true),
            "a granted account needs no key policy"
        );
    }
}
