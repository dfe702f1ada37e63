//! The recall's tree, table-tested over small fleets.

use chrono::{TimeZone, Utc};

use super::tree::{tree, Descent, Located};
use crate::domain::ids::Region;
use crate::domain::model::{Image, SourceImage};
use crate::domain::tags;

const ACCOUNT: &str = "123456789012";

fn region(name: &str) -> Region {
    name.parse().expect("a region")
}

/// An image in `at`, made from `source` (`(id, region)`, as EC2 records it).
fn image(id: &str, at: &str, source: Option<(&str, &str)>) -> Located {
    let mut image = Image::new(
        id,
        id,
        ACCOUNT,
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    );
    image.source = source.map(|(image_id, region)| {
        Box::new(SourceImage {
            image_id: image_id.into(),
            region: region.into(),
        })
    });
    (region(at), image)
}

fn lines(fleet: &[Located], root: (&str, &str)) -> Vec<(String, String, u32, Descent)> {
    tree((root.0, &region(root.1)), fleet)
        .into_iter()
        .map(|m| (m.image_id, m.region.to_string(), m.depth, m.descent))
        .collect()
}

fn line(id: &str, at: &str, depth: u32, descent: Descent) -> (String, String, u32, Descent) {
    (id.into(), at.into(), depth, descent)
}

#[test]
fn the_tree_holds_copies_children_and_their_copies_to_any_depth_and_nothing_else() {
    let fleet = vec![
        image("ami-base", "us-east-1", Some(("ami-amazon", "us-east-1"))),
        image("ami-base-eu", "eu-west-1", Some(("ami-base", "us-east-1"))),
        image("ami-child", "eu-west-1", Some(("ami-base-eu", "eu-west-1"))),
        image(
            "ami-child-us",
            "us-east-1",
            Some(("ami-child", "eu-west-1")),
        ),
        image("ami-other", "us-east-1", Some(("ami-amazon", "us-east-1"))),
        image(
            "ami-other-eu",
            "eu-west-1",
            Some(("ami-other", "us-east-1")),
        ),
    ];

    assert_eq!(
        lines(&fleet, ("ami-base", "us-east-1")),
        vec![
            line("ami-base", "us-east-1", 0, Descent::Recalled),
            line("ami-base-eu", "eu-west-1", 1, Descent::Copy),
            line("ami-child", "eu-west-1", 2, Descent::CreatedFrom),
            line("ami-child-us", "us-east-1", 3, Descent::Copy),
        ],
        "a copy of a child of a copy, and not the unrelated family"
    );
    assert_eq!(
        lines(&fleet, ("ami-child", "eu-west-1")),
        vec![
            line("ami-child", "eu-west-1", 0, Descent::Recalled),
            line("ami-child-us", "us-east-1", 1, Descent::Copy),
        ],
        "a recall reaches down, never up to the parents"
    );
}

#[test]
fn lineage_tags_count_only_where_ec2_records_no_source_and_say_so() {
    let mut tagged = image("ami-old-copy", "eu-west-1", None);
    tagged
        .1
        .tags
        .insert(tags::SOURCE_IMAGE.into(), "ami-base".into());
    tagged
        .1
        .tags
        .insert(tags::SOURCE_REGION.into(), "us-east-1".into());
    let mut forged = image(
        "ami-real-child",
        "us-east-1",
        Some(("ami-other", "us-east-1")),
    );
    forged
        .1
        .tags
        .insert(tags::SOURCE_IMAGE.into(), "ami-base".into());
    forged
        .1
        .tags
        .insert(tags::SOURCE_REGION.into(), "us-east-1".into());
    let fleet = vec![
        image("ami-base", "us-east-1", None),
        image("ami-other", "us-east-1", None),
        tagged,
        forged,
    ];

    assert_eq!(
        lines(&fleet, ("ami-base", "us-east-1")),
        vec![
            line("ami-base", "us-east-1", 0, Descent::Recalled),
            line("ami-old-copy", "eu-west-1", 1, Descent::LineageTags),
        ],
        "EC2's record wins over tags that claim another parent"
    );
}

#[test]
fn an_image_not_in_the_managed_regions_makes_no_tree_and_a_loop_ends() {
    let fleet = vec![
        image("ami-a", "us-east-1", Some(("ami-b", "eu-west-1"))),
        image("ami-b", "eu-west-1", Some(("ami-a", "us-east-1"))),
    ];

    assert!(lines(&fleet, ("ami-missing", "us-east-1")).is_empty());
    assert!(
        lines(&fleet, ("ami-a", "eu-west-1")).is_empty(),
        "the region is part of the name"
    );
    assert_eq!(
        lines(&fleet, ("ami-a", "us-east-1")),
        vec![
            line("ami-a", "us-east-1", 0, Descent::Recalled),
            line("ami-b", "eu-west-1", 1, Descent::Copy),
        ],
        "each image once, even where records loop"
    );
}
