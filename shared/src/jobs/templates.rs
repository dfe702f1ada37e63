//! What publishing a launch template decides, in this account (publish) or a target account
//! (distribute): which version consumers launch, whether a consumer holds the default, which
//! version a new one derives from, and the client token that makes a re-delivery idempotent.

use crate::domain::tags;
use crate::error::Result;
use crate::ports::{LaunchTemplateState, LaunchTemplates};

/// What consumers launch: the default when the tool sets it, else `$Latest`. A new version
/// derives from it, so a consumer's staged `$Latest` is never promoted.
pub fn current(state: &LaunchTemplateState, set_default: bool) -> Option<&str> {
    if set_default {
        state.default_image.as_deref()
    } else {
        state.latest_image.as_deref()
    }
}

/// The version a new version derives from (see [`current`]).
pub fn source_version(state: &LaunchTemplateState, set_default: bool) -> i64 {
    if set_default {
        state.default_version
    } else {
        state.latest_version
    }
}

/// The SSM parameter the template names its AMI through (`resolve:ssm:...`), if it does: the
/// parameter is what to publish to, and the template is left alone.
pub fn through_parameter(current: Option<&str>) -> Option<&str> {
    current.filter(|i| i.starts_with("resolve:ssm:"))
}

/// Why the template is left alone, when a consumer moved its default back to an older version
/// than the one the tool set last (their own rollback): theirs until they hand it back. A
/// newer default (their own new configuration, or the tool's whose tag was not written) is what
/// consumers run: the tool derives from it.
pub fn held_by_consumer(state: &LaunchTemplateState, set_default: bool) -> Option<String> {
    let recorded = state
        .recorded_default
        .filter(|r| set_default && state.default_version < *r)?;
    Some(format!(
        "its default is version {}, older than version {recorded} the tool set last (a rollback by hand): left as it is, and no version is made, until the default is {recorded} or newer again, or the tag {} is removed",
        state.default_version,
        tags::DEFAULT_VERSION
    ))
}

/// CreateLaunchTemplateVersion's client token (at most 128 ASCII characters): the template,
/// then a digest of the version it derives from, the template's `$Latest` now, the AMI and the
/// version's description. A re-delivered event, or a duplicate delivery running at once, finds
/// the same template and makes no second version. Any change gives another token, never the
/// same one with other parameters (which EC2 refuses, `IdempotentParameterMismatch`, for as
/// long as it remembers the token): a run that stopped after it made a version, before it set
/// the default, finds `$Latest` moved and makes one more version of the same content, which
/// then becomes the default. Nothing written in the template (a version's description, which
/// anyone who may make a version can write) is trusted to say the stack made a version.
pub fn token(
    state: &LaunchTemplateState,
    from_version: i64,
    image_id: &str,
    description: &str,
) -> String {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for part in [
        from_version.to_string().as_str(),
        &state.latest_version.to_string(),
        image_id,
        description,
    ] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let hex = hex::encode(digest.finalize());
    format!("{}-{}", state.template_id, &hex[..40])
}

/// Makes the version that names `image_id` (derived from [`source_version`], with
/// `description` cut to EC2's 255 characters and the [`token`]), and makes it the default when
/// asked; its number.
pub async fn write_version<E: LaunchTemplates>(
    ec2: &E,
    state: &LaunchTemplateState,
    set_default: bool,
    image_id: &str,
    description: &str,
) -> Result<i64> {
    let source = source_version(state, set_default);
    let description: String = description.chars().take(255).collect();
    let version = ec2
        .new_template_version(
            &state.template_id,
            source,
            image_id,
            &description,
            &token(state, source, image_id, &description),
        )
        .await?;
    if set_default {
        ec2.set_default_version(&state.template_id, version).await?;
    }
    Ok(version)
}
