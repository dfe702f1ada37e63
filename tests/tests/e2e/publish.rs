//! `ami-publish` end to end: launch tests (pass, fail, timeout), the promotion gate, publishing
//! to SSM and a launch template, rollback, and bad sections refused at start.

use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData, ResourceType};
use aws_sdk_ec2::Client;
use e2e_tests::{seed, Function, TestBed, BASE_X86};
use serde_json::{json, Value};

fn document(subnet: &str, group: &str) -> String {
    json!({"dry_run": false, "policies": [{
        "name": "web", "select": {"tags": {"Family": "web*"}}, "family_by": "tag:Family",
        "validate": {"instance_type": "t3.micro", "subnet_id": subnet, "security_group_ids": [group],
                     "timeout_minutes": 15, "console_contains": "login:"},
        "share": {"accounts": ["111122223333"]},
        "publish": {"ssm_parameters": ["/ami/{policy}/{family}"],
                    "launch_templates": [{"template": "web-servers", "family": "web-a", "set_default": true}]}
    }]})
    .to_string()
}

struct Account {
    bed: TestBed,
    /// The launch tests' subnet.
    subnet: String,
    ec2: Client,
    builder: String,
    document: String,
    /// The launch tests' security group.
    group: String,
}

async fn account() -> Account {
    let bed = TestBed::start();
    let ec2 = bed.ec2("us-east-1").await;
    let (subnet, group) = seed::network(&ec2).await;
    // The stack is deployed with this network for the launch tests (its role allows no other).
    bed.deploy(json!({"ValidationSubnetId": subnet, "ValidationSecurityGroupIds": [group]}));
    let builder = seed::instance(&ec2, 0, &[]).await;
    ec2.create_launch_template()
        .launch_template_name("web-servers")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(BASE_X86)
                .instance_type(InstanceType::T3Small)
                .build(),
        )
        .tag_specifications(seed::tag_spec(
            ResourceType::LaunchTemplate,
            &[("ami-automation:publish", "web")],
        ))
        .send()
        .await
        .expect("CreateLaunchTemplate");
    Account {
        document: document(&subnet, &group),
        subnet,
        group,
        bed,
        ec2,
        builder,
    }
}

fn lines<'a>(report: &'a Value, action: &str) -> Vec<&'a Value> {
    report["results"]
        .as_array()
        .map(|r| r.iter().filter(|l| l["action"] == action).collect())
        .unwrap_or_default()
}

async fn instance_state(ec2: &Client, id: &str) -> String {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string())
        .unwrap_or_default()
}

fn available(image: &str) -> Value {
    json!({"source": "aws.ec2", "detail-type": "EC2 AMI State Change", "region": "us-east-1",
           "detail": {"RequestId": "r", "ImageId": image, "State": "available", "ErrorMessage": ""}})
}

/// Launches the AMI's test through its `available` event (twice: one instance), returns it.
fn launched(function: &Function, image: &str) -> String {
    let first = function.invoke(&available(image)).ok();
    let launch = lines(&first, "launch");
    assert_eq!(launch.len(), 1, "{first}");
    assert_eq!(launch[0]["outcome"], "launched", "{first}");
    let again = function.invoke(&available(image)).ok();
    assert_eq!(lines(&again, "launch").len(), 0, "launched once: {again}");
    assert_eq!(lines(&again, "wait").len(), 1, "{again}");
    launch[0]["instance_id"]
        .as_str()
        .expect("instance")
        .to_string()
}

