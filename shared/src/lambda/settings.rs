//! The deployment's settings: one table ([`ALL`]) gives each environment variable's name,
//! default, range and meaning. The cold start reads through it, and `docs/configuration.md`
//! is checked against it by a unit test, so the code, the defaults and the docs cannot drift.

use std::time::Duration;

use crate::domain::ids::Region;
use crate::domain::policy::{Deployment, PolicyDocument};
use crate::error::{Error, Result};

/// What a setting holds, with its default and range.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A whole number from `min` to `max`.
    Number {
        /// Unset: this, or no value.
        default: Option<u64>,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// A price in USD from 0 to `max`.
    Price {
        /// Unset: this.
        default: f64,
        /// The largest value accepted.
        max: f64,
    },
    /// `true` or `false`; unset is false.
    Flag,
    /// Text; unset: `default` (a value, or how it is set).
    Text {
        /// What unset means, as the docs say it.
        default: &'static str,
    },
}

/// One environment variable the functions read.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The variable.
    pub name: &'static str,
    /// Its kind, default and range.
    pub kind: Kind,
    /// What it does, for the docs.
    pub meaning: &'static str,
}

const fn number(
    name: &'static str,
    default: Option<u64>,
    range: (u64, u64),
    meaning: &'static str,
) -> Setting {
    Setting {
        name,
        kind: Kind::Number {
            default,
            min: range.0,
            max: range.1,
        },
        meaning,
    }
}

const fn text(name: &'static str, default: &'static str, meaning: &'static str) -> Setting {
    Setting {
        name,
        kind: Kind::Text { default },
        meaning,
    }
}

const fn flag(name: &'static str, meaning: &'static str) -> Setting {
    Setting {
        name,
        kind: Kind::Flag,
        meaning,
    }
}

