//! Test support: the local AWS test bed (moto's server with the EC2 behaviours our safety
//! depends on, see `support/testbed/`) and a harness that runs a function's own binary
//! through the Lambda runtime API (`cargo lambda watch --only-lambda-apis` + `cargo lambda invoke`).
//!
//! Nothing is installed at test time. A missing emulator or cargo-lambda fails the test loudly,
//! naming the setup command; it never skips.

pub mod fleet;
pub mod seed;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use aws_config::BehaviorVersion;
use serde_json::Value;

/// The account moto serves to the dummy credentials (`description.json` says the same; a test
/// checks it).
pub const ACCOUNT: &str = "123456789012";

/// The test bed's description (`tests/support/testbed/description.json`), which the Python
/// harness and the server read too: how the test bed starts, what a function's environment
/// holds, the stack's resources and the test-only routes.
pub fn description() -> &'static Value {
    static DESCRIPTION: OnceLock<Value> = OnceLock::new();
    DESCRIPTION.get_or_init(|| {
        serde_json::from_str(include_str!("../support/testbed/description.json"))
            .expect("tests/support/testbed/description.json is JSON")
    })
}

/// A fact of the description: `at` is a JSON pointer (`/stack/bus`).
pub fn described(at: &str) -> &'static str {
    description()
        .pointer(at)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("description.json has no text at {at}"))
}

/// The role the launch tests' dead-man schedules act as (template.yaml `DeadManRole`).
pub fn dead_man_role() -> &'static str {
    described("/stack/dead_man_role")
}

/// The Amazon images of `support/amis.json` (owned by another account) that instances launch from.
pub const BASE_X86: &str = "ami-0a1b2c3d4e5f60001";
/// The arm64 base image.
pub const BASE_ARM: &str = "ami-0a1b2c3d4e5f60002";

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var("AMI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".venv"));
    venv.join("bin").join(name)
}

/// The test bed's Python (the virtualenv that has moto).
pub fn venv_python() -> PathBuf {
    require(&venv_bin("python"), "the test bed's Python (with moto)")
}

fn require(path: &Path, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {}: run `scripts/setup` (or set AMI_VENV to the virtualenv that has it)",
        path.display()
    );
    path.to_path_buf()
}

