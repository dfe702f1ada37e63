//! Runs the build's work through the ports: reads what a decision needs, decides (see
//! [`super::plan`]), and creates, with bounded concurrency and the deadline respected.

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::plan::{self, Work};
use super::{BuildOutcome, BuildResult};
use crate::domain::event::Event;
use crate::domain::ids::Region;
use crate::domain::model::InstanceInfo;
use crate::domain::policy::{Policy, PolicyDocument};
use crate::domain::register::RegisterRequest;
use crate::domain::Decision;
use crate::error::Result;
use crate::jobs::Context;
use crate::ports::{BuildImages, Cloud, Regional};

/// What a build run did.
#[derive(Debug, Default)]
pub struct Ran {
    /// One line per instance or snapshot considered.
    pub results: Vec<BuildResult>,
    /// The events to announce.
    pub events: Vec<Event>,
    /// Why the trigger needed no work, when it did not.
    pub ignored: Option<String>,
    /// The schedule window names were made from.
    pub window: Option<DateTime<Utc>>,
}

/// Does the work. An error is returned only when a look-up the work depends on failed (the
/// invocation fails and EventBridge retries it); everything else is a line of the report.
pub async fn run<C: Cloud>(ctx: &Context<'_, C>, work: Work, dry_run: bool) -> Result<Ran> {
    let mut ran = Ran::default();
    match work {
        Work::Sweep {
            regions,
            policies,
            window,
        } => {
            ran.window = Some(window);
            ran.results = sweep(ctx, &regions, policies.as_deref(), window, dry_run).await;
        }
        Work::OnStop {
            region,
            instance_id,
            window,
        } => {
            ran.window = Some(window);
            let ec2 = ctx.cloud.ec2(&region);
            ran.results = on_stop(&ec2, ctx.document, &instance_id, window).await?;
        }
        Work::Register { region, request } => {
            let ec2 = ctx.cloud.ec2(&region);
            ran.results = vec![register(&ec2, ctx.document, &request, dry_run).await];
        }
        Work::SnapshotCreated { region, detail } => {
            if let Some(why) = plan::snapshot_event_ignored(&detail) {
                ran.ignored = Some(why);
            } else {
                let ec2 = ctx.cloud.ec2(&region);
                let id = detail.snapshot();
                let tags = ec2.snapshot_tags(id).await?;
                match plan::register_from_tags(id, &tags, ctx.document) {
                    Decision::Act(request) => {
                        ran.results = vec![register(&ec2, ctx.document, &request, false).await]
                    }
                    Decision::Ignore(why) => ran.ignored = Some(why),
                }
            }
        }
        Work::Announce { region, detail } => {
            let ec2 = ctx.cloud.ec2(&region);
            let tags = ec2.image_tags(&detail.image_id).await?;
            match plan::announce(&region, &detail, tags.as_ref()) {
                Decision::Act(e) => ran.events.push(e),
                Decision::Ignore(why) => ran.ignored = Some(why),
            }
        }
    }
    if !dry_run {
        ran.events.extend(plan::started_events(&ran.results));
    }
    Ok(ran)
}

