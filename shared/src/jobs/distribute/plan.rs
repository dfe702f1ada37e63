//! The distribution's decisions, pure: which units a sweep queues, which AMI each target gets
//! in a region, how its copy is made and tagged, what its parameters should name, and which of
//! its copies have lost their source.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::FUNCTION;
use crate::domain::ids::{AccountId, Region};
use crate::domain::model::{CopyFound, Image, ImageState};
use crate::domain::policy::{
    render_parameter, CopyDestination, DistributionTarget, LaunchTemplateTarget, Policy,
    PolicyDocument, TemplateDepth,
};
use crate::domain::recycle_bin::BinImage;
use crate::domain::tags;
use crate::jobs::promotion::sweep_choice;

/// The regions a policy's AMIs are in: the home region and its copy regions.
pub fn regions(document: &PolicyDocument, home: &Region) -> Vec<Region> {
    let mut out = BTreeSet::from([home.clone()]);
    for policy in document.policies.iter().filter(|p| p.distribute.is_some()) {
        if let Some(copy) = &policy.copy {
            out.extend(copy.regions.keys().cloned());
        }
    }
    out.into_iter().collect()
}

/// One account a sweep serves, and the OU it was found in (none when listed by id).
pub type Target = (AccountId, Option<String>);

/// The units a sweep queues: every target account of the document, by id or as a member of a
/// target OU (`members`: each OU's ARN with its accounts), in every region. A unit carries the
/// OU its account is in (the first, for an account in two), also for an account a policy lists
/// by id: another policy may reach it through the OU.
pub fn units(
    document: &PolicyDocument,
    regions: &[Region],
    members: &BTreeMap<String, Vec<AccountId>>,
) -> Vec<(Target, Region)> {
    let mut targets: Vec<Target> = document
        .target_accounts()
        .into_iter()
        .map(|a| (a, None))
        .collect();
    for (ou, accounts) in members {
        for a in accounts {
            match targets.iter_mut().find(|(t, _)| t == a) {
                Some((_, through)) => {
                    through.get_or_insert_with(|| ou.clone());
                }
                None => targets.push((a.clone(), Some(ou.clone()))),
            }
        }
    }
    targets
        .into_iter()
        .flat_map(|t| regions.iter().map(move |r| (t.clone(), r.clone())))
        .collect()
}

/// One AMI a target account gets in a region: a family's newest promotable AMI of a policy.
#[derive(Debug, Clone)]
pub struct Want<'a> {
    pub policy: &'a Policy,
    pub family: String,
    /// The source AMI (the account's own, in this region: the original or its regional copy).
    pub image: &'a Image,
    /// What the target gets.
    pub target: &'a DistributionTarget,
}

/// What `account` gets in the region whose AMIs are `images`: for each policy that distributes
/// to it, each family's AMI as publishing would choose it (the newest promotable, or a
/// rollback's pin), never one the gate holds, deprecated or recalled.
pub fn wanted<'a>(
    document: &'a PolicyDocument,
    images: &'a [Image],
    (account, ou): (&AccountId, Option<&str>),
    now: DateTime<Utc>,
) -> Vec<Want<'a>> {
    let mut out = Vec::new();
    for policy in &document.policies {
        let Some(target) = policy
            .distribute
            .as_ref()
            .and_then(|d| d.target(account, ou))
        else {
            continue;
        };
        let mut families: BTreeMap<String, Vec<&'a Image>> = BTreeMap::new();
        for image in images.iter().filter(|i| i.managed_by(policy)) {
            families
                .entry(image.family(&policy.family_by))
                .or_default()
                .push(image);
        }
        for (family, members) in families {
            if let Some((image, _)) = sweep_choice(&members, policy, now) {
                out.push(Want {
                    policy,
                    family,
                    image,
                    target,
                });
            }
        }
    }
    out
}

/// How the target's copy is made: encrypted, with the target's key (its default EBS key when
/// the policy names none).
pub fn copy_how(target: &DistributionTarget) -> CopyDestination {
    CopyDestination {
        encrypted: true,
        kms_key_id: target.copy.as_ref().and_then(|c| c.kms_key_id.clone()),
    }
}