/// One of the stack's resources the test bed made (`/stack/<name>` in the description: the
/// route that answers it and the field that holds it).
fn stack_resource(port: u16, name: &str) -> String {
    let route = described(&format!("/stack/{name}/route"));
    let (status, text) = http(port, "GET", route, "");
    assert_eq!(status, 200, "the test bed made no {name}: {text}");
    let answer: Value = serde_json::from_str(&text).expect("the test bed answers JSON");
    answer[described(&format!("/stack/{name}/field"))]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// moto's server on a free port of 127.0.0.1; stopped when dropped.
pub struct TestBed {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// The stack's HMAC key (template.yaml `SigningKey`), which every function is given.
    pub signing_key: String,
    /// The stack's event outbox (template.yaml `EventOutbox`), which every function is given.
    pub event_outbox: String,
    /// The stack's distribution queue (template.yaml `DistributeQueue`).
    pub distribute_queue: String,
}

impl TestBed {
    /// The test bed with the documented EC2 behaviours added and EC2's API contract enforced.
    pub fn start() -> TestBed {
        Self::launch(&[])
    }

    /// moto as it is, without the additions (to show what each addition changes).
    pub fn start_plain() -> TestBed {
        Self::launch(&["--plain"])
    }

    /// The test bed without the contract check (to show a request the contract refuses).
    pub fn start_without_contract() -> TestBed {
        Self::launch(&["--no-contract"])
    }

    fn launch(flags: &[&str]) -> TestBed {
        let mut cmd = Command::new(venv_python());
        cmd.arg(root().join(described("/launcher")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd.args(flags);
        let mut child = cmd.spawn().expect("start the moto launcher");
        let stdout = child.stdout.take().expect("launcher stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the launcher's READY line");
        let port = line
            .trim_end()
            .strip_prefix(described("/ready"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the moto launcher did not start (it printed {line:?})"));
        TestBed {
            child,
            port,
            signing_key: stack_resource(port, "signing_key"),
            event_outbox: stack_resource(port, "event_outbox"),
            distribute_queue: stack_resource(port, "distribute_queue"),
        }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a function gets (the description's, filled in): the test bed's
    /// endpoint, the stack's resources, its own credentials (the test bed authorizes each
    /// request against this function's role in template.yaml) and its runtime API's port.
    pub fn function_env(&self, function: &str, runtime_port: u16) -> Vec<(String, String)> {
        let filled = |v: &str| {
            v.replace("{endpoint}", &self.endpoint())
                .replace("{signing_key}", &self.signing_key)
                .replace("{event_outbox}", &self.event_outbox)
                .replace("{distribute_queue}", &self.distribute_queue)
                .replace("{runtime_port}", &runtime_port.to_string())
                .replace("{function}", function)
        };
        description()["function_environment"]
            .as_object()
            .expect("description.json: function_environment")
            .iter()
            .map(|(k, v)| (k.clone(), filled(v.as_str().unwrap_or_default())))
            .collect()
    }

    /// Tells the test bed a function starts with this environment: what it says of the
    /// deployment (the subnet, the bus, ...) is what its role is resolved with.
    fn function_started(&self, binary: &str, base: &[(String, String)], env: &[(&str, &str)]) {
        let mut all: serde_json::Map<String, Value> = base
            .iter()
            .cloned()
            .map(|(k, v)| (k, Value::from(v)))
            .collect();
        for (k, v) in env {
            all.insert(k.to_string(), Value::from(*v));
        }
        let body = serde_json::json!({"name": binary, "env": all}).to_string();
        let (status, text) = http(self.port, "POST", "/_testbed/function", &body);
        assert_eq!(status, 200, "registering {binary} failed: {text}");
    }

    /// Deploys the template with these parameters (on top of its defaults and of what the
    /// functions' environment says): each function's role is resolved with them.
    pub fn deploy(&self, parameters: Value) {
        let body = serde_json::json!({ "parameters": parameters }).to_string();
        let (status, text) = http(self.port, "POST", "/_testbed/deploy", &body);
        assert_eq!(status, 200, "deploying failed: {text}");
    }

    /// An EC2 client that calls as the function `binary` does (its credentials): the test bed
    /// authorizes it against that function's role.
    pub async fn ec2_as(&self, binary: &str, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_as(binary, region).await)
    }

    /// The SDK configuration of the function `binary` (its credentials): the test bed
    /// authorizes each request against that function's role.
    pub async fn sdk_as(&self, binary: &str, region: &str) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                format!("testbed-{binary}"),
                "testing",
                None,
                None,
                "test",
            ))
            .load()
            .await
    }

    /// Gives the function `binary` these IAM statements instead of its role in template.yaml
    /// (to prove what the evaluator denies).
    pub fn override_role(&self, binary: &str, statements: Value) {
        let body = serde_json::json!({"name": binary, "statements": statements}).to_string();
        let (status, text) = http(self.port, "POST", "/_testbed/role", &body);
        assert_eq!(
            status, 200,
            "overriding the role of {binary} failed: {text}"
        );
    }

    /// An instance profile `name` holding a new role `role` (as a person makes them in IAM):
    /// `(profile ARN, role ARN)`.
    pub fn instance_profile(&self, name: &str, role: &str) -> (String, String) {
        let body = serde_json::json!({"name": name, "role": role}).to_string();
        let (status, text) = http(self.port, "POST", "/_testbed/instance-profile", &body);
        assert_eq!(status, 200, "making the instance profile failed: {text}");
        let made: Value = serde_json::from_str(&text).expect("profile JSON");
        let arn = |k: &str| made[k].as_str().unwrap_or_default().to_string();
        (arn("profile_arn"), arn("role_arn"))
    }

    /// EC2's clock: for `seconds` after an AMI or instance is made, describing it by id answers
    /// NotFound and listing leaves it out (0 ends every window now).
    pub fn read_after_create(&self, seconds: u32) {
        let body = serde_json::json!({ "read_after_create_seconds": seconds }).to_string();
        let (status, text) = http(self.port, "POST", "/_testbed/clock", &body);
        assert_eq!(
            status, 200,
            "setting the read-after-create window failed: {text}"
        );
    }

    /// KMS's clock: a retired grant is still listed for `seconds` (grants are eventually
    /// consistent).
    pub fn grant_lag(&self, seconds: u32) {
        let body = serde_json::json!({ "grant_lag_seconds": seconds }).to_string();
        let (status, text) = http(self.port, "POST", "/_testbed/kms", &body);
        assert_eq!(status, 200, "setting the grant lag failed: {text}");
    }

    /// Says the test provokes IAM denials of these actions on purpose (the IAM check then does
    /// not count them); an empty list ends it.
    pub fn expect_denials(&self, actions: &[&str]) {
        let body = serde_json::json!({ "actions": actions }).to_string();
        let (status, text) = http(self.port, "POST", "/_testbed/expect-denials", &body);
        assert_eq!(status, 200, "expecting denials failed: {text}");
    }

    /// Every IAM decision the test bed made so far, and the calls it could not evaluate.
    pub fn iam(&self) -> Value {
        let (status, text) = http(self.port, "GET", "/_testbed/iam", "");
        assert_eq!(status, 200, "reading the IAM decisions failed: {text}");
        serde_json::from_str(&text).expect("IAM JSON")
    }

    /// Moves EventBridge Scheduler's clock `minutes` ahead and runs what is due; answers every
    /// schedule run so far (`[{"name", "instance_ids", "region"}]`).
    pub fn advance_scheduler(&self, minutes: u32) -> Vec<Value> {
        let body = serde_json::json!({ "advance_minutes": minutes }).to_string();
        let (status, text) = http(self.port, "POST", "/_testbed/scheduler", &body);
        assert_eq!(status, 200, "moving the scheduler's clock failed: {text}");
        let answer: Value = serde_json::from_str(&text).expect("scheduler JSON");
        answer["run"].as_array().cloned().unwrap_or_default()
    }

    /// SSM's validation of `aws:ec2:image` updates: `validation_seconds` sets how long it takes
    /// (0: at once), `advance_seconds` moves SSM's clock ahead; answers the parameter names still
    /// being validated.
    pub fn ssm_validation(&self, body: Value) -> Vec<String> {
        let (status, text) = http(self.port, "POST", "/_testbed/ssm", &body.to_string());
        assert_eq!(status, 200, "setting SSM's validation failed: {text}");
        let answer: Value = serde_json::from_str(&text).expect("ssm JSON");
        answer["validating"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The seal the stack's key makes over `message` (what the functions' GenerateMac makes),
    /// base64.
    pub async fn seal(&self, message: Vec<u8>) -> String {
        let mac = self
            .kms("us-east-1")
            .await
            .generate_mac()
            .key_id(&self.signing_key)
            .mac_algorithm(aws_sdk_kms::types::MacAlgorithmSpec::HmacSha256)
            .message(aws_smithy_types::Blob::new(message))
            .send()
            .await
            .expect("GenerateMac");
        aws_smithy_types::base64::encode(mac.mac().expect("a MAC").as_ref())
    }

    /// Tags `image_id` with a `passed` verdict as ami-publish writes it: sealed with the stack's
    /// key (`ami_lifecycle::domain::seal::verdict`), so the promotion gate accepts it.
    pub async fn pass(&self, region: &str, image_id: &str, policy: &str) {
        use ami_lifecycle::domain::{seal, tags};
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mac = self
            .seal(seal::verdict(image_id, region, policy, tags::PASSED, &at))
            .await;
        let tag = |key: &str, value: String| {
            aws_sdk_ec2::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
        };
        self.ec2(region)
            .await
            .create_tags()
            .resources(image_id)
            .tags(tag(tags::VALIDATION, tags::PASSED.into()))
            .tags(tag(tags::VALIDATION_SEAL, seal::sealed_tag(&at, &mac)))
            .send()
            .await
            .expect("CreateTags");
    }

    /// An event the functions published, as an EventBridge rule delivers it to its target
    /// (the whole event: the template's rules carry no `InputPath`).
    pub fn delivered(&self, event: &Value) -> Value {
        serde_json::json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": event["detail_type"],
            "source": event["source"],
            "account": ACCOUNT,
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": event["region"],
            "resources": event["resources"],
            "detail": event["detail"],
        })
    }

    /// The SDK configuration of the test's own administrator in the stack's account (its calls
    /// are not IAM-evaluated; the contract check applies).
    pub async fn sdk(&self, region: &str) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await
    }

    /// An EC2 client for `region`.
    pub async fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk(region).await)
    }

    /// An SSM client for `region`.
    pub async fn ssm(&self, region: &str) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk(region).await)
    }

    /// A KMS client for `region`.
    pub async fn kms(&self, region: &str) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.sdk(region).await)
    }

    /// A Recycle Bin client for `region`.
    pub async fn rbin(&self, region: &str) -> aws_sdk_rbin::Client {
        aws_sdk_rbin::Client::new(&self.sdk(region).await)
    }

    /// An EventBridge Scheduler client for `region`.
    pub async fn scheduler(&self, region: &str) -> aws_sdk_scheduler::Client {
        aws_sdk_scheduler::Client::new(&self.sdk(region).await)
    }

    /// An SQS client.
    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk("us-east-1").await)
    }

    /// An EventBridge client.
    pub async fn eventbridge(&self) -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::new(&self.sdk("us-east-1").await)
    }

    /// Deploys target-role.yaml (trusting ami-distribute's role) in `accounts`, and removes it
    /// from `without_role`.
    pub fn targets(&self, accounts: &[&str], without_role: &[&str]) {
        let body = serde_json::json!({"accounts": accounts, "without_role": without_role});
        let (status, text) = http(self.port, "POST", "/_testbed/accounts", &body.to_string());
        assert_eq!(status, 200, "deploying the target roles failed: {text}");
    }

    /// The stack's account manages an organization whose OUs (`{"<name>": [accounts]}`) hold
    /// exactly these accounts; each OU's ARN by name.
    pub fn organization(&self, units: Value) -> Value {
        self.seed_organization(serde_json::json!({ "units": units }))["units"].clone()
    }

    /// Another account (`management`) holds the organization, as when the stack names
    /// `OrganizationsRoleArn`: (each OU's ARN by name, the ARN of the reader role there that
    /// trusts ami-distribute's role).
    pub fn organization_in(&self, management: &str, units: Value) -> (Value, String) {
        let answer =
            self.seed_organization(serde_json::json!({ "units": units, "management": management }));
        let reader = answer["reader_role_arn"].as_str().expect("the reader role");
        (answer["units"].clone(), reader.to_string())
    }

    fn seed_organization(&self, body: Value) -> Value {
        let (status, text) = http(
            self.port,
            "POST",
            "/_testbed/organization",
            &body.to_string(),
        );
        assert_eq!(status, 200, "seeding the organization failed: {text}");
        serde_json::from_str::<Value>(&text).expect("JSON")
    }

    /// The configuration of an administrator of `account` (a test's own look into a target
    /// account: moto answers with credentials of the role's account; not evaluated by IAM).
    pub async fn sdk_in(&self, account: &str, region: &str) -> aws_config::SdkConfig {
        let base = self.sdk(region).await;
        let out = aws_sdk_sts::Client::new(&base)
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/test-administrator"))
            .role_session_name("test")
            .send()
            .await
            .expect("AssumeRole into the target account");
        let c = out.credentials().expect("credentials");
        base.to_builder()
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                aws_sdk_ec2::config::Credentials::new(
                    c.access_key_id(),
                    c.secret_access_key(),
                    Some(c.session_token().to_string()),
                    None,
                    "test",
                ),
            ))
            .build()
    }

    /// Delivers the distribution queue's units to `function` as Lambda's SQS event source
    /// does (one record a batch, as the template's BatchSize): a unit it names in
    /// `batchItemFailures` is made visible again, the others are deleted. The reports.
    pub async fn deliver_units(&self, function: &Function) -> Vec<Value> {
        let sqs = self.sqs().await;
        let mut reports = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(&self.distribute_queue)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("ReceiveMessage");
            if out.messages().is_empty() {
                return reports;
            }
            let mut retry = Vec::new();
            for m in out.messages() {
                let event = sqs_event(
                    m.message_id().unwrap_or_default(),
                    m.receipt_handle().unwrap_or_default(),
                    m.body().unwrap_or_default(),
                );
                let report = function.invoke(&event).ok();
                let failed = report["batchItemFailures"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                let receipt = m.receipt_handle().unwrap_or_default().to_string();
                if failed {
                    retry.push(receipt);
                } else {
                    sqs.delete_message()
                        .queue_url(&self.distribute_queue)
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .expect("DeleteMessage");
                }
                reports.push(report);
            }
            if !retry.is_empty() {
                return reports;
            }
        }
    }

    /// Sets fields of an image that no API sets (CreationDate, owner, protection, last launch).
    pub fn seed_image(&self, region: &str, image_id: &str, fields: Value) {
        let mut body = fields;
        body["region"] = region.into();
        body["image_id"] = image_id.into();
        let (status, text) = http(self.port, "POST", "/_testbed/image", &body.to_string());
        assert_eq!(status, 200, "seeding {image_id} failed: {text}");
    }

    /// The API calls the test bed received so far, by action (`ModifyImageAttribute`: 2, ...).
    pub fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        let (status, text) = http(self.port, "GET", "/_testbed/calls", "");
        assert_eq!(status, 200, "reading the call counts failed: {text}");
        serde_json::from_str(&text).expect("calls JSON")
    }

    /// Answers the next `count` calls of `action` with EC2's error `code` (as EC2 sends it).
    pub fn inject_fault(&self, action: &str, code: &str, count: u32) {
        let body = serde_json::json!({"action": action, "code": code, "count": count}).to_string();
        let (status, text) = http(self.port, "POST", "/_testbed/faults", &body);
        assert_eq!(status, 200, "injecting a fault failed: {text}");
    }

    /// A region-level Recycle Bin rule keeping deregistered AMIs (`EC2_IMAGE`) or deleted
    /// snapshots (`EBS_SNAPSHOT`) for `days`, made with the real SDK; returns its identifier.
    pub async fn retention_rule(&self, region: &str, kind: &str, days: i32) -> String {
        use aws_sdk_rbin::types::{ResourceType, RetentionPeriod, RetentionPeriodUnit};
        let period = RetentionPeriod::builder()
            .retention_period_value(days)
            .retention_period_unit(RetentionPeriodUnit::Days)
            .build()
            .expect("a retention period");
        self.rbin(region)
            .await
            .create_rule()
            .resource_type(ResourceType::from(kind))
            .retention_period(period)
            .send()
            .await
            .expect("CreateRule")
            .identifier()
            .unwrap_or_default()
            .to_string()
    }

    /// EC2 finishes the image's pending usage report (or one made `creation_time` ago is there
    /// already) with `entries`: `[{"account_id", "resource_type", "usage_count", "since"?}]`. An
    /// entry whose use began (`since`) within what EC2's reports can miss (24 hours for
    /// instances, a few days for launch templates) before the report is left out, as EC2 may.
    pub fn complete_usage_report(&self, region: &str, image_id: &str, extra: Value) -> String {
        let mut body = extra;
        body["region"] = region.into();
        body["image_id"] = image_id.into();
        let (status, text) = http(
            self.port,
            "POST",
            "/_testbed/usage-report",
            &body.to_string(),
        );
        assert_eq!(
            status, 200,
            "completing the usage report of {image_id} failed: {text}"
        );
        let answer: Value = serde_json::from_str(&text).expect("usage report JSON");
        answer["report_id"].as_str().unwrap_or_default().to_string()
    }

    /// Throttles like EC2: named token buckets, each over a list of actions (`size` tokens,
    /// `refill` per second).
    pub fn throttle(&self, buckets: Value) {
        let (status, text) = http(
            self.port,
            "POST",
            "/_testbed/throttle",
            &buckets.to_string(),
        );
        assert_eq!(status, 200, "setting the token buckets failed: {text}");
    }

    /// Sets what EC2 reports for an instance: `system_status`, `instance_status` (`ok`,
    /// `impaired`, `initializing`, ...) and `console` (its console output).
    pub fn set_instance(&self, instance_id: &str, fields: Value) {
        let mut body = fields;
        body["instance_id"] = instance_id.into();
        let (status, text) = http(self.port, "POST", "/_testbed/instance", &body.to_string());
        assert_eq!(status, 200, "setting instance {instance_id} failed: {text}");
    }

    /// The events PutEvents accepted, oldest first.
    pub fn published(&self) -> Vec<Value> {
        let (status, text) = http(self.port, "GET", "/_testbed/events", "");
        assert_eq!(status, 200, "reading the published events failed: {text}");
        serde_json::from_str(&text).expect("events JSON")
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request to the test bed's own routes or the runtime API emulator: (status, body). A status
/// that is not 2xx is returned, not raised, so a caller can show what the server said.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}{path}");
    let response = match method {
        "GET" => agent.get(&url).call(),
        _ => agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_else(|e| panic!("reading the answer of {method} {url} failed: {e}"));
    (status, text)
}

/// The directory the workspace's binaries are built into (next to this test executable).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test>-<hash> -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("target directory")
}

fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let t = if path.is_dir() {
                newest_source(&path)
            } else {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            };
            newest = newest.max(t);
        }
    }
    newest
}

/// The path of a function binary, checked to be newer than the sources it is built from.
pub fn function_binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` before the tests (scripts/test does both)",
        path.display()
    );
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("binary time");
    // The sources the binary is built from, as cargo's dep-info lists them (a file that only
    // tests compile, such as a `#[cfg(test)]` module, is not one of them).
    let dep_info = std::fs::read_to_string(path.with_extension("d")).unwrap_or_default();
    let listed: Vec<PathBuf> = dep_info
        .split_once(':')
        .map(|(_, deps)| {
            deps.split_whitespace()
                .map(PathBuf::from)
                .filter(|p| p.starts_with(root()))
                .collect()
        })
        .unwrap_or_default();
    let sources = if listed.is_empty() {
        let dir = name.strip_prefix("ami-").unwrap_or(name);
        newest_source(&root().join("shared/src")).max(newest_source(
            &root().join("functions").join(dir).join("src"),
        ))
    } else {
        listed
            .iter()
            .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    assert!(
        built >= sources,
        "{} is older than its sources: run `cargo build --workspace` again (scripts/test does it)",
        path.display()
    );
    path
}

/// The event Lambda's SQS event source gives a function for one message of the distribution
/// queue (one record: the template's BatchSize).
pub fn sqs_event(message_id: &str, receipt_handle: &str, body: &str) -> Value {
    serde_json::json!({"Records": [{
        "messageId": message_id, "receiptHandle": receipt_handle, "body": body,
        "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ami-lifecycle-distribute"}]})
}

