//! What a function loads once at cold start: the policy document, the deployment settings and
//! the AWS clients. Invalid configuration fails the cold start with a message naming the field.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{AppName, BehaviorVersion, SdkConfig};

use crate::adapters::ec2::Ec2;
use crate::adapters::eventbridge::EventBridge;
use crate::adapters::kms::{Kms, Mac};
use crate::adapters::pace::Pacer;
use crate::adapters::rbin::Rbin;
use crate::adapters::sqs::SqsOutbox;
use crate::adapters::ssm::Ssm;
use crate::domain::deadline::Deadline;
use crate::domain::ids::Region;
use crate::domain::policy::{Deployment, PolicyDocument};
use crate::error::{Error, Result};
use crate::jobs::announce::Announcer;
use crate::jobs::Limits;
use crate::ports::Cloud;

/// Deployment settings read from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The function's own region (`AWS_REGION`): the default of a run request's `regions`.
    pub home_region: Region,
    /// The bus the tool's events go to (`EVENT_BUS_NAME`, default `default`).
    pub event_bus: String,
    /// The queue where events EventBridge did not take wait for the next run
    /// (`AMI_EVENT_OUTBOX_URL`, from the template's `EventOutbox`); none: such events are lost,
    /// and the invocation fails.
    pub event_outbox: Option<String>,
    /// Mutating calls in flight at once per region (`AMI_CONCURRENCY`, default 8).
    pub concurrency: usize,
    /// Stop this long before the Lambda deadline (`AMI_DEADLINE_MARGIN_MS`, default 10000).
    pub deadline_margin: Duration,
    /// An upper bound on one run (`AMI_RUN_BUDGET_MS`); the only bound where no deadline is
    /// known (`cargo lambda watch` sends a constant deadline in 1970).
    pub run_budget: Option<Duration>,
    /// `ALLOW_PUBLIC_SHARING`.
    pub deployment: Deployment,
    /// Attempts per AWS call, retries included, with adaptive backoff on throttling
    /// (`AMI_MAX_ATTEMPTS`, default 5).
    pub max_attempts: u32,
    /// Mutating calls per second per region (`AMI_MUTATION_RATE`, default 5: EC2's refill rate).
    pub mutation_rate: f64,
    /// Mutating calls sent at once before pacing starts (`AMI_MUTATION_BURST`, default 100:
    /// EC2's bucket size).
    pub mutation_burst: f64,
    /// How many times one age-out run may continue itself (`AMI_MAX_CONTINUATIONS`, default
    /// 24, 0 turns continuation off).
    pub max_continuations: u32,
    /// The price of a GB-month of snapshot storage in USD, for the estimated saving of a run
    /// (`AMI_SNAPSHOT_PRICE_PER_GB_MONTH`, default 0.05: EBS snapshots, standard tier,
    /// us-east-1).
    pub snapshot_price: f64,
    /// The schedule window the build names are made from (`AMI_BUILD_WINDOW_MINUTES`, default
    /// 60): every delivery of the same schedule within it makes the same names.
    pub build_window_minutes: u32,
    /// The most one AWS call may take, all its attempts included (`AMI_CALL_TIMEOUT_MS`); each
    /// attempt gets half of it. A call that hangs ends within it, so a run that stops starting
    /// work at the deadline margin still answers before Lambda's deadline.
    pub call_timeout: Duration,
    /// The stack's HMAC key in KMS (`AMI_SIGNING_KEY_ARN`), with which it seals what it makes
    /// and checks what claims to be its own. Without it nothing sealed is made or accepted.
    pub signing_key: Option<String>,
    /// The role the dead-man schedules terminate test instances as (`AMI_DEADMAN_ROLE_ARN`)
    /// and their schedule group (`AMI_DEADMAN_GROUP`, default `default`).
    pub dead_man: Option<(String, String)>,
    /// Launch-test instances up at once per region (`AMI_MAX_TEST_INSTANCES`, default 5, 1 to
    /// 100); further launches wait for a later sweep.
    pub max_test_instances: usize,
    /// The instance types launch tests may use (`AMI_VALIDATION_INSTANCE_TYPES`, from the
    /// template's `ValidationInstanceTypes`, which IAM enforces too); none: any.
    pub validation_instance_types: Option<Vec<String>>,
    /// The network the deployment declares isolated for launch tests
    /// (`AMI_VALIDATION_SUBNET` and `AMI_VALIDATION_SECURITY_GROUPS`, from the template's
    /// `ValidationSubnetId` and `ValidationSecurityGroupIds`, which IAM enforces too); none: any.
    pub validation_network: Option<(String, Vec<String>)>,
    /// The template's age-out kill switch (`AMI_AGE_OUT_DRY_RUN`, from `AgeOutDryRun`, default
    /// false). Each link of a continuation chain reads it again: true stops every chain.
    pub age_out_dry_run: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn env_number(name: &str, default: Option<u64>, min: u64, max: u64) -> Result<Option<u64>> {
    match env(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(Error::config(
                name,
                format!("`{v}` is not a whole number from {min} to {max}"),
            )),
        },
    }
}