/// The tags of a target's copy and its snapshots: the tool, the lineage (source AMI, region,
/// account, policy, when the source was made) and, after a failure, the attempt. No policy tag:
/// the target's own rules, not the stack's, decide what else happens to its copy.
pub fn copy_tags(
    want: &Want<'_>,
    region: &Region,
    attempt: u32,
    seal: Option<&str>,
) -> BTreeMap<String, String> {
    let image = want.image;
    let mut out = BTreeMap::from([
        (tags::CREATED_BY.to_string(), FUNCTION.to_string()),
        (tags::SOURCE_IMAGE.to_string(), image.id.clone()),
        (tags::SOURCE_REGION.to_string(), region.to_string()),
        (tags::SOURCE_ACCOUNT.to_string(), image.owner_id.clone()),
        (tags::SOURCE_POLICY.to_string(), want.policy.name.clone()),
        ("Name".to_string(), image.name.clone()),
    ]);
    if let Some(created) = image.created {
        out.insert(
            tags::SOURCE_CREATED.into(),
            created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    if attempt > 1 {
        out.insert(tags::COPY_ATTEMPT.into(), attempt.to_string());
    }
    if let Some(seal) = seal {
        out.insert(tags::DISTRIBUTED_SEAL.into(), seal.to_string());
    }
    out
}

/// The SSM parameter names a want writes in its region.
pub fn parameters(want: &Want<'_>, region: &Region) -> Vec<String> {
    want.target
        .ssm_parameters
        .iter()
        .map(|t| render_parameter(t, &want.policy.name, &want.family, region.as_str()))
        .collect()
}

/// Where a launch template entry of a target sends its AMI.
#[derive(Debug, Clone)]
pub enum TemplateFor<'a> {
    /// The AMI of `wants[index]`.
    Want(usize, &'a LaunchTemplateTarget),
    /// No family named, and the policy gives the account several here: refused, with them.
    Ambiguous(usize, &'a LaunchTemplateTarget, Vec<String>),
    /// Bound to two AMIs (two policies, or families, name it): refused, with them (`policy/family`);
    /// writing both would move the template between them at every sweep.
    Clash(usize, &'a LaunchTemplateTarget, Vec<String>),
}

impl<'a> TemplateFor<'a> {
    /// The want it is bound to (for a refusal: the first of its policy's) and the entry.
    pub fn at(&self) -> (usize, &'a LaunchTemplateTarget) {
        match self {
            TemplateFor::Want(i, t)
            | TemplateFor::Ambiguous(i, t, _)
            | TemplateFor::Clash(i, t, _) => (*i, *t),
        }
    }

    /// Why the entry gets no version, when it is refused.
    pub fn refusal(&self) -> Option<String> {
        match self {
            TemplateFor::Want(..) => None,
            TemplateFor::Ambiguous(_, _, families) => Some(format!(
                "the policy gives the account {} families here ({}): name the family this template gets",
                families.len(),
                families.join(", ")
            )),
            TemplateFor::Clash(_, _, names) => Some(format!(
                "{} name this template with different AMIs: name it in one target only",
                names.join(" and ")
            )),
        }
    }
}

/// Each launch template entry of the targets the wants come from, bound to the want of the
/// family it names, or of the policy's only family in the region (an entry whose family has no
/// AMI here gets nothing); `named` is the AMI each want's targets name in the account (its copy,
/// none while pending, or the shared AMI).
pub fn templates<'a>(wants: &[Want<'a>], named: &[Option<String>]) -> Vec<TemplateFor<'a>> {
    let mut out = Vec::new();
    for (first, want) in wants.iter().enumerate() {
        let same = |w: &Want<'a>| std::ptr::eq(w.target, want.target);
        if wants[..first].iter().any(same) {
            continue;
        }
        let mine: Vec<usize> = (0..wants.len()).filter(|&i| same(&wants[i])).collect();
        for entry in &want.target.launch_templates {
            let bound = match &entry.family {
                Some(f) => mine.iter().find(|&&i| &wants[i].family == f).copied(),
                None if mine.len() == 1 => Some(first),
                None => {
                    let families = mine.iter().map(|&i| wants[i].family.clone()).collect();
                    out.push(TemplateFor::Ambiguous(first, entry, families));
                    continue;
                }
            };
            if let Some(i) = bound {
                out.push(TemplateFor::Want(i, entry));
            }
        }
    }
    clashes(wants, named, out)
}

/// The bindings with each template bound to two different AMIs made a [`TemplateFor::Clash`].
fn clashes<'a>(
    wants: &[Want<'a>],
    named: &[Option<String>],
    bound: Vec<TemplateFor<'a>>,
) -> Vec<TemplateFor<'a>> {
    // What a want writes: its copy or the shared AMI (a pending copy is another AMI still).
    let ami = |i: usize| {
        named
            .get(i)
            .cloned()
            .flatten()
            .unwrap_or_else(|| format!("the copy of {}", wants[i].image.id))
    };
    let images_of = |name: &str| -> Vec<usize> {
        bound
            .iter()
            .filter_map(|t| match t {
                TemplateFor::Want(i, e) if e.template == name => Some(*i),
                _ => None,
            })
            .collect()
    };
    bound
        .iter()
        .map(|t| match t {
            TemplateFor::Want(i, e) => {
                let all = images_of(&e.template);
                if all.iter().all(|j| ami(*j) == ami(*i)) {
                    return t.clone();
                }
                let names = all
                    .iter()
                    .map(|j| format!("{}/{}", wants[*j].policy.name, wants[*j].family))
                    .collect();
                TemplateFor::Clash(*i, e, names)
            }
            other => other.clone(),
        })
        .collect()
}

