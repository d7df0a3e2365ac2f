//! Secrets read at cold start from AWS Secrets Manager or SSM Parameter Store.
//!
//! For any variable `NAME` the function reads, the environment may name where
//! its value is instead of holding it:
//!
//! | variable | value of `NAME` |
//! |---|---|
//! | `NAME_SECRET_ID` | the `SecretString` of this Secrets Manager secret (name or ARN) |
//! | `NAME_SSM_PARAMETER` | the value of this SSM parameter (name or ARN), `SecureString` decrypted |
//!
//! e.g. `SESSION_SECRETS_SECRET_ID=prod/edge-session/keys`. Every reference is
//! fetched once, concurrently, when the execution environment starts (one
//! HTTPS call each, signed with the function's role credentials from
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` in
//! `AWS_REGION`); the values stay in memory only, never in the function's
//! configuration, and a rotated secret is picked up by new execution
//! environments. The role needs `secretsmanager:GetSecretValue` or
//! `ssm:GetParameter` (and `kms:Decrypt` for customer-managed keys).
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL_SSM` and
//! `AWS_ENDPOINT_URL` override the endpoints, as in the AWS SDKs.
//!
//! Setting both `NAME` and a reference to it is an error. Requests are signed
//! with AWS Signature Version 4 by [`aws_sigv4`], the signer of the AWS SDK
//! for Rust (with [`aws_credential_types`] for the credentials, whose `Debug`
//! redacts the secret key and session token); the calls themselves are plain
//! JSON requests over the function's HTTP client, so the function carries no
//! AWS SDK service client.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use serde_json::{Value, json};

/// Suffix of a variable naming a Secrets Manager secret.
pub const SECRET_ID_SUFFIX: &str = "_SECRET_ID";
/// Suffix of a variable naming an SSM parameter.
pub const SSM_PARAMETER_SUFFIX: &str = "_SSM_PARAMETER";

/// Time allowed for one secret lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A secret that could not be resolved. Never holds the secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretError {
    /// The variable that refers to the secret (e.g. `SESSION_SECRETS_SECRET_ID`).
    pub variable: String,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for SecretError {}

/// Where a variable's value lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    SecretsManager,
    Ssm,
}

impl Source {
    fn service(&self) -> &'static str {
        match self {
            Source::SecretsManager => "secretsmanager",
            Source::Ssm => "ssm",
        }
    }

    fn endpoint_variable(&self) -> &'static str {
        match self {
            Source::SecretsManager => "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            Source::Ssm => "AWS_ENDPOINT_URL_SSM",
        }
    }

    fn target(&self) -> &'static str {
        match self {
            Source::SecretsManager => "secretsmanager.GetSecretValue",
            Source::Ssm => "AmazonSSM.GetParameter",
        }
    }

    fn body(&self, id: &str) -> String {
        match self {
            Source::SecretsManager => json!({ "SecretId": id }).to_string(),
            Source::Ssm => json!({ "Name": id, "WithDecryption": true }).to_string(),
        }
    }

    fn value(&self, answer: &Value) -> Option<String> {
        match self {
            Source::SecretsManager => answer["SecretString"].as_str().map(str::to_owned),
            Source::Ssm => answer["Parameter"]["Value"].as_str().map(str::to_owned),
        }
    }
}

