//! EBS snapshots, and what age-out reads of them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Tags;

/// An EBS snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// `snap-...`.
    pub id: String,
    pub owner_id: String,
    /// CreateImage or CopyImage made it for an AMI (its description says so, see
    /// [`Snapshot::made_by_ec2_for_an_image`]). Only this is kept of the description: at
    /// 100,000 snapshots the text would cost megabytes for one bit.
    pub for_an_image: bool,
    /// StartTime.
    pub started: Option<DateTime<Utc>>,
    pub tags: Tags,
    /// Its size, as DescribeSnapshots gives it.
    pub size: SnapshotSize,
}

/// How big a snapshot is: `FullSnapshotSizeInBytes` where EC2 returns it, else the size of the
/// volume it was taken from (`VolumeSize`, GiB), which bounds it from above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotSize {
    /// FullSnapshotSizeInBytes.
    pub full_bytes: Option<u64>,
    /// VolumeSize, in GiB.
    pub volume_gib: Option<u32>,
}

impl SnapshotSize {
    /// Bytes, and whether they are measured (`FullSnapshotSizeInBytes`) rather than estimated
    /// from the volume size; none when EC2 gave neither.
    pub fn bytes(&self) -> Option<(u64, bool)> {
        match (self.full_bytes, self.volume_gib) {
            (Some(b), _) => Some((b, true)),
            (None, Some(g)) => Some((u64::from(g) << 30, false)),
            (None, None) => None,
        }
    }
}

impl Snapshot {
    /// Whether CreateImage or CopyImage made the snapshot for an AMI.
    pub fn made_for_an_image(&self) -> bool {
        self.for_an_image
    }

    /// Whether a snapshot's description is the one CreateImage or CopyImage gives the
    /// snapshots it makes for an AMI (`Created by CreateImage(i-...) for ami-...`,
    /// `Copied for DestinationAmi ami-...`).
    pub fn made_by_ec2_for_an_image(description: &str) -> bool {
        description.starts_with("Created by CreateImage(")
            || description.starts_with("Copied for DestinationAmi")
    }
}