/// Every policy's `validate.instance_type` is one the deployment allows (IAM refuses any other
/// at RunInstances: better said at cold start, naming the field and the fix).
fn check_instance_types(document: &PolicyDocument, allowed: Option<&[String]>) -> Result<()> {
    let Some(allowed) = allowed else {
        return Ok(());
    };
    for (i, policy) in document.policies.iter().enumerate() {
        let Some(v) = &policy.validate else {
            continue;
        };
        if !allowed.contains(&v.instance_type) {
            return Err(Error::config(
                format!("$.policies[{i}].validate.instance_type"),
                format!(
                    "`{}` is not among the deployment's ValidationInstanceTypes ({}): add it to that template parameter, or choose one of them",
                    v.instance_type,
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The items of a comma-separated list, trimmed, empty ones left out.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Every launch test in the network the deployment declared isolated (`ValidationSubnetId`,
/// `ValidationSecurityGroupIds`): the test boots a copy of a server, whose cron jobs and agents
/// must reach nothing of production; the operator declares which subnet has no route there,
/// IAM allows launches only into it, and a policy naming another is refused at start.
fn check_network(
    document: &PolicyDocument,
    declared: Option<&(String, Vec<String>)>,
) -> Result<()> {
    let Some((subnet, groups)) = declared else {
        return Ok(());
    };
    for (i, policy) in document.policies.iter().enumerate() {
        let Some(v) = &policy.validate else {
            continue;
        };
        if subnet.is_empty() {
            return Err(Error::config(
                format!("$.policies[{i}].validate.subnet_id"),
                "the deployment declares no isolated subnet for launch tests: set the template parameter ValidationSubnetId to a subnet with no route to production (a test boots a copy of a server, its cron jobs and agents included)",
            ));
        }
        if &v.subnet_id != subnet {
            return Err(Error::config(
                format!("$.policies[{i}].validate.subnet_id"),
                format!(
                    "`{}` is not the subnet the deployment declares isolated for launch tests (ValidationSubnetId: {subnet}): use that one, or declare this one once it has no route to production",
                    v.subnet_id
                ),
            ));
        }
        if let Some(g) = v.security_group_ids.iter().find(|g| !groups.contains(g)) {
            return Err(Error::config(
                format!("$.policies[{i}].validate.security_group_ids"),
                format!(
                    "`{g}` is not among the deployment's ValidationSecurityGroupIds ({}): add it to that template parameter, or choose one of them",
                    groups.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// `true` or `false`; unset is false.
fn env_bool(name: &str) -> Result<bool> {
    match env(name).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Error::config(
            name,
            format!("`{other}`: expected true or false"),
        )),
    }
}

impl Settings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Result<Self> {
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                Error::config(
                    "AWS_REGION",
                    "not set: Lambda sets it; locally export AWS_REGION=us-east-1",
                )
            })?;
        let home_region = region
            .parse::<Region>()
            .map_err(|m| Error::config("AWS_REGION", m))?;
        let allow_public_sharing = env_bool("ALLOW_PUBLIC_SHARING")?;
        let settings = Settings {
            deployment: Deployment {
                allow_public_sharing,
                partition: Some(home_region.partition()),
            },
            home_region,
            event_bus: env("EVENT_BUS_NAME").unwrap_or_else(|| "default".into()),
            event_outbox: env("AMI_EVENT_OUTBOX_URL"),
            concurrency: env_number("AMI_CONCURRENCY", Some(8), 1, 100)?.unwrap_or(8) as usize,
            deadline_margin: Duration::from_millis(
                env_number("AMI_DEADLINE_MARGIN_MS", Some(30_000), 0, 900_000)?.unwrap_or(30_000),
            ),
            run_budget: env_number("AMI_RUN_BUDGET_MS", None, 0, 86_400_000)?
                .map(Duration::from_millis),
            build_window_minutes: env_number("AMI_BUILD_WINDOW_MINUTES", Some(60), 1, 10_080)?
                .unwrap_or(60) as u32,
            max_attempts: env_number("AMI_MAX_ATTEMPTS", Some(5), 1, 20)?.unwrap_or(5) as u32,
            call_timeout: Duration::from_millis(
                env_number("AMI_CALL_TIMEOUT_MS", Some(25_000), 200, 900_000)?.unwrap_or(25_000),
            ),
            mutation_rate: env_number("AMI_MUTATION_RATE", Some(5), 1, 100_000)?.unwrap_or(5)
                as f64,
            mutation_burst: env_number("AMI_MUTATION_BURST", Some(100), 1, 100_000)?.unwrap_or(100)
                as f64,
            max_continuations: env_number("AMI_MAX_CONTINUATIONS", Some(24), 0, 1000)?.unwrap_or(24)
                as u32,
            signing_key: env("AMI_SIGNING_KEY_ARN"),
            dead_man: env("AMI_DEADMAN_ROLE_ARN").map(|role| {
                (
                    role,
                    env("AMI_DEADMAN_GROUP").unwrap_or_else(|| "default".into()),
                )
            }),
            max_test_instances: env_number("AMI_MAX_TEST_INSTANCES", Some(5), 1, 100)?.unwrap_or(5)
                as usize,
            validation_instance_types: env("AMI_VALIDATION_INSTANCE_TYPES").map(|v| list(&v)),
            // Set but empty (the template's default) declares no isolated subnet; unset (a
            // local run) declares nothing.
            validation_network: std::env::var("AMI_VALIDATION_SUBNET").ok().map(|subnet| {
                let groups = env("AMI_VALIDATION_SECURITY_GROUPS").unwrap_or_default();
                (subnet.trim().to_string(), list(&groups))
            }),
            age_out_dry_run: env_bool("AMI_AGE_OUT_DRY_RUN")?,
            snapshot_price: match env("AMI_SNAPSHOT_PRICE_PER_GB_MONTH") {
                None => 0.05,
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=10.0).contains(p))
                    .ok_or_else(|| {
                        Error::config(
                            "AMI_SNAPSHOT_PRICE_PER_GB_MONTH",
                            format!("`{v}` is not a price in USD from 0 to 10 (default 0.05)"),
                        )
                    })?,
            },
        };
        if !settings.deadline_margin.is_zero() && settings.call_timeout > settings.deadline_margin {
            return Err(Error::config(
                "AMI_CALL_TIMEOUT_MS",
                format!(
                    "{} ms is longer than AMI_DEADLINE_MARGIN_MS ({} ms): a call started just before the run stops could outlive the Lambda deadline; make the timeout shorter or the margin longer",
                    settings.call_timeout.as_millis(),
                    settings.deadline_margin.as_millis()
                ),
            ));
        }
        Ok(settings)
    }
}

/// Everything a function needs, built once per cold start.
#[derive(Debug)]
pub struct App {
    /// The policy document.
    pub document: PolicyDocument,
    /// Deployment settings.
    pub settings: Settings,
    sdk: SdkConfig,
    ec2: Mutex<HashMap<Region, Ec2>>,
    kms: Mutex<HashMap<Region, Kms>>,
    events: Events,
    mac: Option<Mac>,
}

/// The functions' announcer: the bus, with its outbox.
pub type Events = Announcer<EventBridge, SqsOutbox>;

/// The stack's seal: its HMAC key in KMS, in the key's own region (from its ARN; the home
/// region for a bare key id). None when the deployment names no key.
fn mac(sdk: &SdkConfig, settings: &Settings) -> Option<Mac> {
    let key = settings.signing_key.clone()?;
    let region = key
        .strip_prefix("arn:")
        .and_then(|arn| arn.split(':').nth(2))
        .and_then(|r| r.parse::<Region>().ok())
        .unwrap_or_else(|| settings.home_region.clone());
    let config = aws_sdk_kms::config::Builder::from(sdk)
        .region(aws_config::Region::new(region.to_string()))
        .build();
    Some(Mac::new(
        aws_sdk_kms::Client::from_conf(config),
        key,
        region,
    ))
}

impl App {
    /// Loads the settings, the policy document and the AWS configuration from the environment.
    /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_EC2`) points the clients at an emulator.
    ///
    /// `function` goes into every request's user agent as `app/<function>`, so CloudTrail's
    /// `userAgent` (and the test bed's record of who called what) names the function that made
    /// each call.
    pub async fn from_env(function: &str) -> Result<Self> {
        let settings = Settings::from_env()?;
        let document = PolicyDocument::from_env(settings.deployment)?;
        check_instance_types(&document, settings.validation_instance_types.as_deref())?;
        check_network(&document, settings.validation_network.as_ref())?;
        if settings.signing_key.is_none() && document.policies.iter().any(|p| p.validate.is_some())
        {
            return Err(Error::config(
                "AMI_SIGNING_KEY_ARN",
                "not set: a policy with `validate` promotes only verdicts sealed with the stack's HMAC key, so the functions need it (the template sets it to its SigningKey)",
            ));
        }
        let app_name = AppName::new(function.to_string())
            .map_err(|e| Error::config("function name", format!("{function:?}: {e}")))?;
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .app_name(app_name)
            .region(aws_config::Region::new(settings.home_region.to_string()))
            .retry_config(RetryConfig::adaptive().with_max_attempts(settings.max_attempts))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(settings.call_timeout)
                    .operation_attempt_timeout(settings.call_timeout / 2)
                    .build(),
            )
            .load()
            .await;
        let events = Announcer::new(
            EventBridge::new(
                aws_sdk_eventbridge::Client::new(&sdk),
                settings.event_bus.clone(),
            ),
            settings
                .event_outbox
                .as_ref()
                .map(|url| SqsOutbox::new(aws_sdk_sqs::Client::new(&sdk), url.clone())),
        );
        Ok(App {
            mac: mac(&sdk, &settings),
            document,
            settings,
            sdk,
            ec2: Mutex::new(HashMap::new()),
            kms: Mutex::new(HashMap::new()),
            events,
        })
    }

    /// The EC2 adapter of a region; each region's client is built once and reused.
    pub fn ec2(&self, region: &Region) -> Ec2 {
        let mut clients = self
            .ec2
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        clients
            .entry(region.clone())
            .or_insert_with(|| {
                let config = aws_sdk_ec2::config::Builder::from(&self.sdk)
                    .region(aws_config::Region::new(region.to_string()))
                    .build();
                Ec2::new(aws_sdk_ec2::Client::from_conf(config), region.clone())
            })
            .clone()
    }

    /// The KMS adapter of a region.
    pub fn kms(&self, region: &Region) -> Kms {
        let mut clients = self
            .kms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        clients
            .entry(region.clone())
            .or_insert_with(|| {
                let config = aws_sdk_kms::config::Builder::from(&self.sdk)
                    .region(aws_config::Region::new(region.to_string()))
                    .build();
                Kms::new(aws_sdk_kms::Client::from_conf(config), region.clone())
            })
            .clone()
    }

    /// The deadline of an invocation, from Lambda's (milliseconds since the epoch), the margin
    /// and the run budget.
    pub fn deadline(&self, lambda_deadline_ms: u64) -> Deadline {
        Deadline::from_lambda(
            lambda_deadline_ms,
            self.settings.deadline_margin,
            self.settings.run_budget,
        )
    }

    /// The limits jobs run within.
    pub fn limits(&self) -> Limits {
        Limits {
            concurrency: self.settings.concurrency,
            allow_public_sharing: self.settings.deployment.allow_public_sharing,
            snapshot_price: self.settings.snapshot_price,
            max_test_instances: self.settings.max_test_instances,
        }
    }

    /// Why a chain of age-out runs must stop now, if it must: the document's `dry_run` or the
    /// template's `AgeOutDryRun` says dry run. A chain runs for real only while both say real.
    pub fn kill_switch(&self) -> Option<String> {
        if self.document.dry_run {
            return Some("the policy document says dry_run: true".into());
        }
        if self.settings.age_out_dry_run {
            return Some("the deployment says AgeOutDryRun=true (AMI_AGE_OUT_DRY_RUN)".into());
        }
        None
    }

    /// The announcer: EventBridge, and the outbox for what it does not take.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Checks that the requested policies exist; the error lists the policies there are.
    pub fn check_policies(&self, names: Option<&[String]>) -> Result<()> {
        for (i, name) in names.unwrap_or_default().iter().enumerate() {
            if self.document.policy(name).is_none() {
                let known: Vec<&str> = self
                    .document
                    .policies
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                return Err(Error::event(
                    format!("$.policies[{i}]"),
                    format!(
                        "no policy named `{name}`: the document has {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Cloud for App {
    type Ec2 = Ec2;
    type Keys = Kms;
    type Bin = Rbin;
    type Params = Ssm;
    type Pacer = Pacer;
    type Sealer = Mac;
    type DeadMan = crate::adapters::scheduler::Scheduler;

    fn parameters(&self, region: &Region) -> Ssm {
        let config = aws_sdk_ssm::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        Ssm::new(aws_sdk_ssm::Client::from_conf(config), region.clone())
    }

    fn recycle_bin(&self, region: &Region) -> Rbin {
        let config = aws_sdk_rbin::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        Rbin::new(aws_sdk_rbin::Client::from_conf(config), region.clone())
    }

    fn ec2(&self, region: &Region) -> Ec2 {
        App::ec2(self, region)
    }

    fn keys(&self, region: &Region) -> Kms {
        self.kms(region)
    }

    fn pacer(&self) -> Pacer {
        Pacer::new(self.settings.mutation_rate, self.settings.mutation_burst)
    }

    fn sealer(&self) -> Option<Mac> {
        self.mac.clone()
    }

    fn dead_man(&self, region: &Region) -> Option<crate::adapters::scheduler::Scheduler> {
        let (role, group) = self.settings.dead_man.clone()?;
        let config = aws_sdk_scheduler::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        Some(crate::adapters::scheduler::Scheduler::new(
            aws_sdk_scheduler::Client::from_conf(config),
            region.clone(),
            role,
            group,
        ))
    }
}
