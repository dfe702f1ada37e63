//! Launch templates, for publishing: DescribeLaunchTemplates and DescribeLaunchTemplateVersions
//! (`$Latest`), CreateLaunchTemplateVersion from `$Latest` with only the AMI changed, and
//! ModifyLaunchTemplate for the default version.

use aws_sdk_ec2::types::RequestLaunchTemplateData;

use super::{absent, Ec2};
use crate::error::Result;
use crate::ports::{LaunchTemplateState, LaunchTemplates};

impl LaunchTemplates for Ec2 {
    async fn launch_template(&self, id_or_name: &str) -> Result<Option<LaunchTemplateState>> {
        let is_id = crate::domain::ids::check_resource_id("lt", id_or_name).is_ok();
        let request = self.client.describe_launch_templates();
        let request = if is_id {
            request.launch_template_ids(id_or_name)
        } else {
            request.launch_template_names(id_or_name)
        };
        let found = request
            .send()
            .await
            .map_err(self.err("DescribeLaunchTemplates"))
            .map(|out| out.launch_templates().first().cloned());
        // An unknown name answers InvalidLaunchTemplateName.NotFoundException, an unknown id
        // InvalidLaunchTemplateId.NotFound.
        let found = match found {
            Err(e) if e.code().is_some_and(|c| c.contains("NotFound")) => Ok(None),
            other => absent(other),
        }?;
        let Some(template) = found else {
            return Ok(None);
        };
        let Some(template_id) = template.launch_template_id.clone() else {
            return Ok(None);
        };
        let latest = self
            .client
            .describe_launch_template_versions()
            .launch_template_id(&template_id)
            .versions("$Latest")
            .send()
            .await
            .map_err(self.err("DescribeLaunchTemplateVersions"))?;
        let latest_image = latest
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
            .and_then(|d| d.image_id.clone());
        Ok(Some(LaunchTemplateState {
            name: template.launch_template_name.clone().unwrap_or_default(),
            latest_version: template.latest_version_number.unwrap_or_default(),
            default_version: template.default_version_number.unwrap_or_default(),
            template_id,
            latest_image,
        }))
    }

    async fn new_template_version(
        &self,
        template_id: &str,
        image_id: &str,
        description: &str,
        client_token: &str,
    ) -> Result<i64> {
        let out = self
            .client
            .create_launch_template_version()
            .launch_template_id(template_id)
            .source_version("$Latest")
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(image_id)
                    .build(),
            )
            .version_description(description)
            .client_token(client_token)
            .send()
            .await
            .map_err(self.err("CreateLaunchTemplateVersion"))?;
        if let Some(warning) = out.warning() {
            tracing::warn!(template = template_id, warning = ?warning, "the new launch template version has warnings");
        }
        out.launch_template_version()
            .and_then(|v| v.version_number)
            .ok_or_else(|| {
                crate::error::Error::Refused(format!(
                    "CreateLaunchTemplateVersion of {template_id} answered without a version"
                ))
            })
    }

    async fn set_default_version(&self, template_id: &str, version: i64) -> Result<()> {
        self.client
            .modify_launch_template()
            .launch_template_id(template_id)
            .default_version(version.to_string())
            .send()
            .await
            .map_err(self.err("ModifyLaunchTemplate"))?;
        Ok(())
    }
}
