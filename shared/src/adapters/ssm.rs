//! The SSM adapter: the parameters publishing writes (GetParameter, PutParameter).

use aws_sdk_ssm::types::ParameterType;
use aws_sdk_ssm::Client;

use crate::domain::ids::Region;
use crate::error::{Error, Result};
use crate::ports::{Parameters, Regional, StoredParameter};

/// SSM Parameter Store in one region.
#[derive(Debug, Clone)]
pub struct Ssm {
    client: Client,
    region: Region,
}

impl Ssm {
    /// An adapter over a client configured for `region`.
    pub fn new(client: Client, region: Region) -> Self {
        Ssm { client, region }
    }
}

impl Regional for Ssm {
    fn region(&self) -> &Region {
        &self.region
    }
}

impl Parameters for Ssm {
    async fn parameter(&self, name: &str) -> Result<Option<StoredParameter>> {
        match self.client.get_parameter().name(name).send().await {
            Ok(out) => Ok(out.parameter().map(|p| StoredParameter {
                value: p.value().unwrap_or_default().to_string(),
                kind: p
                    .r#type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                // GetParameter names no data type for a `text` parameter made before data types.
                data_type: p.data_type().unwrap_or("text").to_string(),
            })),
            Err(e) => {
                let e = Error::aws("GetParameter", self.region.as_str(), e);
                if e.code() == Some("ParameterNotFound") {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// PutParameter with `DataType: aws:ec2:image`: SSM checks the AMI asynchronously, so the
    /// version it answers becomes the value only once SSM validated it ("up to a few minutes";
    /// an AMI SSM cannot describe is never written), and reads answer the version before it
    /// until then; another update meanwhile is refused with `TooManyUpdates`, which the sweep
    /// defers. The next sweep reads the parameter again and writes it again if it must.
    async fn put_image_parameter(&self, name: &str, image_id: &str) -> Result<i64> {
        let out = self
            .client
            .put_parameter()
            .name(name)
            .value(image_id)
            .r#type(ParameterType::String)
            .data_type(StoredParameter::IMAGE_DATA_TYPE)
            .overwrite(true)
            .description("The newest promoted AMI (ami-publish)")
            .send()
            .await
            .map_err(|e| Error::aws("PutParameter", self.region.as_str(), e))?;
        Ok(out.version)
    }
}
