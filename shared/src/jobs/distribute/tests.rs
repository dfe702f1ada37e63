//! The distribution's decisions: what each target gets, how its copy is tagged, which copies
//! lost their source, and the units a sweep queues.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::plan;
use super::*;
use crate::domain::model::{Image, ImageState};
use crate::domain::policy::{Deployment, PolicyDocument, TemplateDepth};
use crate::domain::tags;

const OWN: &str = "123456789012";
const COPYING: &str = "111111111111";
const SHARING: &str = "222222222222";

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a time")
}

fn document() -> PolicyDocument {
    let json = serde_json::json!({"policies": [{
        "name": "golden",
        "select": {"tags": {"Team": "platform"}},
        "share": {"accounts": [COPYING, SHARING], "snapshots": true},
        "distribute": {"targets": [
            {"accounts": [COPYING], "copy": {"kms_key_id": "alias/their-key"}, "ssm_parameters": ["/golden/{family}"]},
            {"accounts": [SHARING], "ssm_parameters": ["/golden/{family}/{region}"]}
        ]}
    }]});
    PolicyDocument::parse(&json.to_string(), Deployment::default()).expect("a valid document")
}

fn image(id: &str, name: &str, created: &str) -> Image {
    let mut i = Image::new(id, name, OWN, at(created));
    i.tags.insert("Team".into(), "platform".into());
    i
}

fn region() -> Region {
    "us-east-1".parse().expect("region")
}

#[test]
fn each_target_gets_the_newest_available_ami_of_each_family_never_a_deprecated_or_recalled_one() {
    let doc = document();
    let now = at("2026-12-05T00:00:00Z");
    let mut deprecated = image("ami-00000000000000003", "web-3", "2026-12-04T00:00:00Z");
    deprecated.deprecation_time = Some(at("2026-12-04T12:00:00Z"));
    let images = vec![
        image("ami-00000000000000001", "web-1", "2026-12-01T00:00:00Z"),
        image("ami-00000000000000002", "web-2", "2026-12-02T00:00:00Z"),
        deprecated,
    ];
    let account: AccountId = COPYING.parse().expect("account");
    let wants = plan::wanted(&doc, &images, (&account, None), now);
    let chosen: Vec<&str> = wants.iter().map(|w| w.image.id.as_str()).collect();
    assert_eq!(chosen, vec!["ami-00000000000000002"]);
    assert!(wants[0].target.copy.is_some());

    let other: AccountId = "333333333333".parse().expect("account");
    assert!(
        plan::wanted(&doc, &images, (&other, None), now).is_empty(),
        "an account no target lists gets nothing"
    );
}

#[test]
fn a_targets_copy_is_encrypted_with_its_key_and_carries_its_lineage_but_no_policy_tag() {
    let doc = document();
    let images = vec![image(
        "ami-00000000000000002",
        "web-2",
        "2026-12-02T00:00:00Z",
    )];
    let account: AccountId = COPYING.parse().expect("account");
    let wants = plan::wanted(&doc, &images, (&account, None), at("2026-12-05T00:00:00Z"));
    let how = plan::copy_how(wants[0].target);
    assert!(how.encrypted);
    assert_eq!(how.kms_key_id.as_deref(), Some("alias/their-key"));
    let tags = plan::copy_tags(&wants[0], &region(), 1, Some("the-seal"));
    assert_eq!(tags[tags::DISTRIBUTED_SEAL], "the-seal");
    assert_eq!(tags[tags::SOURCE_IMAGE], "ami-00000000000000002");
    assert_eq!(tags[tags::SOURCE_ACCOUNT], OWN);
    assert_eq!(tags[tags::SOURCE_REGION], "us-east-1");
    assert_eq!(tags[tags::CREATED_BY], FUNCTION);
    assert!(!tags.contains_key(tags::POLICY), "{tags:?}");
    assert_eq!(
        plan::parameters(&wants[0], &region()),
        vec![format!("/golden/{}", wants[0].family)]
    );
}