/// The policy document, inline.
pub const POLICIES: Setting = text("AMI_POLICIES", "none", "The policy document as JSON ([policy document](policy.md)). Exactly one of this and `AMI_POLICIES_FILE`.");
/// The policy document, as a path.
pub const POLICIES_FILE: Setting = text(
    "AMI_POLICIES_FILE",
    "none",
    "The path of the policy document. Exactly one of this and `AMI_POLICIES`.",
);
/// The home region.
pub const REGION: Setting = text(
    "AWS_REGION",
    "set by Lambda (`AWS_DEFAULT_REGION` locally)",
    "The home region: the default of a run request's `regions`.",
);
/// The tool's bus.
pub const EVENT_BUS: Setting = text(
    "EVENT_BUS_NAME",
    "`default`",
    "The bus the tool's events go to.",
);
/// The event outbox.
pub const EVENT_OUTBOX: Setting = text("AMI_EVENT_OUTBOX_URL", "none (the template sets its `EventOutbox`)", "The SQS queue where events EventBridge did not take wait for the next run. Without it such an event fails the invocation.");
/// The role the stack assumes in each target account.
pub const TARGET_ROLE_NAME: Setting = text("AMI_TARGET_ROLE_NAME", "`ami-lifecycle-target`", "The name of the role `target-role.yaml` creates in each target account; the distribute function assumes `arn:aws:iam::<target>:role/<name>`.");
/// The ExternalId the target roles require.
pub const TARGET_EXTERNAL_ID: Setting = text("AMI_TARGET_EXTERNAL_ID", "none (the template's `TargetExternalId`)", "The ExternalId every target role's trust policy requires. Needed when a policy has `distribute`.");
/// The role that reads the organization's OUs.
pub const ORGANIZATIONS_ROLE: Setting = text("AMI_ORGANIZATIONS_ROLE_ARN", "none (the function's own role)", "The role, in the management or a delegated administrator account, that lists the accounts of the policies' target OUs and the OU each target account is in (`organizations:ListAccountsForParent`, `organizations:ListParents`). None: the stack's own account is that account.");
/// The queue of units of work of a distribution sweep.
pub const DISTRIBUTE_QUEUE: Setting = text("AMI_DISTRIBUTE_QUEUE_URL", "none (the template sets its `DistributeQueue`)", "The SQS queue a distribution sweep sends one unit per target account and region to; it feeds the distribute function, and a unit that keeps failing lands in its dead-letter queue.");
/// Public sharing.
pub const ALLOW_PUBLIC_SHARING: Setting = flag(
    "ALLOW_PUBLIC_SHARING",
    "Whether a policy may make AMIs public (`share.public`).",
);
/// Mutating calls in flight.
pub const CONCURRENCY: Setting = number(
    "AMI_CONCURRENCY",
    Some(8),
    (1, 100),
    "Mutating calls in flight at once per region.",
);
/// The deadline margin.
pub const DEADLINE_MARGIN_MS: Setting = number(
    "AMI_DEADLINE_MARGIN_MS",
    Some(30_000),
    (0, 900_000),
    "Stop starting work this long before the Lambda deadline.",
);
/// One call's time limit.
pub const CALL_TIMEOUT_MS: Setting = number("AMI_CALL_TIMEOUT_MS", Some(25_000), (200, 900_000), "The most one AWS call may take, retries included (each attempt half of it): a call that hangs ends, deferred, before the deadline. At most the margin (checked at start).");
/// One run's budget.
pub const RUN_BUDGET_MS: Setting = number("AMI_RUN_BUDGET_MS", None, (0, 86_400_000), "An upper bound on one run (the only bound under `cargo lambda watch`, whose deadline is a constant in 1970 and is treated as \"no deadline\").");
/// Regions newer than the release.
pub const EXTRA_REGIONS: Setting = text(
    "AMI_EXTRA_REGIONS",
    "none",
    "Regions newer than this release, comma-separated (assumed in the commercial partition).",
);
/// The build's schedule window.
pub const BUILD_WINDOW_MINUTES: Setting = number("AMI_BUILD_WINDOW_MINUTES", Some(60), (1, 10_080), "The build's schedule window: every delivery of the same schedule within it makes the same AMI names.");
/// Age-out's continuations.
pub const MAX_CONTINUATIONS: Setting = number("AMI_MAX_CONTINUATIONS", Some(24), (0, 1000), "How many times one age-out run may continue itself when its deadline comes with work left (0: never).");
/// The stack's HMAC key.
pub const SIGNING_KEY_ARN: Setting = text("AMI_SIGNING_KEY_ARN", "none (the template sets its `SigningKey`)", "The stack's KMS HMAC key (HMAC_256): seals continuations, verdicts, pins and launch-test tokens, and checks them. Without it nothing sealed is made or accepted; a document with `validate` refuses to start.");
/// Launch-test instances per region.
pub const MAX_TEST_INSTANCES: Setting = number("AMI_MAX_TEST_INSTANCES", Some(5), (1, 100), "Launch-test instances up at once per region (the template sets `ValidationMaxInstances`); further AMIs wait for a later sweep.");
/// Launch-test instance types.
pub const VALIDATION_INSTANCE_TYPES: Setting = text("AMI_VALIDATION_INSTANCE_TYPES", "any (the template sets `ValidationInstanceTypes`)", "The instance types launch tests may use, comma-separated; a policy naming another fails the cold start (IAM refuses it too).");
/// The isolated subnet.
pub const VALIDATION_SUBNET: Setting = text("AMI_VALIDATION_SUBNET", "unset: any; set but empty: none (the template sets `ValidationSubnetId`)", "The subnet the deployment declares isolated for launch tests; a policy naming another fails the cold start (IAM refuses it too).");
/// The isolated security groups.
pub const VALIDATION_SECURITY_GROUPS: Setting = text("AMI_VALIDATION_SECURITY_GROUPS", "none (the template sets `ValidationSecurityGroupIds`)", "The security groups launch tests may use, comma-separated (read with `AMI_VALIDATION_SUBNET`).");
/// The dead-man role.
pub const DEADMAN_ROLE_ARN: Setting = text("AMI_DEADMAN_ROLE_ARN", "none (the template sets `DeadManRole`)", "The role the launch tests' dead-man schedules terminate test instances as; without it no test instance is launched.");
/// The dead-man schedule group.
pub const DEADMAN_GROUP: Setting = text(
    "AMI_DEADMAN_GROUP",
    "`default` (the template sets `DeadManGroup`)",
    "The schedule group of the dead-man schedules.",
);
/// Age-out's kill switch.
pub const AGE_OUT_DRY_RUN: Setting = flag("AMI_AGE_OUT_DRY_RUN", "Age-out's kill switch (the template sets `AgeOutDryRun`), read again by every link of a continuation chain: `true` stops every chain.");
/// The snapshot price.
pub const SNAPSHOT_PRICE_PER_GB_MONTH: Setting = Setting {
    name: "AMI_SNAPSHOT_PRICE_PER_GB_MONTH",
    kind: Kind::Price {
        default: 0.05,
        max: 10.0,
    },
    meaning: "USD per GB-month of snapshot storage (EBS snapshots, standard tier, us-east-1), for the estimated monthly saving of an age-out run.",
};
/// Pacing: refill rate.
pub const MUTATION_RATE: Setting = number("AMI_MUTATION_RATE", Some(5), (1, 100_000), "Mutating calls per second per region, sized like EC2's request bucket's refill rate (raise it if AWS raised your limits).");
/// Pacing: burst.
pub const MUTATION_BURST: Setting = number(
    "AMI_MUTATION_BURST",
    Some(100),
    (1, 100_000),
    "Mutating calls sent at once before pacing starts, sized like EC2's request bucket.",
);
/// Attempts per call.
pub const MAX_ATTEMPTS: Setting = number("AMI_MAX_ATTEMPTS", Some(5), (1, 20), "Attempts per AWS call (adaptive retry on throttling); past them a throttled action is `deferred` to the next run, never failed.");
/// The SDK's endpoint.
pub const ENDPOINT_URL: Setting = text(
    "AWS_ENDPOINT_URL",
    "none",
    "Points the SDK at an emulator (read by the SDK).",
);