/// A function binary served through the Lambda runtime API by `cargo lambda watch`.
pub struct Function {
    watch: Child,
    function: Child,
    port: u16,
    /// The function's log file.
    pub log: PathBuf,
}

/// The answer of one invocation.
#[derive(Debug)]
pub enum Invocation {
    /// The function returned this JSON.
    Ok(Value),
    /// The function returned an error: its type and message.
    Err { error_type: String, message: String },
}

impl Invocation {
    /// The JSON of a successful invocation; panics with the error otherwise.
    pub fn ok(self) -> Value {
        match self {
            Invocation::Ok(v) => v,
            Invocation::Err {
                error_type,
                message,
            } => panic!("invocation failed: {error_type}: {message}"),
        }
    }

    /// What came back, succeeded or not: the JSON, or the error's type and message.
    pub fn text(self) -> String {
        match self {
            Invocation::Ok(v) => v.to_string(),
            Invocation::Err {
                error_type,
                message,
            } => format!("{error_type}: {message}"),
        }
    }

    /// The error of a failed invocation; panics if it succeeded.
    pub fn err(self) -> (String, String) {
        match self {
            Invocation::Err {
                error_type,
                message,
            } => (error_type, message),
            Invocation::Ok(v) => panic!("expected the invocation to fail, it returned {v}"),
        }
    }
}

