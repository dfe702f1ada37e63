//! Reconciles each selected AMI through the ports: reads its permissions, decides (see
//! [`super::plan`]) and changes them in at most three calls (grants, snapshots, public).

use chrono::Utc;
use futures::StreamExt;

use super::plan;
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

/// A change to a key's grants.
enum GrantChange {
    Create { key: String, account: String },
    Retire { key: String, grant_id: String },
}

/// With `kms_grants`, the grant changes that make each customer managed key of the AMI granted
/// to exactly the policy's target accounts; and, for every target, whether it can launch the
/// AMI (`r.launch`): an unencrypted AMI always, an encrypted one when every key is granted to
/// it or its key policy allows it (KMS grants cannot name organizations or OUs: their line
/// carries the key policy statement they need).
async fn key_access<K: KeyInfo>(
    keys: &K,
    key_ids: &[String],
    wanted: &std::collections::BTreeSet<Grant>,
    share: &crate::domain::policy::Share,
    policy: &str,
    r: &mut ShareResult,
) -> Result<Vec<GrantChange>> {
    let mut changes = Vec::new();
    let accounts: std::collections::BTreeSet<String> = wanted
        .iter()
        .filter_map(|g| match g {
            Grant::Account(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    let mut managed_by_customer = Vec::new();
    let mut unknown = None;
    for key in key_ids {
        match keys.is_aws_managed(key).await {
            Ok(true) => {}
            Ok(false) => managed_by_customer.push(key.clone()),
            // Grants cannot be reconciled without knowing the key; the launch report can
            // only say it does not know.
            Err(e) if share.kms_grants => return Err(e),
            Err(e) => unknown = Some(format!("unknown: KMS could not describe {key} ({e})")),
        }
    }
    if share.kms_grants {
        for key in &managed_by_customer {
            let existing = keys.grants(key, &plan::grant_prefix(policy)).await?;
            let (add, retire) = plan::grant_diff(policy, &accounts, &existing);
            for account in add {
                r.kms_grants_created.push(format!("{key} → {account}"));
                changes.push(GrantChange::Create {
                    key: key.clone(),
                    account,
                });
            }
            for grant in retire {
                r.kms_grants_retired
                    .push(format!("{key} → {}", grant.grantee));
                changes.push(GrantChange::Retire {
                    key: key.clone(),
                    grant_id: grant.grant_id,
                });
            }
        }
    }
    // Who can launch: best effort. A key policy that cannot be read leaves the answer unknown
    // (`can_launch` null) and changes nothing of the share itself.
    let mut policies: std::collections::BTreeMap<&String, std::result::Result<String, String>> =
        std::collections::BTreeMap::new();
    for target in wanted {
        let mut access = super::LaunchAccess {
            target: target.clone(),
            can_launch: Some(true),
            why_not: None,
            key_policy_statement: None,
        };
        if let Some(why) = &unknown {
            access.can_launch = None;
            access.why_not = Some(why.clone());
        }
        for key in &managed_by_customer {
            let granted = share.kms_grants && matches!(target, Grant::Account(_));
            if granted || *target == Grant::Public {
                continue;
            }
            if !policies.contains_key(key) {
                let read = keys.key_policy(key).await.map_err(|e| e.to_string());
                policies.insert(key, read);
            }
            match &policies[key] {
                Ok(text) if plan::key_policy_allows(text, target) => continue,
                Ok(_) => {
                    access.can_launch = Some(false);
                    access.why_not = Some(match target {
                        Grant::Account(_) => format!(
                            "the AMI's snapshots are encrypted with {key}, which it may not use: set share.kms_grants, or allow the account in the key policy"
                        ),
                        _ => format!(
                            "the AMI's snapshots are encrypted with {key}, whose key policy does not allow it (KMS grants cannot name organizations or OUs): add key_policy_statement to the key policy"
                        ),
                    });
                    access.key_policy_statement = plan::org_key_statement(target);
                }
                Err(e) => {
                    access.can_launch = None;
                    access.why_not = Some(format!(
                        "unknown: the key policy of {key} could not be read ({e})"
                    ));
                }
            }
            break;
        }
        r.launch.push(access);
    }
    Ok(changes)
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
    match reconcile_inner(ec2, keys, image, policy, allow_public, dry_run, &mut r).await {
        Ok(()) => r,
        Err(e) => r.with(e.disposition().into(), e.to_string()),
    }
}

async fn reconcile_inner<E: Permissions, K: KeyInfo>(
    ec2: &E,
    keys: &K,
    image: &Image,
    policy: &Policy,
    allow_public: bool,
    dry_run: bool,
    r: &mut ShareResult,
) -> Result<()> {
    let Some(share) = &policy.share else {
        return Ok(());
    };
    if let Some(why) = plan::state_skip(&image.state) {
        r.outcome = ShareOutcome::Skipped;
        r.reason = Some(why);
        return Ok(());
    }
    if let Some(why) = image.held_by_gate(policy) {
        // Nothing is granted before the launch test passed (and nothing already granted is
        // taken away: holding is not unsharing). `AMI Validated` brings the AMI back.
        r.outcome = ShareOutcome::Skipped;
        r.reason = Some(format!("held by the promotion gate: {why}"));
        return Ok(());
    }
    let wanted = plan::desired(share, allow_public);
    let current = ec2.launch_permissions(&image.id).await?;
    let (add, remove) = plan::diff(&current, &wanted);
    if remove.contains(&Grant::Public) {
        r.findings
            .push(plan::public_finding(&image.id, &policy.name, share.public));
    }
    let key_ids = if image.encrypted && (!add.is_empty() || share.kms_grants || !wanted.is_empty())
    {
        ec2.snapshot_kms_keys(&image.snapshot_ids).await?
    } else {
        Vec::new()
    };
    if !add.is_empty() {
        for key in &key_ids {
            if keys.is_aws_managed(key).await? {
                r.outcome = ShareOutcome::Refused;
                r.reason = Some(plan::aws_managed_key_refusal(&image.id, key));
                return Ok(());
            }
        }
    }
    r.remove = remove.clone();
    let grant_changes = key_access(keys, &key_ids, &wanted, share, &policy.name, r).await?;

    let mut snapshot_changes = Vec::new();
    if share.snapshots {
        let accounts = plan::snapshot_grants(&wanted);
        for snap in &image.snapshot_ids {
            let current = ec2.volume_permissions(snap).await?;
            let (add, remove) = plan::diff(&current, &accounts);
            if remove.contains(&Grant::Public) {
                r.findings
                    .push(format!("snapshot {snap} was public: made private"));
            }
            if !add.is_empty() {
                r.snapshot_add.insert(snap.clone(), add.clone());
            }
            if !remove.is_empty() {
                r.snapshot_remove.insert(snap.clone(), remove.clone());
            }
            if !add.is_empty() || !remove.is_empty() {
                snapshot_changes.push((snap.clone(), add, remove));
            }
        }
    }
    // Public goes in a call of its own (ModifyImageAttribute is all or nothing): EC2 refuses
    // it for encrypted AMIs, AMIs with product codes, and while block public access for AMIs is
    // on in the region; such a refusal must not cost the account, organization and OU grants.
    let mut add = add;
    let public = add.contains(&Grant::Public);
    add.retain(|g| *g != Grant::Public);
    let mut make_public = false;
    if public {
        let why_not = match plan::never_public(image) {
            Some(why) => Some(why),
            None if ec2.image_block_public_access().await? => Some(format!(
                "block public access for AMIs is on in {} (GetImageBlockPublicAccessState): turn it off there to share publicly",
                ec2.region()
            )),
            None => None,
        };
        match why_not {
            Some(why) => r.public_refused = Some(format!("not made public: {why}")),
            None => make_public = true,
        }
    }
    r.add = add.clone();
    if make_public {
        r.add.push(Grant::Public);
    }
    if add.is_empty()
        && remove.is_empty()
        && snapshot_changes.is_empty()
        && !make_public
        && grant_changes.is_empty()
    {
        r.outcome = if r.public_refused.is_some() {
            ShareOutcome::Refused
        } else {
            ShareOutcome::Unchanged
        };
        r.reason = r.public_refused.clone();
        return Ok(());
    }
    if dry_run {
        r.outcome = ShareOutcome::Planned;
        return Ok(());
    }
    // A new target of an AMI deprecated already is marked first: age-out gives it a week's
    // notice from now (a later deprecation is its notice otherwise). A mark left by a share that
    // then failed only keeps the AMI longer.
    let now = Utc::now();
    let deprecated = image.deprecation_time.is_some_and(|at| at <= now);
    if deprecated && (!add.is_empty() || make_public) {
        ec2.mark_shared(&image.id, now).await?;
    }
    if !add.is_empty() || !remove.is_empty() {
        ec2.modify_launch_permissions(&image.id, &add, &remove)
            .await?;
    }
    for (snap, add, remove) in &snapshot_changes {
        ec2.modify_volume_permissions(snap, add, remove).await?;
    }
    // Grants after the launch permissions: an account is granted the key of an AMI it may
    // launch, and a grant is retired once the AMI is no longer shared with it.
    for change in &grant_changes {
        match change {
            GrantChange::Create { key, account } => {
                keys.create_grant(key, account, &plan::grant_name(&policy.name, account))
                    .await?;
            }
            GrantChange::Retire { key, grant_id } => keys.retire_grant(key, grant_id).await?,
        }
    }
    r.outcome = ShareOutcome::Changed;
    if make_public {
        if let Err(e) = ec2
            .modify_launch_permissions(&image.id, &[Grant::Public], &[])
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