/// Resolves every `*_SECRET_ID` / `*_SSM_PARAMETER` reference among `vars`
/// and returns `vars` with the referenced variables filled in (the references
/// themselves are kept). Without references, no call is made and no AWS
/// variable is needed.
pub async fn resolve(
    client: &reqwest::Client,
    mut vars: HashMap<String, String>,
) -> Result<HashMap<String, String>, SecretError> {
    let mut wanted = Vec::new();
    for (variable, id) in &vars {
        let (name, source) = if let Some(name) = variable.strip_suffix(SECRET_ID_SUFFIX) {
            (name, Source::SecretsManager)
        } else if let Some(name) = variable.strip_suffix(SSM_PARAMETER_SUFFIX) {
            (name, Source::Ssm)
        } else {
            continue;
        };
        if name.is_empty() || id.trim().is_empty() {
            continue;
        }
        if vars.get(name).is_some_and(|v| !v.trim().is_empty()) {
            return Err(SecretError {
                variable: variable.clone(),
                reason: format!("{name} is set too: set the value or a reference, not both"),
            });
        }
        wanted.push((
            name.to_owned(),
            variable.clone(),
            id.trim().to_owned(),
            source,
        ));
    }
    if wanted.is_empty() {
        return Ok(vars);
    }
    let aws = Aws::from_vars(&vars, &wanted[0].1)?;
    let mut tasks = tokio::task::JoinSet::new();
    for (name, variable, id, source) in wanted {
        let client = client.clone();
        let aws = aws.clone();
        tasks.spawn(async move {
            let value = aws.fetch(&client, &source, &variable, &id).await;
            (name, value)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (name, value) = done.map_err(|e| SecretError {
            variable: "secrets".to_owned(),
            reason: format!("lookup task failed: {e}"),
        })?;
        vars.insert(name, value?);
    }
    Ok(vars)
}

/// Region, credentials and endpoint overrides.
#[derive(Debug, Clone)]
struct Aws {
    region: String,
    /// Its `Debug` shows the access key id only.
    credentials: Credentials,
    endpoints: HashMap<&'static str, String>,
}

impl Aws {
    fn from_vars(vars: &HashMap<String, String>, first: &str) -> Result<Self, SecretError> {
        let get = |name: &str| vars.get(name).filter(|v| !v.is_empty()).cloned();
        let missing = |what: &str| SecretError {
            variable: first.to_owned(),
            reason: format!("{what} is not set (it is, inside AWS Lambda)"),
        };
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or_else(|| missing("AWS_REGION"))?;
        let credentials = Credentials::new(
            get("AWS_ACCESS_KEY_ID").ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?,
            get("AWS_SECRET_ACCESS_KEY").ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?,
            get("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        let mut endpoints = HashMap::new();
        for name in [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            "AWS_ENDPOINT_URL_SSM",
        ] {
            if let Some(url) = get(name) {
                endpoints.insert(name, url);
            }
        }
        Ok(Self {
            region,
            credentials,
            endpoints,
        })
    }

    fn endpoint(&self, source: &Source) -> String {
        self.endpoints
            .get(source.endpoint_variable())
            .or_else(|| self.endpoints.get("AWS_ENDPOINT_URL"))
            .cloned()
            .unwrap_or_else(|| {
                let suffix = if self.region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                format!("https://{}.{}.{suffix}", source.service(), self.region)
            })
    }

    async fn fetch(
        &self,
        client: &reqwest::Client,
        source: &Source,
        variable: &str,
        id: &str,
    ) -> Result<String, SecretError> {
        let fail = |reason: String| SecretError {
            variable: variable.to_owned(),
            reason,
        };
        let endpoint = self.endpoint(source);
        let url = url::Url::parse(&endpoint)
            .map_err(|_| fail(format!("endpoint {endpoint} is not a URL")))?;
        if url.host_str().is_none() {
            return Err(fail(format!("endpoint {endpoint} has no host")));
        }
        let body = source.body(id);
        // Signed along with the host (from the URL), `x-amz-date` and
        // `x-amz-security-token`, which the signer adds.
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", source.target()),
        ];
        let signature = sign(
            &Signer {
                credentials: &self.credentials,
                region: &self.region,
                service: source.service(),
                time: SystemTime::now(),
            },
            "POST",
            url.as_str(),
            &headers,
            body.as_bytes(),
        )
        .map_err(|e| fail(format!("cannot sign the {} request: {e}", source.service())))?;
        let mut request = client.post(url).timeout(LOOKUP_TIMEOUT);
        for (name, value) in headers.into_iter().chain(
            signature
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        ) {
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| fail(format!("{} unreachable: {e}", source.service())))?;
        let status = response.status();
        let answer: Value = response
            .bytes()
            .await
            .ok()
            .and_then(|body| serde_json::from_slice(&body).ok())
            .ok_or_else(|| {
                fail(format!(
                    "{} answered {status} without JSON",
                    source.service()
                ))
            })?;
        if !status.is_success() {
            let kind = answer["__type"].as_str().unwrap_or("error");
            let kind = kind.rsplit('#').next().unwrap_or(kind);
            let message = answer["message"]
                .as_str()
                .or_else(|| answer["Message"].as_str())
                .unwrap_or("");
            return Err(fail(format!(
                "{} answered {status} {kind} for {id}: {message}",
                source.service()
            )));
        }
        source.value(&answer).ok_or_else(|| {
            fail(format!(
                "{id} has no text value (binary secrets are not supported)"
            ))
        })
    }
}

/// Who signs a request, for which region and service, and when.
#[derive(Debug)]
struct Signer<'a> {
    credentials: &'a Credentials,
    region: &'a str,
    service: &'a str,
    time: SystemTime,
}

/// Signs a request with AWS Signature Version 4 (the signature in the
/// `Authorization` header) and returns the headers to add to it:
/// `authorization`, `x-amz-date` and, with a session token,
/// `x-amz-security-token`. `url` is already encoded; the signature covers
/// `method`, `url` (its host too), `headers` and `body`.
fn sign(
    signer: &Signer<'_>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, String> {
    let identity = signer.credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(signer.region)
        .name(signer.service)
        .time(signer.time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = aws_sigv4::http_request::sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers
        .iter()
        .map(|header| (header.name(), header.value().to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the AWS Signature Version 4 documentation
    /// (IAM `ListUsers`, 2015-08-30), signed through [`sign`] as the lookups
    /// are: the settings, scope and time we give the signer yield the
    /// documented signature.
    #[test]
    fn signature_v4_reference_example() -> Result<(), String> {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let signer = Signer {
            credentials: &credentials,
            region: "us-east-1",
            service: "iam",
            // 2015-08-30T12:36:00Z
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160),
        };
        let added = sign(
            &signer,
            "GET",
            "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            b"",
        )?;
        let header = |name: &str| {
            added
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            header("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, \
                 Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
            )
        );
        assert_eq!(header("x-amz-security-token"), None);
        assert_eq!(added.len(), 2, "{added:?}");
        Ok(())
    }

    #[test]
    fn credentials_are_not_printed() {
        let c = Credentials::new(
            "AKID",
            "very-secret",
            Some("session-secret".to_owned()),
            None,
            "environment",
        );
        let aws = Aws {
            region: "eu-west-1".to_owned(),
            credentials: c,
            endpoints: HashMap::new(),
        };
        let text = format!("{aws:?}");
        assert!(text.contains("AKID"), "{text}");
        assert!(
            !text.contains("very-secret") && !text.contains("session-secret"),
            "{text}"
        );
    }
}
