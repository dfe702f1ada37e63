//! The recall's tree: every image of the account descended from the recalled one, in every
//! region the deployment manages, to any depth, with how each descends from its parent.
//!
//! An image's parent is what EC2 records (`SourceImageId`/`SourceImageRegion`, set by CopyImage
//! and CreateImage: EC2 API reference, Image): in another region it is a copy, in the same
//! region it was created from an instance launched from the parent. An image EC2 records no
//! source for (made before EC2 kept lineage) follows its lineage tags, the copy job's
//! `ami-automation:source-image`/`source-region`, and says so (`lineage_tags`): tags are a claim
//! anyone who may tag can write or remove, so such a line is for a person to confirm.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::domain::ids::Region;
use crate::domain::model::Image;
use crate::domain::tags;

/// How an image of the tree descends from its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Descent {
    /// The recalled image itself.
    Recalled,
    /// A copy of its parent in another region (EC2's record).
    Copy,
    /// Created from an instance launched from its parent (EC2's record).
    CreatedFrom,
    /// Its lineage tags name its parent; EC2 records no source.
    LineageTags,
}

/// One image of the tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub image_id: String,
    pub region: Region,
    pub name: String,
    /// Generations below the recalled image (0 for itself).
    pub depth: u32,
    pub descent: Descent,
    /// Its parent in the tree (absent for the recalled image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Some link between it and the recalled image is only claimed by lineage tags: a recall
    /// does not act on it until a person confirms (by recalling it by its own id).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub by_tags: bool,
}

/// An image and the region it is in.
pub type Located = (Region, Image);

/// The tree under `root` (`image_id`), the recalled image first when it is one of `images`,
/// then each generation in order of region and id; an image is listed once even if it
/// descends twice. A root the account does not own (a public base image, another account's)
/// is no line of its own: the tree is the account's images made from it, in any region. Empty
/// when nothing descends from it and it is not one of `images`.
pub fn tree(root: &str, images: &[Located]) -> Vec<Member> {
    let children = children_by_parent(images);
    let mut out = Vec::new();
    // Each image of a generation, with whether its link to the root is only claimed by tags.
    let mut generation: Vec<(Key, bool)> = match images.iter().find(|(_, i)| i.id == root) {
        Some((region, top)) => {
            out.push(member(region, top, 0, Descent::Recalled, None));
            vec![((root.to_string(), region.to_string()), false)]
        }
        None => children
            .keys()
            .filter(|(id, _)| id == root)
            .map(|k| (k.clone(), false))
            .collect(),
    };
    let mut seen: BTreeSet<Key> = generation.iter().map(|(k, _)| k.clone()).collect();

    for depth in 1.. {
        let mut next = Vec::new();
        for (parent, parent_by_tags) in &generation {
            for &(index, descent) in children.get(parent).into_iter().flatten() {
                let (region, image) = &images[index];
                if seen.insert((image.id.clone(), region.to_string())) {
                    let mut m = member(region, image, depth, descent, Some(&parent.0));
                    m.by_tags = *parent_by_tags || descent == Descent::LineageTags;
                    next.push(((image.id.clone(), region.to_string()), m.by_tags));
                    out.push(m);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        generation = next;
    }
    out
}

/// `(image id, region)`.
type Key = (String, String);

/// Each image's index under the parent it names, with how it descends.
fn children_by_parent(images: &[Located]) -> BTreeMap<(String, String), Vec<(usize, Descent)>> {
    let mut out: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for (index, (region, image)) in images.iter().enumerate() {
        if let Some((parent, descent)) = parent_of(region, image) {
            out.entry(parent).or_default().push((index, descent));
        }
    }
    for list in out.values_mut() {
        list.sort_by_key(|&(i, _)| (images[i].0.to_string(), images[i].1.id.clone()));
    }
    out
}

/// The parent an image names (`(id, region)`), by EC2's record or else its lineage tags.
fn parent_of(region: &Region, image: &Image) -> Option<((String, String), Descent)> {
    if let Some(source) = image.source.as_deref() {
        let descent = if source.region == region.as_str() {
            Descent::CreatedFrom
        } else {
            Descent::Copy
        };
        return Some(((source.image_id.clone(), source.region.clone()), descent));
    }
    let parent = image.tags.get(tags::SOURCE_IMAGE)?;
    let parent_region = image.tags.get(tags::SOURCE_REGION)?;
    Some((
        (parent.clone(), parent_region.clone()),
        Descent::LineageTags,
    ))
}

fn member(
    region: &Region,
    image: &Image,
    depth: u32,
    descent: Descent,
    parent: Option<&str>,
) -> Member {
    Member {
        image_id: image.id.clone(),
        region: region.clone(),
        name: image.name.clone(),
        depth,
        descent,
        parent: parent.map(str::to_string),
        by_tags: false,
    }
}
