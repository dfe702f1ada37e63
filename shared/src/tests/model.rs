//! Test-only constructors of the domain's model (the production code builds these from EC2's
//! answers, never by hand).

use chrono::{DateTime, Utc};

use crate::domain::model::{Image, ImageState, Tags};

impl Image {
    /// An image with only the fields a test needs; the rest are empty.
    pub fn new(id: &str, name: &str, owner_id: &str, created: DateTime<Utc>) -> Self {
        Image {
            id: id.into(),
            name: name.into(),
            owner_id: owner_id.into(),
            created: Some(created),
            state: ImageState::Available,
            tags: Tags::new(),
            snapshot_ids: Vec::new(),
            architecture: Some("x86_64".into()),
            platform: None,
            root_device_type: Some("ebs".into()),
            virtualization_type: Some("hvm".into()),
            public: false,
            has_product_codes: false,
            encrypted: false,
            deprecation_time: None,
            deregistration_protection: false,
            last_launched: None,
            shared: None,
            source: None,
        }
    }
}
