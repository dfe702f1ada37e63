//! What a function loads once at cold start: the policy document, the deployment settings and
//! the AWS clients. Invalid configuration fails the cold start with a message naming the field.

use std::collections::HashMap;
use std::sync::Mutex;

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
use crate::domain::policy::PolicyDocument;
use crate::error::{Error, Result};
use crate::jobs::announce::Announcer;
use crate::jobs::Limits;
use crate::ports::Cloud;

pub use super::settings::Settings;

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
        let document = super::settings::policy_document(settings.deployment)?;
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

    /// The AWS configuration of the function's own role.
    pub(super) fn sdk(&self) -> &SdkConfig {
        &self.sdk
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
