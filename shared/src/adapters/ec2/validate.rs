//! The launch test's calls: RunInstances, DescribeInstances and DescribeInstanceStatus of the
//! test instances, GetConsoleOutput, TerminateInstances, and the verdict's CreateTags.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataOptionsRequest, ResourceType, ShutdownBehavior,
};

use super::convert::{state_name, tag_list, tag_spec, tags_of};
use super::Ec2;
use crate::domain::tags;
use crate::error::Result;
use crate::ports::{LaunchSpec, TestInstance, ValidateImages};

/// DescribeInstanceStatus takes at most 100 `InstanceIds` per call (EC2 API reference).
const STATUS_MAX_IDS: usize = 100;

impl Ec2 {
    /// The AMI's EBS block device mappings, each to be deleted with the instance.
    async fn volumes_of(&self, image_id: &str) -> Result<Vec<BlockDeviceMapping>> {
        let out = self
            .client
            .describe_images()
            .image_ids(image_id)
            .send()
            .await
            .map_err(self.err("DescribeImages"))?;
        let mut devices: Vec<&str> = out
            .images()
            .iter()
            .flat_map(|i| i.block_device_mappings())
            .filter(|m| m.ebs().is_some())
            .filter_map(|m| m.device_name())
            .collect();
        devices.sort_unstable();
        devices.dedup();
        Ok(devices
            .into_iter()
            .map(|device| {
                BlockDeviceMapping::builder()
                    .device_name(device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build()
            })
            .collect())
    }
}

impl ValidateImages for Ec2 {
    async fn test_instances(&self) -> Result<Vec<TestInstance>> {
        let filters = vec![
            Filter::builder()
                .name("tag-key")
                .values(tags::VALIDATES)
                .build(),
            Filter::builder()
                .name(format!("tag:{}", tags::CREATED_BY))
                .values(tags::VALIDATOR)
                .build(),
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(
                    [
                        "pending",
                        "running",
                        "stopping",
                        "stopped",
                        "shutting-down",
                        "terminated",
                    ]
                    .map(String::from)
                    .to_vec(),
                ))
                .build(),
        ];
        let mut found: Vec<TestInstance> = self
            .instances_matching(filters, 1000)
            .await?
            .iter()
            .filter_map(test_instance_of)
            .collect();

        let mut statuses = self.statuses_of_running(&found).await?;
        for instance in &mut found {
            if let Some((system, own)) = statuses.remove(&instance.instance_id) {
                instance.system_status = system;
                instance.instance_status = own;
            }
        }
        Ok(found)
    }

    async fn console_output(&self, instance_id: &str) -> Result<String> {
        // The latest output (Nitro instances), so that a prompt printed late in the boot is
        // seen; instance types without it answer the buffered output instead.
        let latest = self
            .client
            .get_console_output()
            .instance_id(instance_id)
            .latest(true)
            .send()
            .await
            .map_err(self.err("GetConsoleOutput"));
        let out = match latest {
            Err(e)
                if e.code().is_some_and(|c| {
                    c.starts_with("Unsupported")
                        || c == "InvalidParameterValue"
                        || c == "InvalidParameter"
                }) =>
            {
                self.client
                    .get_console_output()
                    .instance_id(instance_id)
                    .send()
                    .await
                    .map_err(self.err("GetConsoleOutput"))?
            }
            other => other?,
        };
        // Base64; none (or undecodable) until EC2 has posted output: "not yet", not an error.
        Ok(out
            .output()
            .and_then(|o| aws_smithy_types::base64::decode(o).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default())
    }

    /// RunInstances of one test instance. Every EBS volume of the AMI is launched with
    /// `DeleteOnTermination=true`: an AMI of a server keeps `false` on the data volumes that
    /// were attached to it, and EC2 applies the AMI's mappings unless the launch overrides them
    /// (EC2 User Guide, "Preserve data when an instance is terminated": the setting of the one
    /// who launches overrides the AMI's), so each test would leave a copy of production data
    /// behind. The mappings are the AMI's own, so a retry sends the same request.
    async fn launch(&self, spec: &LaunchSpec) -> Result<String> {
        let volumes = self.volumes_of(&spec.image_id).await?;
        let profile = spec.instance_profile.as_ref().map(|p| {
            let b = IamInstanceProfileSpecification::builder();
            if p.starts_with("arn:") {
                b.arn(p).build()
            } else {
                b.name(p).build()
            }
        });
        let out = self
            .client
            .run_instances()
            .image_id(&spec.image_id)
            .instance_type(spec.instance_type.as_str().into())
            .min_count(1)
            .max_count(1)
            .subnet_id(&spec.subnet_id)
            .set_security_group_ids(Some(spec.security_group_ids.clone()))
            .set_iam_instance_profile(profile)
            .set_block_device_mappings(Some(volumes))
            .client_token(&spec.client_token)
            // An instance that shuts itself down is gone, not left stopped and billed for storage.
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .build(),
            )
            .tag_specifications(tag_spec(ResourceType::Instance, &spec.tags))
            .tag_specifications(tag_spec(ResourceType::Volume, &spec.tags))
            .send()
            .await
            .map_err(self.err("RunInstances"))?;
        out.instances()
            .iter()
            .find_map(|i| i.instance_id.clone())
            .ok_or_else(|| {
                crate::error::Error::Refused(format!(
                    "RunInstances for {} answered without an instance",
                    spec.image_id
                ))
            })
    }

