//! `ami-distribute` and the target accounts' launch templates: a template the account opted in
//! gets a version naming its copy (or the shared AMI), once; one it did not opt in is never
//! changed (refused, and the target role's IAM would refuse it too).

use aws_sdk_ec2::types::{RequestLaunchTemplateData, ResourceType, Tag, TagSpecification};
use e2e_tests::{seed, Function, TestBed};
use serde_json::{json, Value};

const COPYING: &str = "111111111111";
const SHARING: &str = "222222222222";

fn policies() -> String {
    json!({"dry_run": false, "policies": [{
        "name": "golden", "select": {"tags": {"Team": "platform"}}, "family_by": "tag:Family",
        "share": {"accounts": [COPYING, SHARING], "snapshots": true},
        "distribute": {"targets": [
            {"accounts": [COPYING], "copy": {}, "launch_templates": [{"template": "web", "set_default": true}]},
            {"accounts": [SHARING], "launch_templates": [{"template": "web"}, {"template": "not-opted-in"}]}
        ]}
    }]})
    .to_string()
}

/// A launch template in `account` (its version 1 with no AMI), opted in when `opted_in`.
async fn template(bed: &TestBed, account: &str, name: &str, opted_in: bool) -> aws_sdk_ec2::Client {
    let ec2 = aws_sdk_ec2::Client::new(&bed.sdk_in(account, "us-east-1").await);
    let mut request = ec2
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        );
    if opted_in {
        request = request.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::LaunchTemplate)
                .tags(
                    Tag::builder()
                        .key("ami-automation:publish")
                        .value("true")
                        .build(),
                )
                .build(),
        );
    }
    request
        .send()
        .await
        .expect("CreateLaunchTemplate in the target");
    ec2
}

/// (default version, latest version, the AMI of each) of the template `name`.
async fn versions(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
) -> (i64, i64, Option<String>, Option<String>) {
    let out = ec2
        .describe_launch_template_versions()
        .launch_template_name(name)
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions");
    let all = out.launch_template_versions();
    let image = |v: Option<&aws_sdk_ec2::types::LaunchTemplateVersion>| {
        v.and_then(|v| v.launch_template_data())
            .and_then(|d| d.image_id())
            .map(String::from)
    };
    let latest = all.iter().max_by_key(|v| v.version_number());
    let default = all.iter().find(|v| v.default_version() == Some(true));
    (
        default.and_then(|v| v.version_number()).unwrap_or_default(),
        latest.and_then(|v| v.version_number()).unwrap_or_default(),
        image(default),
        image(latest),
    )
}

fn lines(reports: &[Value], account: &str) -> Vec<Value> {
    reports
        .iter()
        .flat_map(|r| r["results"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["account"] == account && l["action"] == "launch_template")
        .collect()
}

#[tokio::test]
async fn an_opted_in_template_in_a_target_names_its_copy_or_the_shared_ami_once_and_no_other_changes(
) {
    let bed = TestBed::start();
    bed.targets(&[COPYING, SHARING], &[]);
    let copying = template(&bed, COPYING, "web", true).await;
    let sharing = template(&bed, SHARING, "web", true).await;
    template(&bed, SHARING, "not-opted-in", false).await;
    let ec2 = bed.ec2("us-east-1").await;
    let builder = seed::instance(&ec2, 1, &[]).await;
    let image = seed::image(
        &ec2,
        &builder,
        "web-20261201",
        &[("Team", "platform"), ("Family", "web")],
    )
    .await;
    let document = policies();
    let env = [("AMI_POLICIES", document.as_str())];
    Function::start(&bed, "ami-share", &env)
        .invoke(&json!({}))
        .ok();
    let distribute = Function::start(&bed, "ami-distribute", &env);

    // First sweep: the copy is pending, so the copying target's template waits.
    distribute.invoke(&json!({})).ok();
    let first = bed.deliver_units(&distribute).await;
    assert_eq!(lines(&first, COPYING).len(), 1, "{first:?}");
    assert_eq!(lines(&first, COPYING)[0]["outcome"], "waiting", "{first:?}");

    // Second sweep: the copy is available; its template's new version is the default.
    distribute.invoke(&json!({})).ok();
    let second = bed.deliver_units(&distribute).await;
    let copy = lines(&second, COPYING)[0]["image_id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(copy.starts_with("ami-") && copy != image, "{second:?}");
    assert_eq!(
        versions(&copying, "web").await,
        (2, 2, Some(copy.clone()), Some(copy.clone()))
    );

    // The sharing target's opted-in template: a new $Latest naming the shared AMI, its default
    // left (set_default is false); the template it did not opt in is unchanged, refused.
    assert_eq!(
        versions(&sharing, "web").await,
        (1, 2, None, Some(image.clone()))
    );
    assert_eq!(versions(&sharing, "not-opted-in").await, (1, 1, None, None));
    let refused: Vec<Value> = lines(&second, SHARING)
        .into_iter()
        .filter(|l| l["launch_template"] == "not-opted-in")
        .collect();
    assert_eq!(refused[0]["outcome"], "refused", "{second:?}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("ami-automation:publish"),
        "{refused:?}"
    );

    // A re-delivery, or the next sweep, makes no second version.
    distribute.invoke(&json!({})).ok();
    let third = bed.deliver_units(&distribute).await;
    assert_eq!(
        lines(&third, COPYING)[0]["outcome"],
        "unchanged",
        "{third:?}"
    );
    assert_eq!(versions(&copying, "web").await.1, 2);
    assert_eq!(versions(&sharing, "web").await.1, 2);
}