/// Every setting, in the order the docs list them.
pub const ALL: [Setting; 30] = [
    POLICIES,
    POLICIES_FILE,
    REGION,
    EVENT_BUS,
    EVENT_OUTBOX,
    TARGET_ROLE_NAME,
    TARGET_EXTERNAL_ID,
    ORGANIZATIONS_ROLE,
    DISTRIBUTE_QUEUE,
    ALLOW_PUBLIC_SHARING,
    CONCURRENCY,
    DEADLINE_MARGIN_MS,
    CALL_TIMEOUT_MS,
    RUN_BUDGET_MS,
    EXTRA_REGIONS,
    BUILD_WINDOW_MINUTES,
    MAX_CONTINUATIONS,
    SIGNING_KEY_ARN,
    MAX_TEST_INSTANCES,
    VALIDATION_INSTANCE_TYPES,
    VALIDATION_SUBNET,
    VALIDATION_SECURITY_GROUPS,
    DEADMAN_ROLE_ARN,
    DEADMAN_GROUP,
    AGE_OUT_DRY_RUN,
    SNAPSHOT_PRICE_PER_GB_MONTH,
    MUTATION_RATE,
    MUTATION_BURST,
    MAX_ATTEMPTS,
    ENDPOINT_URL,
];

impl Setting {
    /// The value, trimmed; unset and empty are none.
    pub fn text(&self) -> Option<String> {
        self.raw()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The value as set, empty included.
    pub fn raw(&self) -> Option<String> {
        std::env::var(self.name).ok()
    }

    /// The value of a [`Kind::Number`], or its default; out of range is an error naming it.
    pub fn number(&self) -> Result<Option<u64>> {
        let Kind::Number { default, min, max } = self.kind else {
            unreachable!("{} is not a number", self.name)
        };
        let Some(v) = self.text() else {
            return Ok(default);
        };
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(Error::config(
                self.name,
                format!("`{v}` is not a whole number from {min} to {max}"),
            )),
        }
    }