    /// DescribeInstanceTypes of these types (at most 100 a call, every page).
    async fn architectures(
        &self,
        instance_types: &[String],
    ) -> Result<HashMap<String, Vec<String>>> {
        let mut out = HashMap::new();
        for chunk in instance_types.chunks(100) {
            let mut token = None;
            loop {
                let page = self
                    .client
                    .describe_instance_types()
                    .set_instance_types(Some(chunk.iter().map(|t| t.as_str().into()).collect()))
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(self.err("DescribeInstanceTypes"))?;
                for t in page.instance_types() {
                    let Some(kind) = t.instance_type() else {
                        continue;
                    };
                    let archs = t
                        .processor_info()
                        .map(|p| {
                            p.supported_architectures()
                                .iter()
                                .map(|a| a.as_str().to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    out.insert(kind.as_str().to_string(), archs);
                }
                token = page.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// DescribeSecurityGroups of the launch's groups: every inbound permission, described by
    /// protocol, ports and source.
    async fn inbound_rules(&self, group_ids: &[String]) -> Result<Vec<String>> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .describe_security_groups()
            .set_group_ids(Some(group_ids.to_vec()))
            .send()
            .await
            .map_err(self.err("DescribeSecurityGroups"))?;
        let mut rules = Vec::new();
        for group in out.security_groups() {
            let id = group.group_id().unwrap_or_default();
            for p in group.ip_permissions() {
                let ports = match (p.from_port(), p.to_port()) {
                    (Some(from), Some(to)) if from == to => format!(" {from}"),
                    (Some(from), Some(to)) => format!(" {from}-{to}"),
                    _ => String::new(),
                };
                let sources: Vec<String> = p
                    .ip_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ip().map(str::to_string))
                    .chain(
                        p.ipv6_ranges()
                            .iter()
                            .filter_map(|r| r.cidr_ipv6().map(str::to_string)),
                    )
                    .chain(
                        p.prefix_list_ids()
                            .iter()
                            .filter_map(|r| r.prefix_list_id().map(str::to_string)),
                    )
                    .chain(
                        p.user_id_group_pairs()
                            .iter()
                            .filter_map(|r| r.group_id().map(str::to_string)),
                    )
                    .collect();
                rules.push(format!(
                    "{id}: {}{ports} from {}",
                    p.ip_protocol().unwrap_or("any"),
                    if sources.is_empty() {
                        "anywhere it names".to_string()
                    } else {
                        sources.join(", ")
                    }
                ));
            }
        }
        Ok(rules)
    }

    async fn terminate(&self, instance_id: &str) -> Result<()> {
        self.client
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(self.err("TerminateInstances"))?;
        Ok(())
    }

    async fn tag_image(&self, image_id: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        self.client
            .create_tags()
            .resources(image_id)
            .set_tags(Some(tag_list(tags)))
            .send()
            .await
            .map_err(self.err("CreateTags"))?;
        Ok(())
    }

    async fn untag_image(&self, image_id: &str, keys: &[&str]) -> Result<()> {
        let keys = keys
            .iter()
            .map(|k| aws_sdk_ec2::types::Tag::builder().key(*k).build())
            .collect();
        self.client
            .delete_tags()
            .resources(image_id)
            .set_tags(Some(keys))
            .send()
            .await
            .map_err(self.err("DeleteTags"))?;
        Ok(())
    }
}

/// A test instance as the domain reads it; none without its id or the AMI it tests.
fn test_instance_of(instance: &aws_sdk_ec2::types::Instance) -> Option<TestInstance> {
    let tags: BTreeMap<String, String> = tags_of(instance.tags());
    let (Some(id), Some(image)) = (instance.instance_id.clone(), tags.get(tags::VALIDATES)) else {
        return None;
    };
    Some(TestInstance {
        instance_id: id,
        image_id: image.clone(),
        policy: tags.get(tags::POLICY).cloned(),
        state: state_name(instance),
        launched: instance
            .launch_time()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        system_status: None,
        instance_status: None,
        client_token: instance
            .client_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        launched_from: instance.image_id().map(str::to_string),
    })
}

/// The system and instance status checks of each running instance (DescribeInstanceStatus).
type Statuses = HashMap<String, (Option<String>, Option<String>)>;

impl Ec2 {
    async fn statuses_of_running(&self, instances: &[TestInstance]) -> Result<Statuses> {
        let running: Vec<String> = instances
            .iter()
            .filter(|i| i.state == "running")
            .map(|i| i.instance_id.clone())
            .collect();
        let mut statuses = Statuses::new();
        for chunk in running.chunks(STATUS_MAX_IDS) {
            let out = self
                .client
                .describe_instance_status()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(self.err("DescribeInstanceStatus"))?;
            for s in out.instance_statuses() {
                let summary = |v: Option<&aws_sdk_ec2::types::InstanceStatusSummary>| {
                    v.and_then(|v| v.status()).map(|s| s.as_str().to_string())
                };
                if let Some(id) = s.instance_id.clone() {
                    statuses.insert(
                        id,
                        (summary(s.system_status()), summary(s.instance_status())),
                    );
                }
            }
        }
        Ok(statuses)
    }
}
