//! Recall end to end: ami-age-out takes a bad image and the tree made from it out of
//! circulation in two regions (a dry run first), share and copy refuse it from then on,
//! ami-publish moves what names it back, and the undo puts it back.

use aws_sdk_ec2::types::InstanceType;
use aws_sdk_ec2::Client;
use e2e_tests::{seed, Function, TestBed};
use serde_json::{json, Value};

const POLICIES: &str = r#"{"dry_run": false, "policies": [
  {"name": "web", "select": {"tags": {"Family": "*"}}, "family_by": "tag:Family",
   "share": {"accounts": ["111122223333"]},
   "copy": {"regions": {"eu-west-1": {}}},
   "publish": {"ssm_parameters": ["/ami/{policy}/{family}"]}}
]}"#;

/// The tree and the rest: `base` (us-east-1, family web) → its copy in eu-west-1 → `child`,
/// made in eu-west-1 from an instance launched from that copy → the child's copy in us-east-1.
/// Beside it, `previous` (an older web AMI), and `other` with its copy (family db).
struct Fleet {
    bed: TestBed,
    us: Client,
    eu: Client,
    previous: String,
    base: String,
    base_eu: String,
    child: String,
    child_us: String,
    other: String,
    other_eu: String,
}

/// CopyImage of `image` from `from` into the client's region, tags copied.
async fn copy(to: &Client, image: &str, from: &str, name: &str) -> String {
    to.copy_image()
        .source_image_id(image)
        .source_region(from)
        .name(name)
        .copy_image_tags(true)
        .send()
        .await
        .expect("CopyImage")
        .image_id()
        .expect("id")
        .to_string()
}

async fn fleet() -> Fleet {
    let bed = TestBed::start();
    let (us, eu) = (bed.ec2("us-east-1").await, bed.ec2("eu-west-1").await);
    let builder = seed::instance(&us, 0, &[]).await;
    let previous = seed::image(&us, &builder, "web-1", &[("Family", "web")]).await;
    bed.seed_image(
        "us-east-1",
        &previous,
        json!({"creation_date": "2026-11-01T00:00:00Z"}),
    );
    let base = seed::image(&us, &builder, "web-2", &[("Family", "web")]).await;
    let other = seed::image(&us, &builder, "db-1", &[("Family", "db")]).await;
    let base_eu = copy(&eu, &base, "us-east-1", "web-2").await;
    let other_eu = copy(&eu, &other, "us-east-1", "db-1").await;

    let launched = eu
        .run_instances()
        .image_id(&base_eu)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances of the copy");
    let launched = launched.instances()[0].instance_id().expect("id");
    let child = seed::image(&eu, launched, "web-3", &[("Family", "web")]).await;
    let child_us = copy(&us, &child, "eu-west-1", "web-3").await;
    Fleet {
        bed,
        us,
        eu,
        previous,
        base,
        base_eu,
        child,
        child_us,
        other,
        other_eu,
    }
}