    /// The value of a [`Kind::Price`], or its default.
    pub fn price(&self) -> Result<f64> {
        let Kind::Price { default, max } = self.kind else {
            unreachable!("{} is not a price", self.name)
        };
        let Some(v) = self.text() else {
            return Ok(default);
        };
        v.parse::<f64>()
            .ok()
            .filter(|p| (0.0..=max).contains(p))
            .ok_or_else(|| {
                Error::config(
                    self.name,
                    format!("`{v}` is not a price in USD from 0 to {max} (default {default})"),
                )
            })
    }

    /// The value of a [`Kind::Flag`]: `true` or `false`; unset is false.
    pub fn flag(&self) -> Result<bool> {
        match self.text().as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(Error::config(
                self.name,
                format!("`{other}`: expected true or false"),
            )),
        }
    }

    /// Its row of the docs' table: variable, default, range, meaning.
    fn row(&self) -> String {
        let (default, range) = match self.kind {
            Kind::Number { default, min, max } => (
                default.map_or("none".to_string(), |d| d.to_string()),
                format!("{min}–{max}"),
            ),
            Kind::Price { default, max } => (default.to_string(), format!("0–{max}")),
            Kind::Flag => ("`false`".to_string(), "`true`, `false`".to_string()),
            Kind::Text { default } => (default.to_string(), String::new()),
        };
        format!(
            "| `{}` | {default} | {range} | {} |",
            self.name, self.meaning
        )
    }
}

/// Deployment settings read from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The function's own region (`AWS_REGION`): the default of a run request's `regions`.
    pub home_region: Region,
    /// The bus the tool's events go to (`EVENT_BUS_NAME`).
    pub event_bus: String,
    /// The queue where events EventBridge did not take wait for the next run
    /// (`AMI_EVENT_OUTBOX_URL`, from the template's `EventOutbox`); none: such events are lost,
    /// and the invocation fails.
    pub event_outbox: Option<String>,
    /// Mutating calls in flight at once per region (`AMI_CONCURRENCY`).
    pub concurrency: usize,
    /// Stop this long before the Lambda deadline (`AMI_DEADLINE_MARGIN_MS`).
    pub deadline_margin: Duration,
    /// An upper bound on one run (`AMI_RUN_BUDGET_MS`); the only bound where no deadline is
    /// known (`cargo lambda watch` sends a constant deadline in 1970).
    pub run_budget: Option<Duration>,
    /// `ALLOW_PUBLIC_SHARING`.
    pub deployment: Deployment,
    /// Attempts per AWS call, retries included, with adaptive backoff on throttling
    /// (`AMI_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Mutating calls per second per region (`AMI_MUTATION_RATE`).
    pub mutation_rate: f64,
    /// Mutating calls sent at once before pacing starts (`AMI_MUTATION_BURST`).
    pub mutation_burst: f64,
    /// How many times one age-out run may continue itself (`AMI_MAX_CONTINUATIONS`, 0 turns
    /// continuation off).
    pub max_continuations: u32,
    /// The price of a GB-month of snapshot storage in USD, for the estimated saving of a run
    /// (`AMI_SNAPSHOT_PRICE_PER_GB_MONTH`).
    pub snapshot_price: f64,
    /// The schedule window the build names are made from (`AMI_BUILD_WINDOW_MINUTES`): every delivery of the same schedule within it makes the same names.
    pub build_window_minutes: u32,
    /// The most one AWS call may take, all its attempts included (`AMI_CALL_TIMEOUT_MS`); each
    /// attempt gets half of it. A call that hangs ends within it, so a run that stops starting
    /// work at the deadline margin still answers before Lambda's deadline.
    pub call_timeout: Duration,
    /// The stack's HMAC key in KMS (`AMI_SIGNING_KEY_ARN`), with which it seals what it makes
    /// and checks what claims to be its own. Without it nothing sealed is made or accepted.
    pub signing_key: Option<String>,
    /// The role the dead-man schedules terminate test instances as (`AMI_DEADMAN_ROLE_ARN`)
    /// and their schedule group (`AMI_DEADMAN_GROUP`).
    pub dead_man: Option<(String, String)>,
    /// Launch-test instances up at once per region (`AMI_MAX_TEST_INSTANCES`); further
    /// launches wait for a later sweep.
    pub max_test_instances: usize,
    /// The instance types launch tests may use (`AMI_VALIDATION_INSTANCE_TYPES`, from the
    /// template's `ValidationInstanceTypes`, which IAM enforces too); none: any.
    pub validation_instance_types: Option<Vec<String>>,
    /// The network the deployment declares isolated for launch tests
    /// (`AMI_VALIDATION_SUBNET` and `AMI_VALIDATION_SECURITY_GROUPS`, from the template's
    /// `ValidationSubnetId` and `ValidationSecurityGroupIds`, which IAM enforces too); none: any.
    pub validation_network: Option<(String, Vec<String>)>,
    /// The template's age-out kill switch (`AMI_AGE_OUT_DRY_RUN`, from `AgeOutDryRun`). Each link of a continuation chain reads it again: true stops every chain.
    pub age_out_dry_run: bool,
    /// The target accounts' role (`AMI_TARGET_ROLE_NAME`), its ExternalId
    /// (`AMI_TARGET_EXTERNAL_ID`) and the distribution queue (`AMI_DISTRIBUTE_QUEUE_URL`).
    pub distribution: Distribution,
}