#[tokio::test]
async fn an_ami_that_boots_passes_is_shared_once_validated_and_published_idempotently() {
    let a = account().await;
    let image = seed::image(&a.ec2, &a.builder, "web-1", &[("Family", "web-a")]).await;
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);
    let share = Function::start(&a.bed, "ami-share", &[("AMI_POLICIES", &a.document)]);

    // The gate: shared only once it passed.
    let held = share.invoke(&available(&image)).ok();
    assert_eq!(held["results"][0]["outcome"], "skipped", "{held}");
    assert!(held["results"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("promotion gate"));

    let instance = launched(&publish, &image);
    let described = a
        .ec2
        .describe_instances()
        .instance_ids(&instance)
        .send()
        .await
        .expect("DescribeInstances");
    let i = &described.reservations()[0].instances()[0];
    assert_eq!(i.image_id(), Some(image.as_str()));
    assert_eq!(i.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    assert!(i
        .tags()
        .iter()
        .any(|t| t.key() == Some("ami-automation:validates") && t.value() == Some(image.as_str())));

    // Booted, both checks ok, the console shows the login prompt.
    a.bed.set_instance(
        &instance,
        json!({"system_status": "ok", "instance_status": "ok", "console": "Ubuntu\nweb login: "}),
    );
    let state_change = json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
        "region": "us-east-1", "detail": {"instance-id": instance, "state": "running"}});
    let report = publish.invoke(&state_change).ok();
    assert_eq!(lines(&report, "pass")[0]["outcome"], "passed", "{report}");
    assert_eq!(
        seed::image_tag(&a.ec2, &image, "ami-automation:validation")
            .await
            .as_deref(),
        Some("passed")
    );
    assert_eq!(instance_state(&a.ec2, &instance).await, "terminated");

    // Published in the same sweep: the parameter and a new default template version.
    let published: Vec<&Value> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|l| l["outcome"] == "published")
        .collect();
    assert_eq!(published.len(), 2, "{report}");
    let ssm = a.bed.ssm("us-east-1").await;
    let parameter = ssm
        .get_parameter()
        .name("/ami/web/web-a")
        .send()
        .await
        .expect("GetParameter");
    assert_eq!(
        parameter.parameter().and_then(|p| p.value()),
        Some(image.as_str())
    );
    let template = a
        .ec2
        .describe_launch_template_versions()
        .launch_template_name("web-servers")
        .versions("$Default")
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions");
    let v = &template.launch_template_versions()[0];
    assert_eq!(v.version_number(), Some(2));
    let data = v.launch_template_data().expect("data");
    assert_eq!(data.image_id(), Some(image.as_str()));
    assert_eq!(
        data.instance_type().map(|t| t.as_str()),
        Some("t3.small"),
        "only the AMI changed"
    );

    let events = a.bed.published();
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["detail_type"].as_str())
        .collect();
    assert!(kinds.contains(&"AMI Validated"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "AMI Published").count(), 2);
    let validated = events
        .iter()
        .find(|e| e["detail_type"] == "AMI Validated")
        .expect("event");

    // Share acts on the tool's own `AMI Validated` event.
    let on_validated = json!({"source": "ami.automation", "detail-type": "AMI Validated",
        "region": "us-east-1", "detail": validated["detail"]});
    let shared = share.invoke(&on_validated).ok();
    assert_eq!(shared["results"][0]["outcome"], "changed", "{shared}");

    // Re-delivered events: no new template version, no new parameter version.
    for _ in 0..2 {
        let again = publish.invoke(&state_change).ok();
        assert!(
            again["results"]
                .as_array()
                .expect("results")
                .iter()
                .all(|l| l["outcome"] == "unchanged"),
            "{again}"
        );
    }
    let versions = a
        .ec2
        .describe_launch_template_versions()
        .launch_template_name("web-servers")
        .send()
        .await
        .expect("versions");
    assert_eq!(versions.launch_template_versions().len(), 2);
    let parameter = ssm
        .get_parameter()
        .name("/ami/web/web-a")
        .send()
        .await
        .expect("GetParameter");
    assert_eq!(parameter.parameter().map(|p| p.version()), Some(1));
}

