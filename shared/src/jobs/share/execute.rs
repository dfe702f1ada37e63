//! Reconciles each selected AMI through the ports: reads its permissions ([`super::read`]),
//! decides ([`super::decide`], pure) and applies the changes (launch permissions in one call,
//! each snapshot in one, the KMS grants, public in a call of its own).

use chrono::Utc;
use futures::StreamExt;

use super::decide::{decide, Changes, GrantChange, Wanted};
use super::{plan, read};
use super::{ShareOutcome, ShareResult};
use crate::domain::grant::Grant;
use crate::domain::ids::Region;
use crate::domain::model::Image;
use crate::domain::policy::Policy;
use crate::domain::trigger::RunRequest;
use crate::error::Result;
use crate::jobs::Context;
use crate::ports::{Cloud, KeyInfo, Permissions};

/// Reconciles the request's AMIs in every region, concurrently; one line per AMI.
pub async fn run<C: Cloud>(
    ctx: &Context<'_, C>,
    request: &RunRequest,
    regions: &[Region],
    dry_run: bool,
) -> Vec<ShareResult> {
    let runs = regions
        .iter()
        .map(|region| reconcile_region(ctx, region, request, dry_run));
    futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn reconcile_region<C: Cloud>(
    ctx: &Context<'_, C>,
    region: &Region,
    request: &RunRequest,
    dry_run: bool,
) -> Vec<ShareResult> {
    let ec2 = ctx.cloud.ec2(region);
    let keys = ctx.cloud.keys(region);
    let images = match crate::jobs::proof::scan(ctx.cloud, ctx.document, region).await {
        Ok(images) => images,
        Err(e) => {
            return vec![ShareResult::new("", region, "").with(ShareOutcome::Failed, e.to_string())]
        }
    };
    let (work, mut results) = plan::select(
        &images,
        request.image_ids.as_deref(),
        request.policies.as_deref(),
        ctx.document,
        region,
    );
    let allow_public = ctx.limits.allow_public_sharing;
    let deadline = ctx.deadline;
    let done: Vec<ShareResult> = futures::stream::iter(work)
        .map(|(image, policy)| {
            let (ec2, keys) = (&ec2, &keys);
            async move {
                if deadline.passed() {
                    return ShareResult::new(&image.id, region, &policy.name).with(
                        ShareOutcome::Deferred,
                        crate::jobs::PAST_DEADLINE.to_string(),
                    );
                }
                reconcile(ec2, keys, image, policy, allow_public, dry_run).await
            }
        })
        .buffer_unordered(ctx.limits.concurrency)
        .collect()
        .await;
    results.extend(done);
    results.sort_by(|a, b| a.image_id.cmp(&b.image_id));
    results
}

/// Reconciles one AMI: a failed call defers it (transient) or fails it.
pub async fn reconcile<E: Permissions, K: KeyInfo>(
    ec2: &E,
    keys: &K,
    image: &Image,
    policy: &Policy,
    allow_public: bool,
    dry_run: bool,
) -> ShareResult {
    let mut r = ShareResult::new(&image.id, ec2.region(), &policy.name);
    match reconcile_one((ec2, keys), image, policy, (allow_public, dry_run), &mut r).await {
        Ok(()) => r,
        Err(e) => r.with(e.disposition().into(), e.to_string()),
    }
}

/// Reconciles one AMI: read → plan → apply.
async fn reconcile_one<E: Permissions, K: KeyInfo>(
    (ec2, keys): (&E, &K),
    image: &Image,
    policy: &Policy,
    (allow_public, dry_run): (bool, bool),
    r: &mut ShareResult,
) -> Result<()> {
    let Some(share) = &policy.share else {
        return Ok(());
    };
    if let Some(why) = plan::skip(image, policy) {
        r.outcome = ShareOutcome::Skipped;
        r.reason = Some(why);
        return Ok(());
    }

    let targets = plan::desired(share, allow_public);
    let seen = read::read((ec2, keys), image, (&policy.name, share), &targets).await?;

    let wanted = Wanted {
        policy: &policy.name,
        share,
        targets: &targets,
    };
    let Some(changes) = decide(image, &wanted, &seen, Utc::now(), r) else {
        return Ok(());
    };
    if dry_run {
        r.outcome = ShareOutcome::Planned;
        return Ok(());
    }

    apply((ec2, keys), &image.id, &policy.name, &changes, r).await
}

/// Applies the changes: the shared-at mark, the launch permissions, the snapshots, the KMS
/// grants, then public on its own (a refusal of public costs none of the rest).
async fn apply<E: Permissions, K: KeyInfo>(
    (ec2, keys): (&E, &K),
    image_id: &str,
    policy: &str,
    changes: &Changes,
    r: &mut ShareResult,
) -> Result<()> {
    // A new target of an AMI deprecated already is marked first: age-out gives it a week's
    // notice from now (a later deprecation is its notice otherwise). A mark left by a share that
    // then failed only keeps the AMI longer.
    if changes.mark_shared {
        ec2.mark_shared(image_id, Utc::now()).await?;
    }
    if !changes.add.is_empty() || !changes.remove.is_empty() {
        ec2.modify_launch_permissions(image_id, &changes.add, &changes.remove)
            .await?;
    }
    for (snap, add, remove) in &changes.snapshots {
        ec2.modify_volume_permissions(snap, add, remove).await?;
    }
    // Grants after the launch permissions: an account is granted the key of an AMI it may
    // launch, and a grant is retired once the AMI is no longer shared with it.
    for change in &changes.grants {
        match change {
            GrantChange::Create { key, account } => {
                keys.create_grant(key, account, &plan::grant_name(policy, account))
                    .await?;
            }
            GrantChange::Retire { key, grant_id } => keys.retire_grant(key, grant_id).await?,
        }
    }

    r.outcome = ShareOutcome::Changed;
    if changes.make_public {
        if let Err(e) = ec2
            .modify_launch_permissions(image_id, &[Grant::Public], &[])
            .await
        {
            if e.is_transient() {
                return Err(e);
            }
            r.add.retain(|g| *g != Grant::Public);
            r.public_refused = Some(format!("not made public: EC2 refused it: {e}"));
        }
    }
    r.reason = r.public_refused.clone();
    Ok(())
}
