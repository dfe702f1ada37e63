use super::*;

const EXAMPLE: &str = r#"{"dry_run": true,
 "policies": [{
  "name": "web",
  "select": {"tags": {"Family": "*"}, "name_pattern": "web-*", "architectures": ["x86_64", "arm64"],
             "platform": "linux", "root_device_type": "ebs", "virtualization_type": "hvm"},
  "family_by": "tag:Family",
  "build":  {"instance_tags": {"ami-automation:build": "web"}, "no_reboot": true, "on_stop": false,
             "name_template": "{policy}-{instance_id}-{timestamp}", "tags": {"Team": "platform"}},
  "share":  {"accounts": ["111122223333"], "organizations": [], "organizational_units": [],
             "public": false, "snapshots": true},
  "copy":   {"regions": {"eu-west-1": {"encrypted": true, "kms_key_id": "alias/ami"}}},
  "retain": {"keep_latest": 3, "max_age_days": 90, "deprecate_after_days": 30, "disable_after_days": 60,
             "protect_tags": {"Retain": "true"}, "exclude_shared": false, "exclude_launched_within_days": 0,
             "in_use": {"launch_template_versions": "all"}}
 }]}"#;

fn parse(json: &str) -> Result<PolicyDocument> {
    PolicyDocument::parse(json, Deployment::default())
}