#[tokio::test]
async fn an_ami_whose_console_never_shows_the_prompt_fails_at_its_timeout_and_is_never_promoted() {
    let a = account().await;
    let image = seed::image(&a.ec2, &a.builder, "web-1", &[("Family", "web-a")]).await;
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);
    let instance = launched(&publish, &image);
    a.bed.set_instance(
        &instance,
        json!({"system_status": "ok", "instance_status": "ok", "console": "Kernel panic - not syncing"}),
    );
    let waiting = publish.invoke(&json!({})).ok();
    let wait = lines(&waiting, "wait");
    assert_eq!(wait[0]["outcome"], "waiting", "{waiting}");
    assert!(wait[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("does not contain `login:`"));

    // Sixteen minutes later: the instance was launched that long ago (a real run never takes a
    // clock ahead of the wall clock).
    a.bed
        .set_instance(&instance, json!({"launched_minutes_ago": 16}));
    let report = publish.invoke(&json!({})).ok();
    let fail = lines(&report, "fail");
    assert_eq!(fail[0]["outcome"], "validation_failed", "{report}");
    assert!(fail[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("timed out after 15 minutes"));
    assert_eq!(
        seed::image_tag(&a.ec2, &image, "ami-automation:validation")
            .await
            .as_deref(),
        Some("failed")
    );
    assert_eq!(
        instance_state(&a.ec2, &instance).await,
        "terminated",
        "nothing is left running"
    );
    assert!(
        lines(&report, "put_parameter").is_empty(),
        "a failed AMI is never published: {report}"
    );
    let failed = a.bed.published();
    assert!(failed
        .iter()
        .any(|e| e["detail_type"] == "AMI Validation Failed"));

    let share = Function::start(&a.bed, "ami-share", &[("AMI_POLICIES", &a.document)]);
    let held = share.invoke(&json!({"image_ids": [image]})).ok();
    assert_eq!(held["results"][0]["outcome"], "skipped", "{held}");
}

#[tokio::test]
async fn an_instance_that_never_initializes_times_out_and_one_that_stops_fails_at_once() {
    let a = account().await;
    let slow = seed::image(&a.ec2, &a.builder, "web-1", &[("Family", "web-a")]).await;
    let stops = seed::image(&a.ec2, &a.builder, "api-1", &[("Family", "web-b")]).await;
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);
    let report = publish.invoke(&json!({})).ok();
    assert_eq!(lines(&report, "launch").len(), 2, "{report}");
    let instance_of = |image: &str| {
        lines(&report, "launch")
            .iter()
            .find(|l| l["image_id"] == image)
            .and_then(|l| l["instance_id"].as_str())
            .expect("instance")
            .to_string()
    };
    a.bed.set_instance(
        &instance_of(&slow),
        json!({"system_status": "initializing", "instance_status": "initializing"}),
    );
    a.ec2
        .stop_instances()
        .instance_ids(instance_of(&stops))
        .send()
        .await
        .expect("StopInstances");
    let now = publish.invoke(&json!({})).ok();
    let fail = lines(&now, "fail");
    assert_eq!(fail.len(), 1, "{now}");
    assert_eq!(fail[0]["image_id"], stops.as_str());
    assert!(fail[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("stopped before its checks passed"));
    a.bed
        .set_instance(&instance_of(&slow), json!({"launched_minutes_ago": 20}));
    let timed_out = publish.invoke(&json!({})).ok();
    let fail = lines(&timed_out, "fail");
    assert_eq!(fail[0]["image_id"], slow.as_str(), "{timed_out}");
    assert!(fail[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("system status initializing"));
    for image in [&slow, &stops] {
        assert_eq!(
            seed::image_tag(&a.ec2, image, "ami-automation:validation")
                .await
                .as_deref(),
            Some("failed")
        );
        assert_eq!(
            instance_state(&a.ec2, &instance_of(image)).await,
            "terminated"
        );
    }
}

#[tokio::test]
async fn a_rollback_pins_the_older_ami_until_a_newer_one_passes() {
    let a = account().await;
    let ssm = a.bed.ssm("us-east-1").await;
    let mut images = Vec::new();
    for (n, when) in [(1, "2026-01-01T00:00:00Z"), (2, "2026-02-01T00:00:00Z")] {
        let image = seed::image(
            &a.ec2,
            &a.builder,
            &format!("web-{n}"),
            &[("Family", "web-a")],
        )
        .await;
        a.bed.pass("us-east-1", &image, "web").await;
        a.bed
            .seed_image("us-east-1", &image, json!({"creation_date": when}));
        images.push(image);
    }
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);
    publish.invoke(&json!({})).ok();
    let value = |ssm: aws_sdk_ssm::Client| async move {
        ssm.get_parameter()
            .name("/ami/web/web-a")
            .send()
            .await
            .expect("GetParameter")
            .parameter()
            .and_then(|p| p.value().map(str::to_string))
    };
    assert_eq!(
        value(ssm.clone()).await.as_deref(),
        Some(images[1].as_str())
    );

    let rollback = json!({"publish": {"policy": "web", "family": "web-a", "image_id": images[0]}});
    let report = publish.invoke(&rollback).ok();
    let pinned: Vec<&Value> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|l| l["pinned"] == true)
        .collect();
    assert_eq!(pinned.len(), 2, "{report}");
    assert!(pinned
        .iter()
        .all(|l| l["outcome"] == "published" && l["previous_image_id"] == images[1].as_str()));
    assert_eq!(
        value(ssm.clone()).await.as_deref(),
        Some(images[0].as_str())
    );
    // The sweep keeps the pin.
    let sweep = publish.invoke(&json!({})).ok();
    assert!(
        sweep["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|l| l["outcome"] == "unchanged" && l["pinned"] == true),
        "{sweep}"
    );
    assert_eq!(
        value(ssm.clone()).await.as_deref(),
        Some(images[0].as_str())
    );
    let template = a
        .ec2
        .describe_launch_template_versions()
        .launch_template_name("web-servers")
        .versions("$Default")
        .send()
        .await
        .expect("versions");
    assert_eq!(
        template.launch_template_versions()[0]
            .launch_template_data()
            .and_then(|d| d.image_id()),
        Some(images[0].as_str())
    );

    // A new AMI that passes replaces the pin (EC2's CreationDate counts in seconds here).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let newer = seed::image(&a.ec2, &a.builder, "web-3", &[("Family", "web-a")]).await;
    a.bed.pass("us-east-1", &newer, "web").await;
    publish.invoke(&json!({})).ok();
    assert_eq!(value(ssm).await.as_deref(), Some(newer.as_str()));
}

#[tokio::test]
async fn bad_validate_and_publish_sections_fail_the_cold_start_naming_the_field() {
    let bed = TestBed::start();
    let cases = [
        (
            r#"{"policies": [{"name": "web", "validate": {"instance_type": "t3.micro", "subnet_id": "subnet-0123456789abcdef0", "security_group_ids": ["sg-0123456789abcdef0"], "timeout_minutes": 0}}]}"#,
            "$.policies[0].validate.timeout_minutes",
        ),
        (
            r#"{"policies": [{"name": "web", "publish": {"ssm_parameters": ["/ami/{name}"]}}]}"#,
            "$.policies[0].publish.ssm_parameters[0]",
        ),
    ];
    for (document, path) in cases {
        let mut function = Function::start(&bed, "ami-publish", &[("AMI_POLICIES", document)]);
        let failure = function.cold_start_failure();
        assert!(failure.contains(path), "{failure}");
    }
}

#[tokio::test]
async fn an_instance_tagged_like_a_test_instance_but_launched_by_someone_else_is_never_terminated_and_decides_nothing(
) {
    let a = account().await;
    let image = seed::image(&a.ec2, &a.builder, "web-1", &[("Family", "web-a")]).await;
    let run = |token: Option<String>| {
        let ec2 = a.ec2.clone();
        let image = image.clone();
        async move {
            ec2.run_instances()
                .image_id(&image)
                .instance_type(InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .set_client_token(token)
                .send()
                .await
                .expect("RunInstances")
                .instances()[0]
                .instance_id()
                .expect("instance id")
                .to_string()
        }
    };
    let test_tags = |instance: &str| {
        let ec2 = a.ec2.clone();
        let (instance, image) = (instance.to_string(), image.clone());
        async move {
            let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
            ec2.create_tags()
                .resources(&instance)
                .tags(tag("ami-automation:validates", &image))
                .tags(tag("ami-automation:created-by", "ami-publish"))
                .tags(tag("ami-automation:policy", "web"))
                .send()
                .await
                .expect("CreateTags");
        }
    };
    // Someone's own instance of the AMI, tagged by someone allowed CreateTags exactly as
    // ami-publish tags its test instances; it boots to its login prompt and looks abandoned.
    let posing = run(None).await;
    test_tags(&posing).await;
    // And a test instance of an earlier release (its unsealed client token).
    let earlier = run(Some(format!("ami-publish-validate-{image}"))).await;
    test_tags(&earlier).await;
    for instance in [&posing, &earlier] {
        a.bed.set_instance(
            instance,
            json!({"system_status": "ok", "instance_status": "ok", "console": "web login: ",
                   "launched_minutes_ago": 300}),
        );
    }
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);

    // The tool launches its own test instance; neither other one decides anything, the
    // earlier release's is terminated, someone's own is left alone.
    let instance = launched(&publish, &image);
    assert!(instance != posing && instance != earlier);
    let report = publish.invoke(&json!({})).ok();
    assert!(lines(&report, "pass").is_empty(), "{report}");
    assert_eq!(
        seed::image_tag(&a.ec2, &image, "ami-automation:validation").await,
        None
    );
    assert_eq!(instance_state(&a.ec2, &posing).await, "running");
    assert_eq!(instance_state(&a.ec2, &earlier).await, "terminated");

    // Its own instance boots: the AMI passes on it, and someone's instance is still left alone.
    a.bed.set_instance(
        &instance,
        json!({"system_status": "ok", "instance_status": "ok", "console": "web login: "}),
    );
    let report = publish.invoke(&json!({})).ok();
    assert_eq!(lines(&report, "pass").len(), 1, "{report}");
    assert_eq!(lines(&report, "pass")[0]["instance_id"], instance.as_str());
    assert_eq!(instance_state(&a.ec2, &instance).await, "terminated");
    assert_eq!(instance_state(&a.ec2, &posing).await, "running");
}

#[tokio::test]
async fn a_launch_test_leaves_no_volume_behind_whatever_the_ami_keeps_on_termination() {
    let a = account().await;
    // A server whose data volume is kept on termination; its AMIs keep that in their mappings.
    let server = seed::server_with_kept_data_volume(&a.ec2).await;
    let passes = seed::image(&a.ec2, &server, "web-1", &[("Family", "web-a")]).await;
    let fails = seed::image(&a.ec2, &server, "api-1", &[("Family", "web-b")]).await;
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);
    let started = publish.invoke(&json!({})).ok();
    let instance_of = |image: &str| {
        lines(&started, "launch")
            .iter()
            .find(|l| l["image_id"] == image)
            .and_then(|l| l["instance_id"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no launch for {image}: {started}"))
    };
    let (first, second) = (instance_of(&passes), instance_of(&fails));
    a.bed.set_instance(
        &first,
        json!({"system_status": "ok", "instance_status": "ok", "console": "web login: "}),
    );
    a.bed.set_instance(
        &second,
        json!({"system_status": "ok", "instance_status": "ok", "console": "Kernel panic",
               "launched_minutes_ago": 20}),
    );
    let report = publish.invoke(&json!({})).ok();
    assert_eq!(lines(&report, "pass").len(), 1, "{report}");
    assert_eq!(lines(&report, "fail").len(), 1, "{report}");
    for instance in [&first, &second] {
        assert_eq!(instance_state(&a.ec2, instance).await, "terminated");
    }
    let left = seed::available_volumes(&a.ec2).await;
    assert!(
        left.is_empty(),
        "no volume (a copy of the server's data) outlives its test: {left:?}"
    );
}

#[tokio::test]
async fn a_launch_test_refuses_a_security_group_that_lets_traffic_in() {
    let a = account().await;
    let image = seed::image(&a.ec2, &a.builder, "web-1", &[("Family", "web-a")]).await;
    a.ec2
        .authorize_security_group_ingress()
        .group_id(&a.group)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .expect("AuthorizeSecurityGroupIngress");
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);
    let (kind, message) = publish.invoke(&available(&image)).err();
    assert_eq!(kind, "PartialFailure", "{message}");
    assert!(
        message.contains("let traffic in") && message.contains("tcp 22 from 0.0.0.0/0"),
        "{message}"
    );
    assert!(test_instances(&a.ec2).await.is_empty(), "nothing launched");
}

/// The reservations of the launch tests' instances (tagged `ami-automation:validates`).
async fn test_instances(ec2: &Client) -> Vec<aws_sdk_ec2::types::Reservation> {
    let running = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag-key")
                .values("ami-automation:validates")
                .build(),
        )
        .send()
        .await
        .expect("DescribeInstances");
    running.reservations().to_vec()
}