#[test]
fn only_the_stacks_copies_ec2_records_as_copies_of_a_source_that_left_are_orphaned() {
    let now = at("2026-12-05T00:00:00Z");
    let sources = vec![
        image("ami-0000000000000000a", "live", "2026-12-01T00:00:00Z"),
        {
            let mut d = image("ami-0000000000000000b", "disabled", "2026-11-01T00:00:00Z");
            d.state = ImageState::Disabled;
            d
        },
    ];
    let copy = |id: &str, source: &str, account: &str, by: &str, ec2_source: &str| {
        let mut c = Image::new(id, "copy", COPYING, at("2026-12-01T00:00:00Z"));
        c.tags.insert(tags::SOURCE_IMAGE.into(), source.into());
        c.tags.insert(tags::SOURCE_ACCOUNT.into(), account.into());
        c.tags.insert(tags::CREATED_BY.into(), by.into());
        c.source = Some(Box::new(crate::domain::model::SourceImage {
            image_id: ec2_source.into(),
            region: "us-east-1".into(),
        }));
        c
    };
    let (a, b, c) = (
        "ami-0000000000000000a",
        "ami-0000000000000000b",
        "ami-0000000000000000c",
    );
    let target = vec![
        copy("ami-10000000000000001", a, OWN, FUNCTION, a),
        copy("ami-10000000000000002", b, OWN, FUNCTION, b),
        copy("ami-10000000000000003", c, OWN, FUNCTION, c),
        copy("ami-10000000000000004", c, "999999999999", FUNCTION, c),
        copy("ami-10000000000000005", c, OWN, "someone-else", c),
        // Tagged by someone in the target as the stack's copy of a deregistered AMI, but EC2
        // records another source: never retired.
        copy(
            "ami-10000000000000006",
            c,
            OWN,
            FUNCTION,
            "ami-0000000000000000f",
        ),
    ];
    let found = plan::orphaned(&target, &sources, &BTreeSet::new(), &region(), now);
    let ids: Vec<(&str, plan::Retirement, &str)> = found
        .iter()
        .map(|(i, how, why)| (i.id.as_str(), *how, why.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![(
            "ami-10000000000000003",
            plan::Retirement::Deregister,
            "its source ami-0000000000000000c is deregistered"
        )],
        "a disabled source keeps its copy (age-out may enable it again)"
    );
    let keep = BTreeSet::from([c.to_string()]);
    assert!(plan::orphaned(&target, &sources, &keep, &region(), now).is_empty());
    assert_eq!(plan::copies_of(&target, c, &region()).len(), 3);
}

#[test]
fn a_copy_whose_source_the_recycle_bin_can_restore_is_deprecated_not_deregistered() {
    use crate::domain::recycle_bin::BinImage;
    let now = at("2026-12-05T00:00:00Z");
    let copy = |id: &str, source: &str, deprecated: Option<&str>| {
        let mut c = Image::new(id, "copy", COPYING, at("2026-12-01T00:00:00Z"));
        c.tags.insert(tags::SOURCE_IMAGE.into(), source.into());
        c.deprecation_time = deprecated.map(at);
        c
    };
    let binned_copy = copy("ami-10000000000000001", "ami-0000000000000000a", None);
    let gone_copy = copy("ami-10000000000000002", "ami-0000000000000000b", None);
    let already = copy(
        "ami-10000000000000003",
        "ami-0000000000000000a",
        Some("2026-12-04T00:00:00Z"),
    );
    let gone = |c| {
        (
            c,
            plan::Retirement::Deregister,
            "its source is deregistered".to_string(),
        )
    };
    let orphans = vec![gone(&binned_copy), gone(&gone_copy), gone(&already)];
    let bin = [BinImage {
        image_id: "ami-0000000000000000a".into(),
        exit: Some(at("2026-12-12T00:00:00Z")),
    }];

    let after = plan::after_bin(orphans, &bin, now);

    let ids: Vec<(&str, plan::Retirement)> = after
        .iter()
        .map(|(i, how, _)| (i.id.as_str(), *how))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("ami-10000000000000001", plan::Retirement::Deprecate),
            ("ami-10000000000000002", plan::Retirement::Deregister),
        ],
        "a copy already deprecated is left alone while its source is restorable"
    );
    assert!(
        after[0].2.contains("Recycle Bin holds it until 2026-12-12"),
        "{}",
        after[0].2
    );
}