fn recall(image: &str, extra: Value) -> Value {
    let mut request = json!({
        "recall": {"image_id": image, "reason": "CVE-2026-1234 in openssl"},
        "regions": ["us-east-1", "eu-west-1"],
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        request[k] = v.clone();
    }
    request
}

fn ids(report: &Value) -> Vec<(String, String)> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|l| {
            (
                l["image_id"].as_str().unwrap_or_default().to_string(),
                l["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Each image's recall mark and DeprecationTime, in both regions.
async fn marks(f: &Fleet) -> Vec<(String, Option<String>, bool)> {
    let mut out = Vec::new();
    for ec2 in [&f.us, &f.eu] {
        let listed = ec2
            .describe_images()
            .owners("self")
            .include_disabled(true)
            .send()
            .await
            .expect("DescribeImages");
        for image in listed.images() {
            let recall = image
                .tags()
                .iter()
                .find(|t| t.key() == Some("ami-automation:recall-of"))
                .and_then(|t| t.value())
                .map(str::to_string);
            out.push((
                image.image_id().unwrap_or_default().to_string(),
                recall,
                image.deprecation_time().is_some(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_recall_takes_exactly_the_tree_out_of_circulation_after_a_dry_run_that_said_so() {
    let f = fleet().await;
    let age_out = Function::start(&f.bed, "ami-age-out", &[("AMI_POLICIES", POLICIES)]);
    let tree = |outcome: &str| {
        [&f.base, &f.base_eu, &f.child, &f.child_us]
            .map(|id| (id.to_string(), outcome.to_string()))
            .to_vec()
    };
    let before = marks(&f).await;

    let dry = age_out.invoke(&recall(&f.base, json!({}))).ok();
    assert_eq!(
        dry["dry_run"], true,
        "a recall is a dry run unless it says otherwise"
    );
    assert_eq!(ids(&dry), tree("would_recall"));
    assert_eq!(marks(&f).await, before, "the dry run changed nothing");
    assert!(f.bed.published().is_empty(), "and announced nothing");

    let real = age_out
        .invoke(&recall(&f.base, json!({"dry_run": false})))
        .ok();
    assert_eq!(ids(&real), tree("recalled"));
    let steps = |r: &Value| -> Vec<Value> {
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["steps"].clone())
            .collect()
    };
    assert_eq!(
        steps(&real),
        steps(&dry),
        "the real run took the steps the dry run said"
    );
    let child = &real["results"][2];
    assert_eq!(child["descent"], "created_from");
    assert_eq!(real["results"][3]["descent"], "copy");
    assert_eq!(real["results"][3]["depth"], 3);

    let after = marks(&f).await;
    for (id, recall_of, deprecated) in &after {
        let in_tree = [&f.base, &f.base_eu, &f.child, &f.child_us].contains(&id);
        assert_eq!(recall_of.is_some(), in_tree, "{id} marked iff in the tree");
        assert_eq!(*deprecated, in_tree, "{id} deprecated iff in the tree");
        if in_tree {
            assert_eq!(recall_of.as_deref(), Some(f.base.as_str()));
        }
    }
    assert!(after.iter().any(|(id, r, _)| id == &f.other && r.is_none()));
    assert!(after
        .iter()
        .any(|(id, r, _)| id == &f.other_eu && r.is_none()));
    let recalled: Vec<Value> = f
        .bed
        .published()
        .into_iter()
        .filter(|e| e["detail_type"] == "AMI Recalled")
        .collect();
    assert_eq!(
        recalled.len(),
        1,
        "one AMI Recalled per run: ami-publish sweeps once"
    );
    assert_eq!(
        recalled[0]["detail"]["images"].as_array().map(Vec::len),
        Some(4),
        "carrying the tree: {}",
        recalled[0]
    );

    let again = age_out
        .invoke(&recall(&f.base, json!({"dry_run": false})))
        .ok();
    assert_eq!(
        ids(&again),
        tree("already_recalled"),
        "a second delivery plans nothing new"
    );
    assert_eq!(marks(&f).await, after);
}

#[tokio::test]
async fn share_copy_and_publish_refuse_a_recalled_image_and_publish_rolls_back_then_undo() {
    let f = fleet().await;
    let publish = Function::start(&f.bed, "ami-publish", &[("AMI_POLICIES", POLICIES)]);
    let sweep = json!({"regions": ["us-east-1"]});
    publish.invoke(&sweep).ok();
    let ssm = f.bed.ssm("us-east-1").await;
    let named = |name: &'static str| {
        let ssm = ssm.clone();
        async move {
            ssm.get_parameter()
                .name(name)
                .send()
                .await
                .ok()
                .and_then(|p| p.parameter().and_then(|p| p.value()).map(str::to_string))
        }
    };
    let first = named("/ami/web/web").await.unwrap_or_default();
    assert!(
        [&f.base, &f.child_us].contains(&&first),
        "the newest web AMI, one of the tree: {first}"
    );
    assert_eq!(
        named("/ami/web/db").await.as_deref(),
        Some(f.other.as_str())
    );

    let age_out = Function::start(&f.bed, "ami-age-out", &[("AMI_POLICIES", POLICIES)]);
    age_out
        .invoke(&recall(&f.base, json!({"dry_run": false})))
        .ok();
    age_out
        .invoke(&recall(&f.other, json!({"dry_run": false})))
        .ok();

    let share = Function::start(&f.bed, "ami-share", &[("AMI_POLICIES", POLICIES)]);
    let shared = share
        .invoke(&json!({"image_ids": [f.base], "regions": ["us-east-1"]}))
        .ok();
    let line = &shared["results"][0];
    assert_ne!(line["outcome"], "shared", "{shared}");
    assert!(line.to_string().contains("recalled"), "{shared}");
    let copier = Function::start(&f.bed, "ami-copy", &[("AMI_POLICIES", POLICIES)]);
    let copied = copier
        .invoke(&json!({"image_ids": [f.child_us], "regions": ["us-east-1"]}))
        .ok();
    assert!(copied.to_string().contains("recalled"), "{copied}");

    let rolled = publish.invoke(&sweep).text();
    assert_eq!(
        named("/ami/web/web").await.as_deref(),
        Some(f.previous.as_str()),
        "rolled back to the newest web AMI outside the recall: {rolled}"
    );
    assert_eq!(
        named("/ami/web/db").await.as_deref(),
        Some(f.other.as_str()),
        "a family with nothing outside the recall keeps what it names"
    );
    assert!(
        rolled.contains("until a person publishes a new AMI or undoes the recall"),
        "and needs a person: {rolled}"
    );

    let undone = age_out
        .invoke(&json!({"recall": {"image_id": f.base, "undo": true},
                        "regions": ["us-east-1", "eu-west-1"], "dry_run": false}))
        .ok();
    assert!(
        undone["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["outcome"] == "undone"),
        "{undone}"
    );
    let left: Vec<String> = marks(&f)
        .await
        .into_iter()
        .filter(|(_, r, _)| r.as_deref() == Some(f.base.as_str()))
        .map(|(id, _, _)| id)
        .collect();
    assert!(left.is_empty(), "the undo removed the marks: {left:?}");
}

#[tokio::test]
async fn a_recall_cut_by_its_deadline_continues_itself_and_the_continuation_finishes_it() {
    let f = fleet().await;
    // The first deprecation takes longer than the whole run may: the rest is left for later.
    f.bed
        .inject_fault("EnableImageDeprecation", "SLOW:10000", 1);
    let short = Function::start(
        &f.bed,
        "ami-age-out",
        &[("AMI_POLICIES", POLICIES), ("AMI_RUN_BUDGET_MS", "8000")],
    );
    let cut = short
        .invoke(&recall(&f.base, json!({"dry_run": false})))
        .ok();
    let outcomes: Vec<String> = ids(&cut).into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        outcomes,
        ["recalled", "continues", "continues", "continues"],
        "{cut}"
    );
    let chained: Vec<Value> = f
        .bed
        .published()
        .into_iter()
        .filter(|e| e["detail_type"] == "Policy Run Continued")
        .collect();
    assert_eq!(chained.len(), 1, "one sealed continuation");
    let detail = chained[0]["detail"].clone();
    assert_eq!(detail["request"]["recall"]["image_id"], f.base.as_str());

    // EventBridge delivers it to age-out (the template's rule): the seal holds, the rest is done.
    let delivered = json!({
        "version": "0", "id": "5e1f7c2a-0000-4000-8000-000000000002",
        "detail-type": "Policy Run Continued", "source": "ami.automation",
        "account": e2e_tests::ACCOUNT, "time": chrono::Utc::now().to_rfc3339(),
        "region": "us-east-1", "resources": [], "detail": detail,
    });
    let age_out = Function::start(&f.bed, "ami-age-out", &[("AMI_POLICIES", POLICIES)]);
    let finished = age_out.invoke(&delivered).ok();
    let outcomes: Vec<String> = ids(&finished).into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        outcomes,
        ["already_recalled", "recalled", "recalled", "recalled"],
        "{finished}"
    );
    let marked = marks(&f)
        .await
        .into_iter()
        .filter(|(_, r, deprecated)| r.is_some() && *deprecated)
        .count();
    assert_eq!(marked, 4, "the whole tree is out of circulation");
}