/// How the stack reaches its target accounts.
#[derive(Debug, Clone, Default)]
pub struct Distribution {
    /// The role's name in every target account.
    pub role_name: String,
    /// The ExternalId its trust policy requires; none: no target account is reached.
    pub external_id: Option<String>,
    /// The queue of a sweep's units; none: a sweep cannot fan out.
    pub queue_url: Option<String>,
    /// The role that lists the target OUs' accounts (`AMI_ORGANIZATIONS_ROLE_ARN`); none: the
    /// function's own.
    pub organizations_role: Option<String>,
}

/// The items of a comma-separated list, trimmed, empty ones left out.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

impl Settings {
    /// Reads the settings from the environment, through the table.
    pub fn from_env() -> Result<Self> {
        let home_region = home_region()?;
        let settings = Settings {
            deployment: Deployment {
                allow_public_sharing: ALLOW_PUBLIC_SHARING.flag()?,
                partition: Some(home_region.partition()),
            },
            home_region,
            event_bus: EVENT_BUS.text().unwrap_or_else(|| "default".into()),
            event_outbox: EVENT_OUTBOX.text(),
            concurrency: required(CONCURRENCY)? as usize,
            deadline_margin: Duration::from_millis(required(DEADLINE_MARGIN_MS)?),
            run_budget: RUN_BUDGET_MS.number()?.map(Duration::from_millis),
            build_window_minutes: required(BUILD_WINDOW_MINUTES)? as u32,
            max_attempts: required(MAX_ATTEMPTS)? as u32,
            call_timeout: Duration::from_millis(required(CALL_TIMEOUT_MS)?),
            mutation_rate: required(MUTATION_RATE)? as f64,
            mutation_burst: required(MUTATION_BURST)? as f64,
            max_continuations: required(MAX_CONTINUATIONS)? as u32,
            signing_key: SIGNING_KEY_ARN.text(),
            dead_man: DEADMAN_ROLE_ARN.text().map(|role| {
                (
                    role,
                    DEADMAN_GROUP.text().unwrap_or_else(|| "default".into()),
                )
            }),
            max_test_instances: required(MAX_TEST_INSTANCES)? as usize,
            validation_instance_types: VALIDATION_INSTANCE_TYPES.text().map(|v| list(&v)),
            // Set but empty (the template's default) declares no isolated subnet; unset (a
            // local run) declares nothing.
            validation_network: VALIDATION_SUBNET.raw().map(|subnet| {
                let groups = VALIDATION_SECURITY_GROUPS.text().unwrap_or_default();
                (subnet.trim().to_string(), list(&groups))
            }),
            age_out_dry_run: AGE_OUT_DRY_RUN.flag()?,
            distribution: Distribution {
                role_name: TARGET_ROLE_NAME
                    .text()
                    .unwrap_or_else(|| "ami-lifecycle-target".into()),
                external_id: TARGET_EXTERNAL_ID.text(),
                queue_url: DISTRIBUTE_QUEUE.text(),
                organizations_role: ORGANIZATIONS_ROLE.text(),
            },
            snapshot_price: SNAPSHOT_PRICE_PER_GB_MONTH.price()?,
        };
        settings.check_timeouts()?;
        Ok(settings)
    }

