//! What the stack proves it made: the promotion gate's evidence, and the launch tests' instances.
//!
//! A `passed` verdict lets share, copy and publish act on an AMI,
//! so it counts only when the stack can prove it wrote it: ami-publish seals each `passed` with
//! the stack's key ([`crate::domain::seal::verdict`], the tag
//! [`crate::domain::tags::VALIDATION_SEAL`]), and a copy carries its source's seal, which holds
//! for the copy only where EC2 records the lineage its tags claim
//! ([`crate::domain::model::Image::verdict_subject`]).
//!
//! Whoever may tag an AMI can write `ami-automation:validation=passed`; nobody outside the stack
//! can write a seal that verifies. A `passed` that is not proven is read as
//! [`crate::domain::tags::UNPROVEN`], which the gate holds with its reason. Fail closed: no key,
//! a seal that does not verify and a seal that cannot be checked all hold.

use futures::StreamExt;

use crate::domain::ids::Region;
use crate::domain::model::Image;
use crate::domain::policy::PolicyDocument;
use crate::domain::{seal, tags};
use crate::error::Result;
use crate::ports::{Cloud, ImageInventory, Seal, TestInstance};

/// Seals checked at once.
const CONCURRENCY: usize = 8;

/// The region's AMIs (every one, as [`ImageInventory::images`] answers), each `passed` verdict
/// under a policy with `validate` kept only when its seal proves the stack wrote it.
pub async fn scan<C: Cloud>(
    cloud: &C,
    document: &PolicyDocument,
    region: &Region,
) -> Result<Vec<Image>> {
    let mut images = cloud.ec2(region).images(None).await?;
    prove(cloud.sealer().as_ref(), document, region, &mut images).await;
    Ok(images)
}