fn config_error(json: &str) -> (String, String) {
    match parse(json) {
        Err(Error::Config { path, message }) => (path, message),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn copies_that_could_not_be_shared_or_made_at_all_are_refused_at_load() {
    let policy = |share: &str, copy: &str| {
        format!(
            r#"{{"policies":[{{"name":"a","select":{{"tags":{{"F":"*"}}}}{share},"copy":{{"regions":{copy}}}}}]}}"#
        )
    };
    let share = r#","share":{"accounts":["111122223333"]}"#;
    // Encrypted with the AWS managed key (no kms_key_id) while the policy shares.
    let (path, message) = config_error(&policy(share, r#"{"eu-west-1":{"encrypted":true}}"#));
    assert_eq!(path, "$.policies[0].copy.regions.eu-west-1.kms_key_id");
    assert!(message.contains("AWS managed key"), "{message}");
    // The same copy without sharing is fine; with a customer managed key it is fine too.
    parse(&policy("", r#"{"eu-west-1":{"encrypted":true}}"#)).expect("no sharing");
    parse(&policy(
        share,
        r#"{"eu-west-1":{"encrypted":true,"kms_key_id":"alias/k"}}"#,
    ))
    .expect("customer managed key");
    // A key without encryption.
    let (path, message) = config_error(&policy("", r#"{"eu-west-1":{"kms_key_id":"alias/k"}}"#));
    assert_eq!(path, "$.policies[0].copy.regions.eu-west-1.kms_key_id");
    assert!(message.contains("encrypted"), "{message}");
    // Another partition.
    for region in ["cn-north-1", "us-gov-west-1"] {
        let (path, message) = config_error(&policy("", &format!(r#"{{"{region}":{{}}}}"#)));
        assert_eq!(path, format!("$.policies[0].copy.regions.{region}"));
        assert!(message.contains("partition"), "{message}");
    }
    let gov = Deployment {
        partition: Some("aws-us-gov"),
        ..Deployment::default()
    };
    PolicyDocument::parse(&policy("", r#"{"us-gov-east-1":{}}"#), gov).expect("same partition");
}

#[test]
fn the_documented_example_parses() {
    let doc = parse(EXAMPLE).expect("example parses");
    let web = doc.policy("web").expect("policy web");
    assert_eq!(web.family_by, FamilyBy::Tag("Family".into()));
    assert_eq!(web.retain.as_ref().map(|r| r.keep_latest), Some(3));
    assert_eq!(web.select.tags.get("Family"), Some(&TagPattern::Any));
}

#[test]
fn the_example_policy_file_parses() {
    let doc =
        parse(include_str!("../../../../examples/policies.json")).expect("examples/policies.json");
    assert_eq!(doc.policies.len(), 2);
}

#[test]
fn dry_run_defaults_to_true() {
    let doc = parse(r#"{"policies":[{"name":"a","retain":{"keep_latest":2}}]}"#).expect("parses");
    assert!(doc.dry_run);
}

#[test]
fn an_unknown_field_is_named_with_its_path() {
    let (path, message) = config_error(&EXAMPLE.replace("\"keep_latest\"", "\"keep_lastest\""));
    assert_eq!(path, "$.policies[0].retain.keep_lastest");
    assert!(
        message.contains("unknown field `keep_lastest`"),
        "{message}"
    );
}

#[test]
fn a_thirteen_digit_account_is_refused() {
    let (path, message) = config_error(&EXAMPLE.replace("111122223333", "1111222233334"));
    assert_eq!(path, "$.policies[0].share.accounts[0]");
    assert!(message.contains("exactly 12 digits"), "{message}");
}

#[test]
fn a_bad_region_is_refused() {
    let (path, message) = config_error(&EXAMPLE.replace("eu-west-1", "eu-wets-1"));
    assert_eq!(path, "$.policies[0].copy.regions.eu-wets-1");
    assert!(message.contains("unknown region `eu-wets-1`"), "{message}");
}

#[test]
fn a_wildcard_in_the_wrong_place_is_refused() {
    let (path, message) =
        config_error(&EXAMPLE.replace(r#""Retain": "true""#, r#""Retain": "t*ue""#));
    assert_eq!(path, "$.policies[0].retain.protect_tags.Retain");
    assert!(message.contains("only alone"), "{message}");
    let (path, _) = config_error(&EXAMPLE.replace(r#""Family": "*""#, r#""Fam*": "*""#));
    assert_eq!(path, "$.policies[0].select.tags");
}

#[test]
fn an_empty_policy_list_is_refused() {
    let (path, message) = config_error(r#"{"policies": []}"#);
    assert_eq!(path, "$.policies");
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn contradicting_ages_are_refused() {
    let (path, message) = config_error(&EXAMPLE.replace(
        "\"deprecate_after_days\": 30",
        "\"deprecate_after_days\": 120",
    ));
    assert_eq!(path, "$.policies[0].retain.deprecate_after_days");
    assert!(
        message.contains("greater than disable_after_days"),
        "{message}"
    );
    let (path, _) = config_error(
        r#"{"policies":[{"name":"a","retain":{"keep_latest":0,"allow_empty_family":true}}]}"#,
    );
    assert_eq!(path, "$.policies[0].retain");
}

#[test]
fn a_policy_that_would_delete_everything_or_image_everything_is_refused() {
    let retain = |r: &str| format!(r#"{{"policies":[{{"name":"a","retain":{r}}}]}}"#);
    // keep_latest 0 only with an explicit allow_empty_family.
    let (path, message) = config_error(&retain(r#"{"keep_latest":0,"max_age_days":30}"#));
    assert_eq!(path, "$.policies[0].retain.keep_latest");
    assert!(message.contains("allow_empty_family"), "{message}");
    parse(&retain(
        r#"{"keep_latest":0,"allow_empty_family":true,"max_age_days":30}"#,
    ))
    .expect("explicitly allowed");
    // Ages of 0 days.
    for field in ["max_age_days", "disable_after_days", "deprecate_after_days"] {
        let (path, message) = config_error(&retain(&format!(r#"{{"{field}":0}}"#)));
        assert_eq!(path, format!("$.policies[0].retain.{field}"));
        assert!(message.contains("1 or more"), "{message}");
    }
    // A wildcard or empty key, or an empty value, in build.instance_tags.
    let build = |tags: &str| {
        format!(r#"{{"policies":[{{"name":"a","build":{{"instance_tags":{tags}}}}}]}}"#)
    };
    for tags in [r#"{"*":"*"}"#, r#"{"Team*":"web"}"#, r#"{"":"x"}"#] {
        let (path, message) = config_error(&build(tags));
        assert_eq!(path, "$.policies[0].build.instance_tags", "{tags}");
        assert!(message.contains("every instance"), "{message}");
    }
    let (path, _) = config_error(&build(r#"{"Team":""}"#));
    assert_eq!(path, "$.policies[0].build.instance_tags.Team");
    parse(&build(r#"{"ami-automation:build":"*"}"#)).expect("any value of a named tag");
}

#[test]
fn a_build_tag_with_a_reserved_key_is_refused_naming_it() {
    for key in [
        "ami-automation:validation",
        "ami-automation:policy",
        "ami-automation:x",
    ] {
        let (path, message) = config_error(&format!(
            r#"{{"policies":[{{"name":"a","build":{{"instance_tags":{{"Build":"yes"}},"tags":{{"{key}":"passed"}}}}}}]}}"#
        ));
        assert_eq!(path, format!("$.policies[0].build.tags.{key}"));
        assert!(message.contains("tool's own state"), "{message}");
    }
    parse(r#"{"policies":[{"name":"a","build":{"instance_tags":{"Build":"yes"},"tags":{"Team":"web"}}}]}"#)
        .expect("a tag of the team's own");
}

#[test]
fn a_key_given_twice_in_the_document_is_refused_naming_it() {
    let (path, message) = config_error(
        r#"{"dry_run": false, "policies": [{"name": "a", "retain": {"keep_latest": 2}}], "dry_run": true}"#,
    );
    assert_eq!(path, "$.dry_run");
    assert!(message.contains("given twice"), "{message}");
    let (path, _) = config_error(
        r#"{"policies": [{"name": "a", "retain": {"max_age_days": 90, "max_age_days": 1}}]}"#,
    );
    assert_eq!(path, "$.policies[0].retain.max_age_days");
}

#[test]
fn public_sharing_needs_the_deployment_switch() {
    let public = EXAMPLE.replace("\"public\": false", "\"public\": true");
    let (path, message) = config_error(&public);
    assert_eq!(path, "$.policies[0].share.public");
    assert!(message.contains("AllowPublicSharing"), "{message}");
    assert!(PolicyDocument::parse(
        &public,
        Deployment {
            allow_public_sharing: true,
            ..Deployment::default()
        }
    )
    .is_ok());
}

#[test]
fn a_bad_organization_arn_is_refused() {
    let bad = EXAMPLE.replace(
        r#""organizations": []"#,
        r#""organizations": ["arn:aws:organizations::111122223333:organization/o-x"]"#,
    );
    let (path, _) = config_error(&bad);
    assert_eq!(path, "$.policies[0].share.organizations[0]");
}

#[test]
fn name_patterns_match_like_ec2_name_filters() {
    let p = NamePattern::try_from("web-*-2026??".to_string()).expect("pattern");
    assert!(p.matches("web-i-123-202601"));
    assert!(!p.matches("web-i-123-2026011"));
    assert!(!p.matches("api-1-202601"));
}

#[test]
fn the_family_of_a_name_drops_trailing_timestamps_and_numbers() {
    assert_eq!(name_prefix("web-20260101T120000Z"), "web");
    assert_eq!(name_prefix("web-i-0abc12-20260101T120000Z"), "web-i-0abc12");
    assert_eq!(name_prefix("base_2026.01.02"), "base");
    assert_eq!(name_prefix("plain"), "plain");
    assert_eq!(name_prefix("2026-01-01"), "2026");
}

#[test]
fn bad_validate_and_publish_sections_name_their_json_path_and_the_fix() {
    let policy = |section: &str| format!(r#"{{"policies":[{{"name":"web",{section}}}]}}"#);
    let v = |fields: &str| {
        policy(&format!(
            r#""validate":{{"instance_type":"t3.micro","subnet_id":"subnet-0123456789abcdef0","security_group_ids":["sg-0123456789abcdef0"]{fields}}}"#
        ))
    };
    assert!(parse(&v("")).is_ok());
    let cases: [(String, &str, &str); 12] = [
        (
            v(r#","timeout_minutes":0"#),
            "$.policies[0].validate.timeout_minutes",
            "1 to 240",
        ),
        (
            v(r#","console_contains":"""#),
            "$.policies[0].validate.console_contains",
            "1 to 1024",
        ),
        (
            v(r#","instance_profile":"arn:aws:iam::123456789012:role/x""#),
            "$.policies[0].validate.instance_profile",
            "instance-profile",
        ),
        (
            policy(
                r#""validate":{"instance_type":"micro","subnet_id":"subnet-0123456789abcdef0","security_group_ids":["sg-0123456789abcdef0"]}"#,
            ),
            "$.policies[0].validate.instance_type",
            "t3.micro",
        ),
        (
            policy(
                r#""validate":{"instance_type":"t3.micro","subnet_id":"vpc-0123456789abcdef0","security_group_ids":["sg-0123456789abcdef0"]}"#,
            ),
            "$.policies[0].validate.subnet_id",
            "not a subnet id",
        ),
        (
            policy(
                r#""validate":{"instance_type":"t3.micro","subnet_id":"subnet-0123456789abcdef0","security_group_ids":[]}"#,
            ),
            "$.policies[0].validate.security_group_ids",
            "1 to 5",
        ),
        (
            policy(
                r#""validate":{"instance_type":"t3.micro","subnet_id":"subnet-0123456789abcdef0","security_group_ids":["sg-1","sg-0123456789abcdef0"]}"#,
            ),
            "$.policies[0].validate.security_group_ids[0]",
            "security group id",
        ),
        (
            policy(r#""publish":{}"#),
            "$.policies[0].publish",
            "publishes nowhere",
        ),
        (
            policy(r#""publish":{"ssm_parameters":["/ami/{name}"]}"#),
            "$.policies[0].publish.ssm_parameters[0]",
            "only {policy}, {family} and {region}",
        ),
        (
            policy(r#""publish":{"ssm_parameters":["ami/{family}"]}"#),
            "$.policies[0].publish.ssm_parameters[0]",
            "starts with `/`",
        ),
        (
            policy(r#""publish":{"ssm_parameters":["/aws/{family}"]}"#),
            "$.policies[0].publish.ssm_parameters[0]",
            "may not begin with `aws`",
        ),
        (
            policy(r#""publish":{"launch_templates":[{"template":"lt-12"}]}"#),
            "$.policies[0].publish.launch_templates[0].template",
            "17 hex digits",
        ),
    ];
    for (json, path, fix) in cases {
        let (got_path, message) = config_error(&json);
        assert_eq!(got_path, path, "{json}");
        assert!(message.contains(fix), "{json}: {message}");
    }
    // An unknown field (a typo, or cross-account publishing this version lacks) is named.
    let (path, _) = config_error(&policy(
        r#""publish":{"ssm_parameters":["/ami/{family}"],"accounts":["arn:aws:iam::123456789012:role/p"]}"#,
    ));
    assert_eq!(path, "$.policies[0].publish.accounts");
}
