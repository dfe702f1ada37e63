//! A request to register an AMI from an EBS snapshot, and the root volumes EC2 boots from.

use serde::{Deserialize, Serialize};

use crate::domain::policy::{Architecture, VirtualizationType};
use crate::error::{Error, Result};

/// A request to register an AMI from an EBS snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The root volume's snapshot (completed, owned by the account).
    pub snapshot_id: String,
    /// The AMI name (default `{policy}-{snapshot_id}`).
    #[serde(default)]
    pub name: Option<String>,
    /// `x86_64` (default), `arm64` or `i386`.
    #[serde(default = "default_architecture")]
    pub architecture: Architecture,
    /// `legacy-bios`, `uefi` or `uefi-preferred` (default: EC2's).
    #[serde(default)]
    pub boot_mode: Option<BootMode>,
    /// ENA support (default true: current instance types need it).
    #[serde(default = "default_ena_support")]
    pub ena_support: bool,
    /// The root device (default `/dev/xvda`).
    #[serde(default = "default_root_device_name")]
    pub root_device_name: String,
    /// `gp3` (default), `gp2`, `io1`, `io2` or `standard`: the types EC2 boots from (st1 and
    /// sc1 cannot be boot volumes, and are refused).
    #[serde(default)]
    pub volume_type: Option<VolumeType>,
    /// Provisioned IOPS of the root volume: required for io1 and io2, optional for gp3, not
    /// supported by gp2 and standard (EbsBlockDevice).
    #[serde(default)]
    pub iops: Option<u32>,
    /// Delete the root volume when the instance terminates (always set explicitly; default true).
    #[serde(default = "default_delete_on_termination")]
    pub delete_on_termination: bool,
    /// Only `hvm`: paravirtual is refused.
    #[serde(default)]
    pub virtualization_type: Option<VirtualizationType>,
    /// The policy whose build tags the AMI carries.
    pub policy: String,
}

fn default_architecture() -> Architecture {
    Architecture::X86_64
}
fn default_ena_support() -> bool {
    true
}

fn default_delete_on_termination() -> bool {
    true
}
/// The root device when none is given.
pub const DEFAULT_ROOT_DEVICE: &str = "/dev/xvda";

fn default_root_device_name() -> String {
    DEFAULT_ROOT_DEVICE.into()
}

/// Boot modes RegisterImage takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    /// Legacy BIOS.
    LegacyBios,
    /// UEFI.
    Uefi,
    /// UEFI where the instance type supports it.
    UefiPreferred,
}

impl BootMode {
    /// As EC2 spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            BootMode::LegacyBios => "legacy-bios",
            BootMode::Uefi => "uefi",
            BootMode::UefiPreferred => "uefi-preferred",
        }
    }
}

/// EBS volume types for the root volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    /// gp2.
    Gp2,
    /// gp3.
    Gp3,
    /// io1.
    Io1,
    /// io2.
    Io2,
    /// st1.
    St1,
    /// sc1.
    Sc1,
    /// standard.
    Standard,
}

impl VolumeType {
    /// As EC2 spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            VolumeType::Gp2 => "gp2",
            VolumeType::Gp3 => "gp3",
            VolumeType::Io1 => "io1",
            VolumeType::Io2 => "io2",
            VolumeType::St1 => "st1",
            VolumeType::Sc1 => "sc1",
            VolumeType::Standard => "standard",
        }
    }
}

/// Whether EC2 can boot from a root volume of this type with these IOPS (EbsBlockDevice:
/// "Iops ... is required for io1 and io2 volumes ... not supported for gp2, st1, sc1, or
/// standard volumes"; st1 and sc1 "can't be used as boot volumes").
pub fn check_root_volume(volume_type: VolumeType, iops: Option<u32>) -> Result<()> {
    use VolumeType::*;
    match (volume_type, iops) {
        (St1 | Sc1, _) => Err(Error::event(
            "$.register.volume_type",
            format!(
                "`{}` cannot be a boot volume: use gp3 (default), gp2, io1, io2 or standard",
                volume_type.as_str()
            ),
        )),
        (Io1 | Io2, None) => Err(Error::event(
            "$.register.iops",
            format!(
                "required with volume_type `{}`: set the provisioned IOPS (100 or more)",
                volume_type.as_str()
            ),
        )),
        (Gp2 | Standard, Some(_)) => Err(Error::event(
            "$.register.iops",
            format!(
                "not supported with volume_type `{}`: remove it, or use gp3, io1 or io2",
                volume_type.as_str()
            ),
        )),
        (_, Some(n)) if !(100..=256_000).contains(&n) => Err(Error::event(
            "$.register.iops",
            format!("{n}: provisioned IOPS are from 100 to 256000"),
        )),
        _ => Ok(()),
    }
}

impl RegisterRequest {
    /// Checks what EC2 would refuse, and paravirtual (current instance types run only HVM);
    /// the error names the field under `$.register` and the fix. The policy's existence is
    /// the caller's to check (it needs the document).
    pub fn check(&self) -> Result<()> {
        if self.virtualization_type == Some(VirtualizationType::Paravirtual) {
            return Err(Error::event(
                "$.register.virtualization_type",
                "paravirtual AMIs are not built: current instance types run only HVM AMIs; omit the field or set `hvm`",
            ));
        }
        if let Some(name) = &self.name {
            crate::domain::naming::check_image_name(name)
                .map_err(|m| Error::event("$.register.name", m))?;
        }
        if !self.snapshot_id.starts_with("snap-") {
            return Err(Error::event(
                "$.register.snapshot_id",
                format!("`{}` is not a snapshot id (snap-...)", self.snapshot_id),
            ));
        }
        check_root_volume(self.volume_type.unwrap_or(VolumeType::Gp3), self.iops)?;
        let device_ok =
            self.root_device_name.starts_with("/dev/") && self.root_device_name.len() > 5;
        if !device_ok {
            return Err(Error::event(
                "$.register.root_device_name",
                format!(
                    "`{}`: expected a device such as /dev/xvda",
                    self.root_device_name
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_volumes_ec2_boots_from_are_registered() {
        use VolumeType::*;
        let table: [(VolumeType, Option<u32>, Option<&str>); 10] = [
            (Gp3, None, None),
            (Gp3, Some(4000), None),
            (Gp2, None, None),
            (Standard, None, None),
            (Io1, Some(1000), None),
            (Io2, None, Some("$.register.iops")),
            (St1, None, Some("$.register.volume_type")),
            (Sc1, None, Some("$.register.volume_type")),
            (Gp2, Some(100), Some("$.register.iops")),
            (Io2, Some(5), Some("$.register.iops")),
        ];
        for (volume, iops, refused_at) in table {
            let got = check_root_volume(volume, iops);
            match (refused_at, got) {
                (None, Ok(())) => {}
                (Some(path), Err(Error::Event { path: p, .. })) => assert_eq!(p, path),
                (want, got) => panic!("{volume:?} {iops:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}