    /// A call started just before the run stops must end before Lambda's deadline.
    fn check_timeouts(&self) -> Result<()> {
        if self.deadline_margin.is_zero() || self.call_timeout <= self.deadline_margin {
            return Ok(());
        }
        Err(Error::config(
            CALL_TIMEOUT_MS.name,
            format!(
                "{} ms is longer than {} ({} ms): a call started just before the run stops could outlive the Lambda deadline; make the timeout shorter or the margin longer",
                self.call_timeout.as_millis(),
                DEADLINE_MARGIN_MS.name,
                self.deadline_margin.as_millis()
            ),
        ))
    }
}

/// `AWS_REGION` (or `AWS_DEFAULT_REGION`), after the regions newer than the release are known.
fn home_region() -> Result<Region> {
    crate::domain::ids::allow_regions(EXTRA_REGIONS.text().map(|v| list(&v)).unwrap_or_default());
    let region = REGION
        .text()
        .or_else(|| {
            std::env::var("AWS_DEFAULT_REGION")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .ok_or_else(|| {
            Error::config(
                REGION.name,
                "not set: Lambda sets it; locally export AWS_REGION=us-east-1",
            )
        })?;
    region
        .trim()
        .parse::<Region>()
        .map_err(|m| Error::config(REGION.name, m))
}

/// The policy document, from `AMI_POLICIES` (inline JSON) or `AMI_POLICIES_FILE` (a path).
pub fn policy_document(deployment: Deployment) -> Result<PolicyDocument> {
    match (POLICIES.text(), POLICIES_FILE.text()) {
        (Some(json), None) => PolicyDocument::parse(&json, deployment)
            .map_err(|e| prefix_source(e, POLICIES.name)),
        (None, Some(path)) => {
            let json = std::fs::read_to_string(&path).map_err(|e| {
                Error::config(POLICIES_FILE.name, format!("cannot read `{path}`: {e}"))
            })?;
            PolicyDocument::parse(&json, deployment).map_err(|e| prefix_source(e, &path))
        }
        (Some(_), Some(_)) => Err(Error::config(
            POLICIES.name,
            "both AMI_POLICIES and AMI_POLICIES_FILE are set: set exactly one",
        )),
        (None, None) => Err(Error::config(
            POLICIES.name,
            "no policy document: set AMI_POLICIES to the JSON document or AMI_POLICIES_FILE to its path",
        )),
    }
}

/// A document's error, with where the document came from before its JSON path.
fn prefix_source(err: Error, source: &str) -> Error {
    match err {
        Error::Config { path, message } => Error::config(format!("{source}: {path}"), message),
        other => other,
    }
}

/// A number the table gives a default.
fn required(setting: Setting) -> Result<u64> {
    Ok(setting
        .number()?
        .expect("a setting read with `required` has a default in the table"))
}

/// The table of every setting, as `docs/configuration.md` shows it.
pub fn table() -> String {
    let mut out = String::from("| Variable | Default | Range | Meaning |\n|---|---|---|---|\n");
    for setting in ALL {
        out.push_str(&setting.row());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_show_every_setting_as_the_code_reads_it() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
        let docs = std::fs::read_to_string(path).unwrap();
        assert!(
            docs.contains(&table()),
            "docs/configuration.md must contain this table, as the code reads the settings:\n{}",
            table()
        );
    }

    #[test]
    fn every_setting_is_named_once() {
        let mut names: Vec<_> = ALL.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