impl Function {
    /// Starts the emulator of the runtime API and the function's own binary, with the test bed's
    /// endpoint and the given environment (the policy document and settings).
    pub fn start(bed: &TestBed, binary: &str, env: &[(&str, &str)]) -> Function {
        let cargo_lambda = require(&venv_bin("cargo-lambda"), "cargo-lambda");
        let port = free_port();
        let base = bed.function_env(binary, port);
        bed.function_started(binary, &base, env);
        let binary = function_binary(binary);
        let serve: Vec<String> = description()["runtime_api"]["serve"]
            .as_array()
            .expect("description.json: runtime_api.serve")
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap_or_default()
                    .replace("{runtime_port}", &port.to_string())
            })
            .collect();
        let watch = Command::new(&cargo_lambda)
            .args(serve)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cargo lambda watch");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cargo lambda watch did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        let log = std::env::temp_dir().join(format!(
            "ami-lifecycle-{}-{port}.log",
            binary.file_name().and_then(|n| n.to_str()).unwrap_or("fn")
        ));
        let log_file = std::fs::File::create(&log).expect("function log file");
        let mut cmd = Command::new(&binary);
        cmd.envs(base.iter().map(|(k, v)| (k, v)))
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Its own credentials, whatever `env` says: the test bed authorizes each request
        // against this function's role.
        let credentials = base.iter().find(|(k, _)| k == "AWS_ACCESS_KEY_ID");
        if let Some((k, v)) = credentials {
            cmd.env(k, v);
        }
        let function = cmd.spawn().expect("start the function binary");
        Function {
            watch,
            function,
            port,
            log,
        }
    }

    /// What the function wrote to stdout and stderr so far (its CloudWatch log in Lambda).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the function process has exited (a failed cold start), with its log.
    pub fn exited(&mut self) -> Option<String> {
        match self.function.try_wait() {
            Ok(Some(_)) => Some(std::fs::read_to_string(&self.log).unwrap_or_default()),
            _ => None,
        }
    }

    /// The log of a function that must fail its cold start (waits up to 5 s for it to exit).
    pub fn cold_start_failure(&mut self) -> String {
        for _ in 0..100 {
            if let Some(log) = self.exited() {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the function did not fail its cold start: it is still running (log {})",
            self.log.display()
        )
    }

    /// Invokes the function with `payload` through the runtime API emulator's invoke endpoint
    /// (what `cargo lambda invoke` calls), so an error comes back exactly as the function sent it.
    pub fn invoke(&self, payload: &Value) -> Invocation {
        let (status, body) = http(
            self.port,
            "POST",
            described("/runtime_api/invoke"),
            &payload.to_string(),
        );
        let value: Value = serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("the invocation returned no JSON ({e}), status {status}: {body}")
        });
        match (value.get("errorType"), value.get("errorMessage")) {
            (Some(t), Some(m)) => Invocation::Err {
                error_type: t.as_str().unwrap_or_default().to_string(),
                message: m.as_str().unwrap_or_default().to_string(),
            },
            _ => Invocation::Ok(value),
        }
    }

    /// Invokes the function with a file, as `cargo lambda invoke --data-file` does for a user.
    pub fn invoke_file(&self, file: &Path) -> Invocation {
        let cargo_lambda = venv_bin("cargo-lambda");
        let out = Command::new(cargo_lambda)
            .args([
                "lambda",
                "invoke",
                "_",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
            ])
            .arg(self.port.to_string())
            .arg("--data-file")
            .arg(file)
            .args(["--output-format", "json"])
            .current_dir(root())
            .output()
            .expect("run cargo lambda invoke");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            return Invocation::Ok(
                serde_json::from_str(&stdout)
                    .unwrap_or_else(|e| panic!("the function returned no JSON ({e}): {stdout}")),
            );
        }
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        parse_error(&stdout, &stderr)
    }
}

fn parse_error(stdout: &str, stderr: &str) -> Invocation {
    // cargo lambda prints the function's error as `Error: <type>` then `× <message>`, wrapped
    // at the terminal width behind `│`: join the wrapped lines back (a line broken after `-`
    // was broken inside a word).
    let mut text = String::new();
    for line in format!("{stdout}\n{stderr}").lines() {
        let piece = line.trim().trim_start_matches(['│', '×']).trim();
        if piece.is_empty() {
            continue;
        }
        if !text.is_empty() && !text.ends_with('-') {
            text.push(' ');
        }
        text.push_str(piece);
    }
    let error_type = [
        "InvalidConfiguration",
        "InvalidEvent",
        "AwsError",
        "Refused",
        "PartialFailure",
    ]
    .into_iter()
    .find(|t| text.contains(t))
    .unwrap_or("Unknown")
    .to_string();
    Invocation::Err {
        error_type,
        message: text,
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.function.kill();
        let _ = self.function.wait();
        let _ = self.watch.kill();
        let _ = self.watch.wait();
    }
}