/// Reads every `passed` verdict of a validating policy's AMI that no seal proves as
/// [`tags::UNPROVEN`], and one whose seal KMS could not check as [`tags::UNCHECKED`].
pub async fn prove<S: Seal>(
    sealer: Option<&S>,
    document: &PolicyDocument,
    region: &Region,
    images: &mut [Image],
) {
    let gated: Vec<(usize, &str)> = images
        .iter()
        .enumerate()
        .filter(|(_, i)| i.verdict() == Some(tags::PASSED))
        .filter_map(|(n, i)| {
            let policy = i.policy_in(document).filter(|p| p.validate.is_some())?;
            Some((n, policy.name.as_str()))
        })
        .collect();
    let checked: Vec<(usize, Proof)> = futures::stream::iter(gated)
        .map(|(n, policy)| {
            let image = &images[n];
            async move { (n, proven(sealer, image, policy, region).await) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (n, proof) in checked {
        let read_as = match proof {
            Proof::Proven => continue,
            Proof::Unproven => tags::UNPROVEN,
            Proof::Unchecked => tags::UNCHECKED,
        };
        images[n]
            .tags
            .insert(tags::VALIDATION.into(), read_as.into());
    }
    prove_pins(sealer, region, images).await;
    hold_descendants(region, images);
}

/// An image made in this region from one a proven recall took out of circulation (imaged from
/// an instance launched from it after the recall, or a copy that finished after it) is held as
/// recalled too until the recall, sent again, marks it: read as [`tags::UNPROVEN`], with why.
fn hold_descendants(region: &Region, images: &mut [Image]) {
    let mut held: std::collections::BTreeSet<String> = images
        .iter()
        .filter(|i| i.recall_proven())
        .map(|i| i.id.clone())
        .collect();
    loop {
        let next: Vec<(usize, String)> = images
            .iter()
            .enumerate()
            .filter(|(_, i)| !held.contains(&i.id) && !i.tags.contains_key(tags::RECALLED))
            .filter_map(|(n, i)| {
                let source = i.source.as_deref()?;
                (source.region == region.as_str() && held.contains(&source.image_id))
                    .then(|| (n, source.image_id.clone()))
            })
            .collect();
        if next.is_empty() {
            return;
        }
        for (n, parent) in next {
            let image = &mut images[n];
            held.insert(image.id.clone());
            image
                .tags
                .insert(tags::RECALLED.into(), tags::UNPROVEN.into());
            image.tags.insert(
                tags::RECALL_REASON.into(),
                format!("made from {parent}, which a recall took out of circulation: send the recall again to mark it"),
            );
        }
    }
}

/// Reads every rollback pin no seal proves the stack wrote as [`tags::UNPROVEN`]: it pins
/// nothing (someone else's pin would move consumers back to an older AMI), and a destination
/// that names its AMI is kept as it is, with the reason (a pin from before seals, or one that
/// could not be checked, must not let the AMI rolled back from return either). A recall's mark
/// the same: unproven, it still holds the AMI at the gate, and moves no destination back.
async fn prove_pins<S: Seal>(sealer: Option<&S>, region: &Region, images: &mut [Image]) {
    prove_sealed(
        sealer,
        region,
        images,
        (tags::PINNED_AT, tags::UNPROVEN),
        |image, region, at| Some(seal::pin(&image.id, region, at)),
    )
    .await;
    prove_sealed(
        sealer,
        region,
        images,
        (tags::RECALLED, tags::UNCHECKED),
        |image, region, at| {
            let recall_of = image.tags.get(tags::RECALL_OF)?;
            let set = image.tags.get(tags::RECALL_SET).map_or("", String::as_str);
            Some(seal::recall(&image.id, region, recall_of, set, at))
        },
    )
    .await;
}

/// Reads each `key` tag (`<time> <seal>`) whose seal does not verify over `message` as
/// [`tags::UNPROVEN`], and one KMS could not check as `unchecked`.
async fn prove_sealed<S: Seal>(
    sealer: Option<&S>,
    region: &Region,
    images: &mut [Image],
    (key, unchecked): (&str, &'static str),
    message: impl Fn(&Image, &str, &str) -> Option<Vec<u8>>,
) {
    let marked: Vec<usize> = images
        .iter()
        .enumerate()
        .filter(|(_, i)| i.tags.contains_key(key))
        .map(|(n, _)| n)
        .collect();
    let checked: Vec<(usize, Option<&str>)> = futures::stream::iter(marked)
        .map(|n| {
            let image = &images[n];
            let message = &message;
            async move {
                let Some((at, mac)) = image.tags.get(key).and_then(|v| seal::parse_sealed_tag(v))
                else {
                    return (n, Some(tags::UNPROVEN));
                };
                let (Some(sealer), Some(message)) = (sealer, message(image, region.as_str(), at))
                else {
                    return (n, Some(tags::UNPROVEN));
                };
                match sealer.verify(message, mac).await {
                    Ok(true) => (n, None),
                    Ok(false) => (n, Some(tags::UNPROVEN)),
                    Err(_) => (n, Some(unchecked)),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (n, read_as) in checked {
        if let Some(read_as) = read_as {
            tracing::warn!(image_id = %images[n].id, tag = key, read_as, "a sealed tag no seal of this stack proves");
            images[n].tags.insert(key.into(), read_as.into());
        }
    }
}

/// What a seal proves.
enum Proof {
    /// The stack made it, over this content.
    Proven,
    /// No seal, or one that does not verify.
    Unproven,
    /// KMS could not check it this run.
    Unchecked,
}

/// Whether the image's `passed` carries a seal of the stack's key over its subject.
async fn proven<S: Seal>(
    sealer: Option<&S>,
    image: &Image,
    policy: &str,
    region: &Region,
) -> Proof {
    let Some(sealer) = sealer else {
        return Proof::Unproven;
    };
    let subject = match image.verdict_subject(region.as_str()) {
        Ok(subject) => subject,
        Err(why) => {
            tracing::warn!(image_id = %image.id, reason = %why, "verdict not proven");
            return Proof::Unproven;
        }
    };
    let Some((at, mac)) = image
        .tags
        .get(tags::VALIDATION_SEAL)
        .and_then(|v| seal::parse_sealed_tag(v))
    else {
        return Proof::Unproven;
    };
    let message = seal::verdict(&subject.0, &subject.1, policy, tags::PASSED, at);
    match sealer.verify(message, mac).await {
        Ok(true) => Proof::Proven,
        Ok(false) => Proof::Unproven,
        Err(e) => {
            tracing::warn!(image_id = %image.id, error = %e, "a verdict's seal could not be checked: held");
            Proof::Unchecked
        }
    }
}

/// The `ClientToken` a launch test's RunInstances carries: its attempt and the stack's seal.
pub async fn launch_token<S: Seal>(
    sealer: Option<&S>,
    image_id: &str,
    region: &Region,
    attempt: u32,
) -> Result<String> {
    let Some(sealer) = sealer else {
        return Err(crate::error::Error::Refused(
            "no signing key (AMI_SIGNING_KEY_ARN): a launch test's instance must carry the stack's seal, so none is launched"
                .into(),
        ));
    };
    let sealed = sealer
        .seal(seal::launch(image_id, region.as_str(), attempt))
        .await?;
    Ok(seal::launch_token(attempt, &sealed))
}

/// The client token launch tests had before tokens were sealed: an instance that carries it,
/// launched from the AMI its tag names, was launched by ami-publish before the upgrade (or by
/// someone imitating it, with their own instance). It decides nothing; it is only terminated.
pub fn unsealed_token(image_id: &str) -> String {
    format!("ami-publish-validate-{image_id}")
}

/// The tagged test instances, by what the stack can prove of them.
#[derive(Debug, Default)]
pub struct Instances {
    /// Launched by the stack: the `ClientToken` is its seal over the AMI the instance was
    /// launched from, which its tag names.
    pub ours: Vec<TestInstance>,
    /// Launched with the unsealed token of an earlier release ([`unsealed_token`]): terminated,
    /// never judged.
    pub unsealed: Vec<TestInstance>,
}

/// The test instances the stack launched: those whose `ClientToken` is the stack's seal over the
/// AMI they were launched from, which their tag names. One that is only tagged like a test
/// instance (anyone who may tag can do that) is never terminated and never decides a verdict:
/// it is not the stack's. Fail closed: no key, or a seal that cannot be checked, leaves an
/// instance alone.
pub async fn own_instances<S: Seal>(
    sealer: Option<&S>,
    region: &Region,
    instances: Vec<TestInstance>,
) -> Instances {
    let Some(sealer) = sealer else {
        return Instances::default();
    };
    let mut unsealed = Vec::new();
    let mut sealed = Vec::new();
    for instance in instances {
        let from_its_ami = instance.launched_from.as_deref() == Some(instance.image_id.as_str());
        let token = instance.client_token.as_deref();
        if from_its_ami && token == Some(unsealed_token(&instance.image_id).as_str()) {
            unsealed.push(instance);
        } else if from_its_ami {
            sealed.push(instance);
        } else {
            tracing::warn!(instance = %instance.instance_id, image_id = %instance.image_id, "tagged as a test of an AMI it was not launched from: left alone");
        }
    }
    let checked: Vec<(TestInstance, bool)> = futures::stream::iter(sealed)
        .map(|instance| async move {
            let Some((attempt, token)) = instance
                .client_token
                .as_deref()
                .and_then(seal::parse_launch_token)
                .map(|(a, t)| (a, t.to_string()))
            else {
                return (instance, false);
            };
            let message = seal::launch(&instance.image_id, region.as_str(), attempt);
            let ours = match sealer.verify(message, &token).await {
                Ok(ours) => ours,
                Err(e) => {
                    tracing::warn!(instance = %instance.instance_id, error = %e, "a test instance's token could not be checked: left alone");
                    false
                }
            };
            (instance, ours)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::new();
    for (instance, ours) in checked {
        if ours {
            out.push(instance);
        } else {
            tracing::warn!(instance = %instance.instance_id, image_id = %instance.image_id, "tagged like a test instance, not launched by ami-publish: left alone");
        }
    }
    out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Instances {
        ours: out,
        unsealed,
    }
}