/// Whether `copy` is, by EC2's own record (`SourceImageId`, `SourceImageRegion`, which no
/// caller sets), a copy of `source_id` in `region`, and says so in its lineage tag. A tag alone
/// proves nothing: anyone in the target account can write it.
pub fn copies(copy: &Image, source_id: &str, region: &Region) -> bool {
    copy.tags.get(tags::SOURCE_IMAGE).map(String::as_str) == Some(source_id)
        && copy
            .source
            .as_ref()
            .is_some_and(|s| s.image_id == source_id && s.region == region.as_str())
}

/// The target's copies of `source_id`, as the copy step reads them (a disabled copy counts as
/// existing: it still holds the name).
pub fn copies_of(target_images: &[Image], source_id: &str, region: &Region) -> Vec<CopyFound> {
    target_images
        .iter()
        .filter(|i| copies(i, source_id, region))
        .map(|i| CopyFound {
            image_id: i.id.clone(),
            state: i.state.clone(),
            state_reason: None,
            attempt: i
                .tags
                .get(tags::COPY_ATTEMPT)
                .and_then(|a| a.parse().ok())
                .unwrap_or(1),
        })
        .collect()
}

/// A copy whose source left circulation, with what becomes of it and why.
pub type Orphan<'a> = (&'a Image, Retirement, String);

/// What becomes of a copy whose source left circulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retirement {
    /// The source is deregistered: the copy is deregistered with its snapshots.
    Deregister,
    /// The source is recalled: the copy is deprecated now (reversible; it leaves the lists
    /// consumers pick from) and deregistered once its source is.
    Deprecate,
}

/// The target's copies that this stack made (`created-by` the distribute function,
/// `source-account` one of `sources`' owners, and EC2's own record of their source) whose
/// source has left circulation, with what becomes of each and why; never a copy of an AMI the
/// target still gets (`keep`). A disabled source keeps its copies: disabling is a stage of
/// age-out that can be undone; the copy follows when the source is deregistered.
pub fn orphaned<'a>(
    target_images: &'a [Image],
    sources: &[Image],
    keep: &BTreeSet<String>,
    region: &Region,
    now: DateTime<Utc>,
) -> Vec<Orphan<'a>> {
    let owners: BTreeSet<&str> = sources.iter().map(|i| i.owner_id.as_str()).collect();
    target_images
        .iter()
        .filter(|i| i.tags.get(tags::CREATED_BY).map(String::as_str) == Some(FUNCTION))
        .filter(|i| {
            i.tags
                .get(tags::SOURCE_ACCOUNT)
                .is_some_and(|a| owners.contains(a.as_str()))
        })
        .filter(|i| i.state != ImageState::Pending)
        .filter_map(|copy| {
            let source_id = copy.tags.get(tags::SOURCE_IMAGE)?;
            if keep.contains(source_id) || !copies(copy, source_id, region) {
                return None;
            }
            match sources.iter().find(|s| &s.id == source_id) {
                None => Some((
                    copy,
                    Retirement::Deregister,
                    format!("its source {source_id} is deregistered"),
                )),
                Some(s) if s.recall_proven() && copy.deprecation_time.is_none_or(|t| t > now) => {
                    Some((
                        copy,
                        Retirement::Deprecate,
                        format!("its source {source_id} is recalled"),
                    ))
                }
                Some(_) => None,
            }
        })
        .collect()
}

/// The orphans once the source region's Recycle Bin is known (`binned`: the deregistered
/// sources it still holds): a copy whose source can still be restored is deprecated, not
/// deregistered (deregistering it could not be undone with the source), and left alone when it
/// already is; it is deregistered once the bin releases its source.
pub fn after_bin<'a>(
    orphans: Vec<Orphan<'a>>,
    binned: &[BinImage],
    now: DateTime<Utc>,
) -> Vec<Orphan<'a>> {
    orphans
        .into_iter()
        .filter_map(|(copy, how, why)| {
            let source = copy.tags.get(tags::SOURCE_IMAGE)?;
            let held = binned.iter().find(|b| &b.image_id == source);
            let Some(held) = held.filter(|_| how == Retirement::Deregister) else {
                return Some((copy, how, why));
            };
            if copy.deprecation_time.is_some_and(|t| t <= now) {
                return None;
            }
            let until = held
                .exit
                .map_or_else(|| "its retention ends".to_string(), |t| t.to_rfc3339());
            let why = format!("{why}, but the Recycle Bin holds it until {until} (it can be restored; the copy is deregistered once the bin releases it)");
            Some((copy, Retirement::Deprecate, why))
        })
        .collect()
}

/// How deep launch template versions protect a copy in a target account: the deepest that a
/// distributing policy's `retain.in_use.launch_template_versions` asks for (every version for a
/// policy without `retain`). One depth for the whole account: a copy's `source-policy` tag,
/// which the account can rewrite, decides nothing. `$Default` always counts besides.
pub fn in_use_depth(document: &PolicyDocument) -> TemplateDepth {
    document
        .policies
        .iter()
        .filter(|p| p.distribute.is_some())
        .map(|p| {
            p.retain
                .as_ref()
                .map_or(TemplateDepth::All, |r| r.in_use.launch_template_versions)
        })
        .fold(TemplateDepth::DefaultAndLatest, TemplateDepth::deeper)
}
