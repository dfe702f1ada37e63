//! What a run saved: the snapshot storage its deletions freed (a dry run: would free), per
//! family and in total, and the estimated monthly saving at a price per GB-month.

use std::collections::BTreeMap;

use serde::Serialize;

use super::execute::{ActionReport, Outcome};
use super::plan::ActionKind;

/// The storage a run freed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Savings {
    /// Bytes of snapshot storage freed (in a dry run: that it would free).
    pub bytes: u64,
    /// The same in GiB.
    pub gib: f64,
    /// Bytes by family (`(orphans)` for snapshots no AMI used).
    pub by_family: BTreeMap<String, u64>,
    /// Some sizes are the volume's size, because EC2 gave no `FullSnapshotSizeInBytes`: the
    /// figure is then an upper bound.
    pub estimated: bool,
    /// Deleted snapshots whose size EC2 did not give (not counted).
    pub size_unknown: usize,
    /// The estimated saving per month, in USD, at `price_per_gb_month`.
    pub monthly_usd: f64,
    /// USD per GB-month of snapshot storage used for `monthly_usd`.
    pub price_per_gb_month: f64,
}

/// The savings of a run's actions: each snapshot deleted (by DeleteSnapshot or with its AMI),
/// or in a dry run each one planned.
pub fn savings(actions: &[ActionReport], dry_run: bool, price_per_gb_month: f64) -> Savings {
    let mut out = Savings {
        price_per_gb_month,
        ..Savings::default()
    };
    for a in actions
        .iter()
        .filter(|a| a.action.kind == ActionKind::DeleteSnapshot)
    {
        let counted = if dry_run {
            a.outcome == Outcome::Planned
        } else {
            matches!(a.outcome, Outcome::Done | Outcome::DeletedWithImage)
        };
        if !counted {
            continue;
        }
        let Some(bytes) = a.action.bytes else {
            out.size_unknown += 1;
            continue;
        };
        out.bytes += bytes;
        out.estimated |= a.action.bytes_estimated;
        let family = a
            .action
            .family
            .clone()
            .unwrap_or_else(|| "(orphans)".into());
        *out.by_family.entry(family).or_insert(0) += bytes;
    }
    out.gib = out.bytes as f64 / f64::from(1u32 << 30);
    // Billing counts GB-months in GiB (EBS pricing: "GB-month" of 2^30 bytes).
    out.monthly_usd = (out.gib * price_per_gb_month * 100.0).round() / 100.0;
    out
}