#[tokio::test]
async fn a_launch_test_instance_type_the_deployment_does_not_allow_fails_the_cold_start() {
    let a = account().await;
    let mut function = Function::start(
        &a.bed,
        "ami-publish",
        &[
            ("AMI_POLICIES", &a.document),
            ("AMI_VALIDATION_INSTANCE_TYPES", "t4g.micro,t4g.small"),
        ],
    );
    let log = function.cold_start_failure();
    assert!(
        log.contains("$.policies[0].validate.instance_type")
            && log.contains("`t3.micro` is not among the deployment's ValidationInstanceTypes"),
        "{log}"
    );
}

#[tokio::test]
async fn a_launch_test_outside_the_network_the_deployment_declares_isolated_fails_the_cold_start() {
    let a = account().await;
    let cases = [
        (
            "",
            "",
            "$.policies[0].validate.subnet_id",
            "declares no isolated subnet",
        ),
        (
            "subnet-0fffffffffffffff0",
            a.group.as_str(),
            "$.policies[0].validate.subnet_id",
            "is not the subnet the deployment declares isolated",
        ),
        (
            "",
            "sg-0fffffffffffffff0",
            "$.policies[0].validate.security_group_ids",
            "is not among the deployment's ValidationSecurityGroupIds",
        ),
    ];
    let declared = a.subnet.clone();
    for (subnet, groups, path, says) in cases {
        let subnet = if path.ends_with("security_group_ids") {
            declared.as_str()
        } else {
            subnet
        };
        let mut function = Function::start(
            &a.bed,
            "ami-publish",
            &[
                ("AMI_POLICIES", &a.document),
                ("AMI_VALIDATION_SUBNET", subnet),
                ("AMI_VALIDATION_SECURITY_GROUPS", groups),
            ],
        );
        let log = function.cold_start_failure();
        assert!(log.contains(path) && log.contains(says), "{log}");
    }
    // The declared network: it starts.
    let publish = Function::start(
        &a.bed,
        "ami-publish",
        &[
            ("AMI_POLICIES", &a.document),
            ("AMI_VALIDATION_SUBNET", &declared),
            ("AMI_VALIDATION_SECURITY_GROUPS", &a.group),
        ],
    );
    publish.invoke(&json!({"dry_run": true})).ok();
}

