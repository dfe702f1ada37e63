//! The SSM adapter: the parameters publishing writes (GetParameter, PutParameter).

use aws_sdk_ssm::types::ParameterType;
use aws_sdk_ssm::Client;

use crate::domain::ids::Region;
use crate::error::{Error, Result};
use crate::ports::{Parameters, Regional};

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
    async fn parameter(&self, name: &str) -> Result<Option<String>> {
        match self.client.get_parameter().name(name).send().await {
            Ok(out) => Ok(out.parameter().and_then(|p| p.value.clone())),
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
    /// version it answers may not become the value (an AMI SSM cannot describe is never
    /// written); the next sweep reads the parameter again and writes it again if it must.
    async fn put_image_parameter(&self, name: &str, image_id: &str) -> Result<i64> {
        let out = self
            .client
            .put_parameter()
            .name(name)
            .value(image_id)
            .r#type(ParameterType::String)
            .data_type("aws:ec2:image")
            .overwrite(true)
            .description("The newest promoted AMI (ami-publish)")
            .send()
            .await
            .map_err(|e| Error::aws("PutParameter", self.region.as_str(), e))?;
        Ok(out.version)
    }
}
