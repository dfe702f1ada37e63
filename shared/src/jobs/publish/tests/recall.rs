//! A recall: held at the gate, never tested, and what names a recalled AMI rolls back.

use super::*;

#[test]
fn a_destination_naming_a_recalled_ami_rolls_back_and_a_family_with_nothing_else_needs_a_person() {
    let d = doc(PUBLISH);
    let images = vec![
        ami("ami-0000000000000000a", "web", 0),
        recalled(ami("ami-0000000000000000b", "web", 10), true),
        recalled(ami("ami-0000000000000000c", "db", 10), true),
    ];
    let (work, lines) = targets_at(&images, &d, at(20));
    let param = work
        .iter()
        .find(|t| matches!(t.destination, Destination::Parameter(_)) && t.family == "web")
        .expect("web's parameter");
    assert_eq!(
        param.image.id, "ami-0000000000000000a",
        "the newest outside the recall"
    );
    assert_eq!(
        choose(param, Some("ami-0000000000000000b"), &images),
        Choice::Publish {
            previous: Some("ami-0000000000000000b".into())
        },
        "rolled back from the recalled AMI, though it is newer"
    );
    let unproven = vec![
        images[0].clone(),
        recalled(ami("ami-0000000000000000b", "web", 10), false),
    ];
    assert!(
        matches!(
            choose(param, Some("ami-0000000000000000b"), &unproven),
            Choice::Frozen(_)
        ),
        "a mark no seal proves holds the AMI at the gate, and moves no consumer back: a person decides"
    );

    let db = lines
        .iter()
        .find(|l| l.family.as_deref() == Some("db"))
        .expect("a line for db");
    assert_eq!(db.outcome, PublishOutcome::Refused);
    assert!(db
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("needs a person") || r.contains("a person")));
    assert!(
        work.iter().all(|t| t.family != "db"),
        "db's destinations keep what they name"
    );
}

#[test]
fn a_recall_falls_back_to_a_deprecated_ami_outside_it_and_only_to_replace_the_recalled_one() {
    let d = doc(PUBLISH);
    // age-out deprecated a when b replaced it; then b is recalled.
    let mut previous = ami("ami-0000000000000000a", "web", 0);
    previous.deprecation_time = Some(at(5));
    let images = vec![
        previous,
        recalled(ami("ami-0000000000000000b", "web", 10), true),
    ];
    let (work, lines) = targets_at(&images, &d, at(20));
    assert!(
        lines.iter().all(|l| l.outcome != PublishOutcome::Refused),
        "{lines:?}"
    );
    let param = work
        .iter()
        .find(|t| matches!(t.destination, Destination::Parameter(_)))
        .expect("web's parameter");
    assert_eq!(param.image.id, "ami-0000000000000000a");
    assert_eq!(
        choose(param, Some("ami-0000000000000000b"), &images),
        Choice::Publish {
            previous: Some("ami-0000000000000000b".into())
        },
        "the way back from the recall"
    );
    assert!(
        matches!(choose(param, None, &images), Choice::Keep(_)),
        "a deprecated AMI is never published anywhere else"
    );
}

#[test]
fn a_recalled_ami_is_never_launch_tested_even_as_its_familys_newest() {
    let d = doc(VALIDATE);
    let images = vec![
        ami("ami-0000000000000000a", "web", 0),
        recalled(ami("ami-0000000000000000b", "web", 10), true),
        recalled(ami("ami-0000000000000000d", "db", 5), false),
    ];
    let steps = plan(&images, &[], &HashMap::new(), &d, None, None, at(20));
    let launched = launched(&steps);
    assert!(
        !launched.contains(&"ami-0000000000000000b")
            && !launched.contains(&"ami-0000000000000000d"),
        "a recalled AMI, proven or not, is never tested: {launched:?}"
    );
    assert_eq!(
        launched,
        ["ami-0000000000000000a"],
        "the family's newest outside the recall is"
    );
}