#[tokio::test]
async fn a_test_instance_is_terminated_at_its_deadline_even_when_the_function_never_runs_again() {
    let a = account().await;
    let image = seed::image(&a.ec2, &a.builder, "web-1", &[("Family", "web-a")]).await;
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);
    let instance = launched(&publish, &image);
    // The function is switched off (or broken, or throttled) from here on.
    drop(publish);
    // Its timeout (15 minutes) passes: nothing happens yet.
    assert!(a.bed.advance_scheduler(20).is_empty());
    assert_ne!(instance_state(&a.ec2, &instance).await, "terminated");
    // Past its timeout and the grace (25 minutes): the schedule terminates it.
    let run = a.bed.advance_scheduler(6);
    assert_eq!(run.len(), 1, "{run:?}");
    assert_eq!(run[0]["instance_ids"][0], instance.as_str());
    assert_eq!(instance_state(&a.ec2, &instance).await, "terminated");
}

#[tokio::test]
async fn a_new_template_version_keeps_the_snapshot_backed_volumes_consumers_launch_with() {
    use aws_sdk_ec2::types::{
        LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    };
    let a = account().await;
    let image = seed::image(&a.ec2, &a.builder, "web-1", &[("Family", "web-a")]).await;
    a.bed.pass("us-east-1", &image, "web").await;
    // The consumers' template launches with a data volume restored from a snapshot.
    let snapshot = seed::snapshot(&a.ec2, false).await;
    a.ec2
        .create_launch_template_version()
        .launch_template_name("web-servers")
        .source_version("1")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(BASE_X86)
                .block_device_mappings(
                    LaunchTemplateBlockDeviceMappingRequest::builder()
                        .device_name("/dev/sdb")
                        .ebs(
                            LaunchTemplateEbsBlockDeviceRequest::builder()
                                .snapshot_id(&snapshot)
                                .volume_size(10)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("CreateLaunchTemplateVersion");
    a.ec2
        .modify_launch_template()
        .launch_template_name("web-servers")
        .default_version("2")
        .send()
        .await
        .expect("ModifyLaunchTemplate");
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);
    let report = publish.invoke(&json!({})).ok();
    assert_eq!(lines(&report, "new_template_version").len(), 1, "{report}");
    let default = a
        .ec2
        .describe_launch_template_versions()
        .launch_template_name("web-servers")
        .versions("$Default")
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions");
    let data = default.launch_template_versions()[0]
        .launch_template_data()
        .expect("data");
    assert_eq!(data.image_id(), Some(image.as_str()));
    assert_eq!(
        data.block_device_mappings()
            .first()
            .and_then(|m| m.ebs())
            .and_then(|e| e.snapshot_id()),
        Some(snapshot.as_str()),
        "the data volume's snapshot is kept"
    );
}

#[tokio::test]
async fn a_parameter_ssm_is_still_validating_is_deferred_without_an_error_and_then_lands() {
    let a = account().await;
    let image = seed::image(&a.ec2, &a.builder, "web-1", &[("Family", "web-a")]).await;
    a.bed.pass("us-east-1", &image, "web").await;
    a.bed.ssm_validation(json!({ "validation_seconds": 300 }));
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);
    let put = |report: &Value| -> Value {
        report["results"]
            .as_array()
            .and_then(|r| r.iter().find(|l| l["target"] == "ssm:/ami/web/web-a"))
            .cloned()
            .unwrap_or_else(|| panic!("a line for the parameter: {report}"))
    };

    let first = publish.invoke(&json!({})).ok();
    assert_eq!(put(&first)["outcome"], "published", "{first}");
    // The sweep the launch test's end starts a minute later: SSM is still validating.
    let second = publish.invoke(&json!({})).ok();
    assert_eq!(put(&second)["outcome"], "deferred", "{second}");
    assert!(
        put(&second)["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("still validating"),
        "{second}"
    );

    a.bed.ssm_validation(json!({ "advance_seconds": 301 }));
    let third = publish.invoke(&json!({})).ok();
    assert_eq!(put(&third)["outcome"], "unchanged", "{third}");
    let ssm = a.bed.ssm("us-east-1").await;
    let stored = ssm
        .get_parameter()
        .name("/ami/web/web-a")
        .send()
        .await
        .expect("GetParameter");
    let stored = stored.parameter().expect("the parameter");
    assert_eq!(
        (stored.value(), stored.version()),
        (Some(image.as_str()), 1),
        "written once"
    );
    let announced = a
        .bed
        .published()
        .iter()
        .filter(|e| {
            e["detail_type"] == "AMI Published" && e["detail"]["target"] == "ssm:/ami/web/web-a"
        })
        .count();
    assert_eq!(announced, 1);
}

#[tokio::test]
async fn an_ami_its_instance_type_cannot_run_is_refused_loudly_never_launched_and_not_failed() {
    let a = account().await;
    let snapshot = seed::snapshot(&a.ec2, false).await;
    let arm = a
        .ec2
        .register_image()
        .name("web-arm-1")
        .architecture(aws_sdk_ec2::types::ArchitectureValues::Arm64)
        .root_device_name("/dev/xvda")
        .virtualization_type("hvm")
        .block_device_mappings(
            aws_sdk_ec2::types::BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(
                    aws_sdk_ec2::types::EbsBlockDevice::builder()
                        .snapshot_id(&snapshot)
                        .build(),
                )
                .build(),
        )
        .tag_specifications(seed::tag_spec(
            ResourceType::Image,
            &[("Family", "web-arm")],
        ))
        .send()
        .await
        .expect("RegisterImage")
        .image_id()
        .expect("id")
        .to_string();
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);
    let launches = || a.bed.calls().get("RunInstances").copied().unwrap_or(0);
    let before = launches();

    let (kind, message) = publish.invoke(&available(&arm)).err();
    assert_eq!(kind, "PartialFailure");
    let report: Value = serde_json::from_str(&message).expect("the report");
    let refused = lines(&report, "launch");
    assert_eq!(refused.len(), 1, "{report}");
    assert_eq!(refused[0]["outcome"], "refused", "{report}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("arm64 does not run on t3.micro"),
        "{report}"
    );
    assert_eq!(
        seed::image_tag(&a.ec2, &arm, "ami-automation:validation").await,
        None,
        "no verdict: the configuration is at fault, not the AMI"
    );
    assert_eq!(launches(), before, "never launched");
    let (kind, _) = publish.invoke(&json!({})).err();
    assert_eq!(kind, "PartialFailure", "refused on every sweep until fixed");
    assert_eq!(launches(), before);
}

