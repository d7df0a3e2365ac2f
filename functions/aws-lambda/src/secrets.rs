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
//! with AWS Signature Version 4, implemented here with the `hmac` and `sha2`
//! crates the core already uses, so the function carries no AWS SDK.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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

/// AWS credentials, from the function's environment. Never printed.
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Explicit credentials.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
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
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(fail(format!("endpoint {endpoint} has no host"))),
        };
        let body = source.body(id);
        let amz_date = amz_date(SystemTime::now());
        let mut headers = vec![
            ("content-type", "application/x-amz-json-1.1".to_owned()),
            ("host", host),
            ("x-amz-date", amz_date.clone()),
            ("x-amz-target", source.target().to_owned()),
        ];
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token", token.clone()));
        }
        headers.sort_by(|a, b| a.0.cmp(b.0));
        let authorization = sign(
            &self.credentials,
            &Scope {
                date: &amz_date[..8],
                region: &self.region,
                service: source.service(),
            },
            &Canonical {
                method: "POST",
                path: url.path(),
                query: "",
                headers: &headers,
                payload: body.as_bytes(),
                amz_date: &amz_date,
            },
        );
        let mut request = client
            .post(url)
            .timeout(LOOKUP_TIMEOUT)
            .header("authorization", authorization);
        for (name, value) in &headers {
            if *name != "host" {
                request = request.header(*name, value);
            }
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

/// The credential scope of a signature.
#[derive(Debug)]
struct Scope<'a> {
    /// `YYYYMMDD`
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

/// What a request signature covers.
#[derive(Debug)]
struct Canonical<'a> {
    method: &'a str,
    /// Already URI-encoded.
    path: &'a str,
    /// Already canonical (sorted, encoded).
    query: &'a str,
    /// Lowercase names, sorted.
    headers: &'a [(&'a str, String)],
    payload: &'a [u8],
    /// `YYYYMMDDTHHMMSSZ`
    amz_date: &'a str,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn signing_key(secret: &str, scope: &Scope<'_>) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), scope.date.as_bytes());
    let k_region = hmac(&k_date, scope.region.as_bytes());
    let k_service = hmac(&k_region, scope.service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn canonical_request(c: &Canonical<'_>) -> (String, String) {
    let mut canonical = format!("{}\n{}\n{}\n", c.method, c.path, c.query);
    for (name, value) in c.headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value.trim());
        canonical.push('\n');
    }
    let signed: Vec<&str> = c.headers.iter().map(|(n, _)| *n).collect();
    let signed = signed.join(";");
    canonical.push('\n');
    canonical.push_str(&signed);
    canonical.push('\n');
    canonical.push_str(&hex::encode(Sha256::digest(c.payload)));
    (canonical, signed)
}

/// The `Authorization` header of an AWS Signature Version 4 request.
fn sign(credentials: &Credentials, scope: &Scope<'_>, c: &Canonical<'_>) -> String {
    let (canonical, signed) = canonical_request(c);
    let scope_text = format!(
        "{}/{}/{}/aws4_request",
        scope.date, scope.region, scope.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope_text}\n{}",
        c.amz_date,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let signature = hex::encode(hmac(
        &signing_key(&credentials.secret_access_key, scope),
        string_to_sign.as_bytes(),
    ));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope_text}, SignedHeaders={signed}, Signature={signature}",
        credentials.access_key_id
    )
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
fn amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the AWS Signature Version 4 documentation
    /// (IAM `ListUsers`, 2015-08-30).
    #[test]
    fn signature_v4_reference_example() {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
        );
        let scope = Scope {
            date: "20150830",
            region: "us-east-1",
            service: "iam",
        };
        assert_eq!(
            hex::encode(signing_key(&credentials.secret_access_key, &scope)),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        let headers = [
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            ),
            ("host", "iam.amazonaws.com".to_owned()),
            ("x-amz-date", "20150830T123600Z".to_owned()),
        ];
        let canonical = Canonical {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            payload: b"",
            amz_date: "20150830T123600Z",
        };
        let (text, _) = canonical_request(&canonical);
        assert_eq!(
            hex::encode(Sha256::digest(text.as_bytes())),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        assert_eq!(
            sign(&credentials, &scope, &canonical),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(t), "20150830T123600Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399);
        assert_eq!(amz_date(leap), "20000229T235959Z");
    }

    #[test]
    fn credentials_are_not_printed() {
        let c = Credentials::new("AKID", "very-secret", Some("session-secret".to_owned()));
        let text = format!("{c:?}");
        assert!(!text.contains("very-secret") && !text.contains("session-secret"));
    }
}