#[test]
fn a_sweep_queues_one_unit_per_target_account_and_region_and_an_ous_members_through_it() {
    let doc = document();
    let regions = vec![region(), "eu-west-1".parse().expect("region")];
    let none = std::collections::BTreeMap::new();
    assert_eq!(plan::units(&doc, &regions, &none).len(), 4);
    let ou = "arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-abcd-abcdefgh".to_string();
    let members = std::collections::BTreeMap::from([(
        ou.clone(),
        vec![
            SHARING.parse().expect("account"),
            "444444444444".parse().expect("account"),
        ],
    )]);
    let units = plan::units(&doc, &regions, &members);
    assert_eq!(units.len(), 6, "{units:?}");
    let through: Vec<(&str, Option<&str>)> = units
        .iter()
        .map(|((a, o), _)| (a.as_str(), o.as_deref()))
        .collect();
    assert!(
        through.contains(&(SHARING, Some(ou.as_str()))),
        "listed by id and in the OU: the unit carries the OU (another policy may target it)"
    );
    assert!(through.contains(&(COPYING, None)), "{through:?}");
    assert!(through.contains(&("444444444444", Some(ou.as_str()))));
}

#[test]
fn an_ou_target_is_shared_with_and_never_copies() {
    let ou = "arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-abcd-abcdefgh";
    let with = |copy: serde_json::Value, shared: serde_json::Value| {
        let json = serde_json::json!({"policies": [{"name": "golden",
            "share": {"organizational_units": shared, "snapshots": true},
            "distribute": {"targets": [{"organizational_units": [ou], "copy": copy, "ssm_parameters": ["/ami/{family}"]}]}}]});
        PolicyDocument::parse(&json.to_string(), Deployment::default())
    };
    let err = with(serde_json::json!({}), serde_json::json!([ou]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("organizational_units") && err.contains("ModifySnapshotAttribute"),
        "{err}"
    );
    let err = with(serde_json::Value::Null, serde_json::json!([]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not in share.organizational_units"), "{err}");
    let doc = with(serde_json::Value::Null, serde_json::json!([ou])).expect("valid");
    let d = doc.policies[0].distribute.as_ref().expect("distribute");
    let member: AccountId = "444444444444".parse().expect("account");
    assert!(d.target(&member, Some(ou)).is_some());
    assert!(d.target(&member, None).is_none());
}

#[test]
fn a_unit_with_a_failed_call_is_retried_and_a_refusal_is_not() {
    let account: AccountId = COPYING.parse().expect("account");
    let failed = DistributeLine::new(&account, &region(), Action::Unit).with(Outcome::Failed, None);
    let refused =
        DistributeLine::new(&account, &region(), Action::Publish).with(Outcome::Refused, None);
    assert!(retry(std::slice::from_ref(&failed)));
    assert!(!retry(&[refused]));
    let events = events(&account, &region(), &[failed]);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].detail_type,
        crate::domain::event::detail_type::AMI_DISTRIBUTION_FAILED
    );
}

fn bindings(wants: &[plan::Want<'_>]) -> Vec<String> {
    let shared: Vec<Option<String>> = wants.iter().map(|w| Some(w.image.id.clone())).collect();
    plan::templates(wants, &shared)
        .iter()
        .map(|t| match t {
            plan::TemplateFor::Want(i, e) => format!("{} <- {}", e.template, wants[*i].family),
            plan::TemplateFor::Ambiguous(_, e, f) => {
                format!("{} refused: {}", e.template, f.join(","))
            }
            plan::TemplateFor::Clash(_, e, f) => format!("{} clash: {}", e.template, f.join(",")),
        })
        .collect()
}

#[test]
fn a_target_template_gets_the_family_it_names_or_the_only_one_and_is_refused_between_several() {
    let json = serde_json::json!({"policies": [{
        "name": "golden", "family_by": "tag:Family", "select": {"tags": {"Team": "platform"}},
        "share": {"accounts": [SHARING]},
        "distribute": {"targets": [{"accounts": [SHARING], "launch_templates": [
            {"template": "web", "family": "web"},
            {"template": "any"},
            {"template": "gone", "family": "batch"}
        ]}]}
    }, {
        "name": "edge", "select": {"tags": {"Team": "edge"}},
        "share": {"accounts": [SHARING]},
        "distribute": {"targets": [{"accounts": [SHARING], "launch_templates": [{"template": "edge"}]}]}
    }]});
    let doc = PolicyDocument::parse(&json.to_string(), Deployment::default()).expect("valid");
    let family = |id: &str, f: &str| {
        let mut i = image(id, f, "2026-12-01T00:00:00Z");
        i.tags.insert("Family".into(), f.into());
        i
    };
    let account: AccountId = SHARING.parse().expect("account");
    let now = at("2026-12-05T00:00:00Z");

    let two = vec![
        family("ami-00000000000000001", "web"),
        family("ami-00000000000000002", "api"),
    ];
    let wants = plan::wanted(&doc, &two, (&account, None), now);
    assert_eq!(bindings(&wants), vec!["web <- web", "any refused: api,web"]);

    let one = vec![family("ami-00000000000000001", "web")];
    let wants = plan::wanted(&doc, &one, (&account, None), now);
    assert_eq!(
        bindings(&wants),
        vec!["web <- web", "any <- web"],
        "a family with no AMI here gets nothing"
    );

    // The edge policy names the golden policy's template `any` too: both are refused.
    let mut doc = doc;
    if let Some(d) = doc.policies[1].distribute.as_mut() {
        d.targets[0].launch_templates[0].template = "any".into();
    }
    let mut edge = image("ami-00000000000000003", "edge", "2026-12-01T00:00:00Z");
    edge.tags.insert("Team".into(), "edge".into());
    let images = vec![family("ami-00000000000000001", "web"), edge];
    let wants = plan::wanted(&doc, &images, (&account, None), now);
    let found = bindings(&wants);
    assert_eq!(
        found,
        vec![
            "web <- web",
            "any clash: golden/web,edge/edge",
            "any clash: golden/web,edge/edge"
        ]
    );
}

#[test]
fn copies_are_protected_by_template_versions_as_deep_as_the_deepest_distributing_policy_says() {
    let doc = |second_retain: serde_json::Value| {
        let mut plain = serde_json::json!({
            "name": "plain", "select": {"tags": {"Team": "other"}},
            "share": {"accounts": [SHARING]},
            "distribute": {"targets": [{"accounts": [SHARING], "ssm_parameters": ["/plain/{family}"]}]}
        });
        if !second_retain.is_null() {
            plain["retain"] = second_retain;
        }
        let json = serde_json::json!({"policies": [{
            "name": "golden", "select": {"tags": {"Team": "platform"}},
            "retain": {"keep_latest": 1, "in_use": {"launch_template_versions": "default-and-latest"}},
            "share": {"accounts": [SHARING]},
            "distribute": {"targets": [{"accounts": [SHARING], "ssm_parameters": ["/golden/{family}"]}]}
        }, plain, {
            "name": "local", "select": {"tags": {"Team": "local"}},
            "retain": {"keep_latest": 1, "in_use": {"launch_template_versions": "all"}}
        }]});
        PolicyDocument::parse(&json.to_string(), Deployment::default()).expect("valid")
    };
    let three = serde_json::json!({"keep_latest": 1, "in_use": {"launch_template_versions": 3}});
    assert_eq!(plan::in_use_depth(&doc(three)), TemplateDepth::Newest(3));
    assert_eq!(
        plan::in_use_depth(&doc(serde_json::Value::Null)),
        TemplateDepth::All,
        "a distributing policy without retain: every version protects"
    );
}

#[test]
fn one_template_named_with_the_same_source_but_another_ami_in_the_account_is_a_clash() {
    let json = serde_json::json!({"policies": [{
        "name": "copied", "select": {"tags": {"Team": "platform"}},
        "share": {"accounts": [SHARING], "snapshots": true},
        "distribute": {"targets": [{"accounts": [SHARING], "copy": {}, "launch_templates": [{"template": "web"}]}]}
    }, {
        "name": "shared", "select": {"tags": {"Team": "platform"}},
        "share": {"accounts": [SHARING]},
        "distribute": {"targets": [{"accounts": [SHARING], "launch_templates": [{"template": "web"}]}]}
    }]});
    let doc = PolicyDocument::parse(&json.to_string(), Deployment::default()).expect("valid");
    let account: AccountId = SHARING.parse().expect("account");
    let images = vec![image(
        "ami-00000000000000001",
        "web",
        "2026-12-01T00:00:00Z",
    )];
    let wants = plan::wanted(&doc, &images, (&account, None), at("2026-12-05T00:00:00Z"));
    assert_eq!(wants.len(), 2);
    let clashing = |named: &[Option<String>]| {
        plan::templates(&wants, named)
            .iter()
            .filter(|t| matches!(t, plan::TemplateFor::Clash(..)))
            .count()
    };

    let same = vec![Some("ami-00000000000000001".to_string()); 2];
    assert_eq!(clashing(&same), 0, "both write the same AMI");
    let copy_and_shared = vec![
        Some("ami-20000000000000001".to_string()),
        Some("ami-00000000000000001".to_string()),
    ];
    assert_eq!(clashing(&copy_and_shared), 2);
    let pending_and_shared = vec![None, Some("ami-00000000000000001".to_string())];
    assert_eq!(clashing(&pending_and_shared), 2);
}