#[tokio::test]
async fn an_ami_encrypted_with_a_customer_key_is_launched_only_when_the_deployment_names_the_key() {
    let a = account().await;
    let kms = a.bed.kms("us-east-1").await;
    let (image, key) =
        seed::encrypted_image(&a.ec2, &kms, "web-enc-1", &[("Family", "web-a")]).await;
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);

    // EC2 decrypts the volumes with the caller's permissions: a key the deployment does not
    // name (ValidationKmsKeyArns) is refused by IAM, and no instance is launched.
    a.bed.expect_denials(&[
        "kms:DescribeKey",
        "kms:CreateGrant",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:Decrypt",
    ]);
    let refused = publish.invoke(&available(&image));
    a.bed.expect_denials(&[]);
    let refused = match refused {
        e2e_tests::Invocation::Ok(v) => v.to_string(),
        e2e_tests::Invocation::Err { message, .. } => message,
    };
    assert!(refused.contains("kms:"), "{refused}");
    assert!(test_instances(&a.ec2).await.is_empty(), "{refused}");

    a.bed.deploy(json!({ "ValidationKmsKeyArns": key }));
    let instance = launched(&publish, &image);
    assert!(instance.starts_with("i-"));
}

#[tokio::test]
async fn a_launch_test_passes_only_the_instance_role_the_deployment_names() {
    let a = account().await;
    let (_, role) = a.bed.instance_profile("web-test", "web-test-role");
    let (_, other) = a.bed.instance_profile("admin", "admin-role");
    let with_profile = |profile: &str| {
        let mut doc: Value = serde_json::from_str(&a.document).expect("document");
        doc["policies"][0]["validate"]["instance_profile"] = profile.into();
        doc.to_string()
    };
    a.bed.deploy(json!({ "ValidationInstanceRoleArn": role }));

    // A policy naming a profile whose role the deployment does not name: iam:PassRole is
    // refused, and nothing is launched.
    let admin = with_profile("admin");
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &admin)]);
    let image = seed::image(&a.ec2, &a.builder, "web-1", &[("Family", "web-a")]).await;
    a.bed.expect_denials(&["iam:PassRole"]);
    let refused = match publish.invoke(&available(&image)) {
        e2e_tests::Invocation::Ok(v) => v.to_string(),
        e2e_tests::Invocation::Err { message, .. } => message,
    };
    a.bed.expect_denials(&[]);
    assert!(refused.contains("iam:PassRole"), "{refused}");
    assert!(refused.contains(&other), "{refused}");
    assert!(test_instances(&a.ec2).await.is_empty(), "{refused}");

    let own = with_profile("web-test");
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &own)]);
    let instance = launched(&publish, &image);
    assert!(instance.starts_with("i-"));
}

#[tokio::test]
async fn a_launch_re_delivered_before_ec2_lists_the_instance_launches_nothing_more() {
    let a = account().await;
    let image = seed::image(&a.ec2, &a.builder, "web-1", &[("Family", "web-a")]).await;
    let publish = Function::start(&a.bed, "ami-publish", &[("AMI_POLICIES", &a.document)]);
    // EC2 is eventually consistent: the instance it just launched is not listed for a while.
    a.bed.read_after_create(600);

    let first = publish.invoke(&available(&image)).ok();
    assert_eq!(lines(&first, "launch").len(), 1, "{first}");
    let again = publish.invoke(&available(&image)).ok();
    let sweep = publish.invoke(&json!({})).ok();

    a.bed.read_after_create(0);
    let instances: usize = test_instances(&a.ec2)
        .await
        .iter()
        .map(|r| r.instances().len())
        .sum();
    assert_eq!(instances, 1, "launched once: {again} {sweep}");
}
