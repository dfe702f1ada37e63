//! A sweep: the target OUs' accounts listed through Organizations, then one sealed unit per
//! target account and region queued (10 per SendMessageBatch call). It does no work in any
//! account; an OU that cannot be listed is a failed line, and the other targets are queued.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::plan;
use super::{Action, DistributeLine, Outcome, Unit};
use crate::domain::ids::{AccountId, Region};
use crate::domain::policy::PolicyDocument;
use crate::domain::seal;
use crate::ports::{Accounts, Cloud, Seal};

/// Units sealed at once (KMS GenerateMac calls in flight): 2,000 units one after another would
/// take the sweep as long as 2,000 round trips to KMS.
const SEALS_AT_ONCE: usize = 8;

/// Lists the target OUs, then queues one sealed unit per (account, region); a line for each.
pub async fn sweep<C: Cloud + Accounts>(
    cloud: &C,
    document: &PolicyDocument,
    regions: &[Region],
    dry_run: bool,
    now: DateTime<Utc>,
) -> Vec<DistributeLine> {
    let (members, mut lines) = members(cloud, document, &regions[..regions.len().min(1)]).await;
    let units = plan::units(document, regions, &members);
    lines.extend(queue(cloud, units, dry_run, now).await);
    lines
}

/// Each target OU's accounts; a failed line (in the first region) for an OU that could not be
/// listed.
async fn members<C: Accounts>(
    cloud: &C,
    document: &PolicyDocument,
    first: &[Region],
) -> (BTreeMap<String, Vec<AccountId>>, Vec<DistributeLine>) {
    let mut found = BTreeMap::new();
    let mut lines = Vec::new();
    for ou in document.target_units() {
        match cloud.accounts_in(ou.id()).await {
            Ok(accounts) => {
                found.insert(ou.to_string(), accounts);
            }
            Err(e) => {
                if let Some(region) = first.first() {
                    let line = DistributeLine::of_unit(ou.as_str(), region);
                    let why = format!(
                        "the OU's accounts could not be listed (ListAccountsForParent): {e}"
                    );
                    lines.push(line.with(Outcome::Failed, why));
                }
            }
        }
    }
    (found, lines)
}

async fn queue<C: Cloud + Accounts>(
    cloud: &C,
    units: Vec<(plan::Target, Region)>,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Vec<DistributeLine> {
    let Some(sealer) = cloud.sealer() else {
        return units
            .iter()
            .map(|((a, _), r)| {
                DistributeLine::new(a, r, Action::Queue).with(
                    Outcome::Refused,
                    "the deployment names no signing key (AMI_SIGNING_KEY_ARN): a unit the stack cannot seal is never queued".to_string(),
                )
            })
            .collect();
    };
    let expires = now + seal::UNIT_LIFETIME;
    let sealed: Vec<_> = futures::stream::iter(units)
        .map(|((account, ou), region)| {
            let message = seal::unit(
                account.as_str(),
                region.as_str(),
                ou.as_deref().unwrap_or_default(),
                dry_run,
                expires,
            );
            let sealer = &sealer;
            async move { (account, ou, region, sealer.seal(message).await) }
        })
        .buffered(SEALS_AT_ONCE)
        .collect()
        .await;
    let mut bodies = Vec::new();
    let mut lines = Vec::new();
    for (account, ou, region, sealed) in sealed {
        let mut line = DistributeLine::new(&account, &region, Action::Queue);
        line.organizational_unit = ou.clone();
        match sealed {
            Ok(seal) => {
                let unit = Unit {
                    account,
                    region,
                    organizational_unit: ou,
                    dry_run,
                    expires,
                    seal,
                };
                bodies.push(serde_json::to_string(&unit).unwrap_or_default());
                lines.push(line.with(Outcome::Queued, None));
            }
            Err(e) => lines.push(line.with(Outcome::Failed, format!("not sealed: {e}"))),
        }
    }
    match cloud.queue_units(bodies.clone()).await {
        Ok(refused) => mark_refused(&mut lines, &bodies, &refused),
        Err(e) => {
            for l in lines.iter_mut().filter(|l| l.outcome == Outcome::Queued) {
                l.outcome = Outcome::Failed;
                l.reason = Some(format!("not queued: {e}"));
            }
        }
    }
    lines
}

fn mark_refused(lines: &mut [DistributeLine], bodies: &[String], refused: &[String]) {
    let mut queued = lines.iter_mut().filter(|l| l.outcome == Outcome::Queued);
    for body in bodies {
        let Some(line) = queued.next() else { break };
        if refused.contains(body) {
            line.outcome = Outcome::Failed;
            line.reason = Some("SQS refused the message".into());
        }
    }
}