/// The scheduled build: every policy with `build`, every region, every tagged instance.
async fn sweep<C: Cloud>(
    ctx: &Context<'_, C>,
    regions: &[Region],
    policies: Option<&[String]>,
    window: DateTime<Utc>,
    dry_run: bool,
) -> Vec<BuildResult> {
    let wanted = |p: &Policy| policies.is_none_or(|ps| ps.contains(&p.name));
    let mut jobs = Vec::new();
    let mut results = Vec::new();
    for region in regions {
        let ec2 = ctx.cloud.ec2(region);
        for policy in ctx.document.policies.iter().filter(|p| wanted(p)) {
            let Some(build) = &policy.build else { continue };
            match ec2.instances_tagged(&build.instance_tags).await {
                Ok(instances) => {
                    jobs.extend(instances.into_iter().map(|i| (ec2.clone(), policy, i)))
                }
                Err(e) => results.push(
                    BuildResult::new(None, None, &policy.name, region)
                        .with(BuildOutcome::Failed, e.to_string()),
                ),
            }
        }
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = jobs.len();
    let deadline = ctx.deadline;
    let built: Vec<BuildResult> = futures::stream::iter(jobs)
        .map(|(ec2, policy, instance)| {
            let done = &done;
            async move {
                let r = if deadline.passed() {
                    BuildResult::new(Some(&instance.id), None, &policy.name, ec2.region())
                        .with(BuildOutcome::Deferred, None)
                } else {
                    image_instance(&ec2, policy, &instance, window, dry_run).await
                };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n % 50 == 0 {
                    tracing::info!(done = n, total, "build progress");
                }
                r
            }
        })
        .buffer_unordered(ctx.limits.concurrency)
        .collect()
        .await;
    results.extend(built);
    results.sort_by(|a, b| (&a.region, &a.instance_id).cmp(&(&b.region, &b.instance_id)));
    results
}

/// CreateImage of one instance (or the reason it cannot be imaged).
async fn image_instance<E: BuildImages>(
    ec2: &E,
    policy: &Policy,
    instance: &InstanceInfo,
    window: DateTime<Utc>,
    dry_run: bool,
) -> BuildResult {
    let r = BuildResult::new(Some(&instance.id), None, &policy.name, ec2.region());
    let order = match plan::create_order(policy, instance, window) {
        Ok(order) => order,
        Err(why) => return r.with(BuildOutcome::Refused, why),
    };
    let mut r = r;
    r.name = Some(order.name.clone());
    if dry_run {
        return r.with(BuildOutcome::Planned, None);
    }
    let created = ec2
        .create_image(
            &order.instance_id,
            &order.name,
            order.no_reboot,
            &order.tags,
        )
        .await;
    finish(ec2, r, created, &order.name).await
}

/// Records a CreateImage/RegisterImage answer; a duplicate name means the AMI exists already.
async fn finish<E: BuildImages>(
    ec2: &E,
    mut r: BuildResult,
    created: Result<String>,
    name: &str,
) -> BuildResult {
    match created {
        Ok(id) => {
            r.image_id = Some(id);
            r.with(BuildOutcome::Created, None)
        }
        Err(e) if e.code() == Some("InvalidAMIName.Duplicate") => {
            r.image_id = ec2.image_id_by_name(name).await.ok().flatten();
            r.with(BuildOutcome::Exists, None)
        }
        Err(e) => r.with(e.disposition().into(), e.to_string()),
    }
}

/// An instance stopped: image it if a policy with `on_stop` selects it.
async fn on_stop<E: BuildImages>(
    ec2: &E,
    document: &PolicyDocument,
    instance_id: &str,
    window: DateTime<Utc>,
) -> Result<Vec<BuildResult>> {
    let Some(instance) = ec2.instance(instance_id).await? else {
        return Ok(vec![BuildResult::new(
            Some(instance_id),
            None,
            "",
            ec2.region(),
        )
        .with(
            BuildOutcome::Refused,
            format!(
                "instance {instance_id} does not exist (any more) in {}",
                ec2.region()
            ),
        )]);
    };
    Ok(match plan::on_stop_policy(document, &instance) {
        Some(policy) => vec![image_instance(ec2, policy, &instance, window, false).await],
        None => Vec::new(),
    })
}

/// RegisterImage from a snapshot.
async fn register<E: BuildImages>(
    ec2: &E,
    document: &PolicyDocument,
    request: &RegisterRequest,
    dry_run: bool,
) -> BuildResult {
    let mut r = BuildResult::new(
        None,
        Some(&request.snapshot_id),
        &request.policy,
        ec2.region(),
    );
    let Some(policy) = document.policy(&request.policy) else {
        return r.with(
            BuildOutcome::Refused,
            format!("no policy named `{}`", request.policy),
        );
    };
    let name = match plan::register_name(request) {
        Ok(name) => name,
        Err(why) => return r.with(BuildOutcome::Refused, why),
    };
    r.name = Some(name.clone());
    let state = match ec2.own_snapshot(&request.snapshot_id).await {
        Ok(state) => state,
        Err(e) => return r.with(BuildOutcome::Failed, e.to_string()),
    };
    if let Err(why) = plan::check_snapshot(&request.snapshot_id, state.as_deref()) {
        return r.with(BuildOutcome::Refused, why);
    }
    if dry_run {
        return r.with(BuildOutcome::Planned, None);
    }
    let spec = plan::register_spec(policy, request, name.clone());
    let created = ec2.register_image(&spec).await;
    finish(ec2, r, created, &name).await
}
