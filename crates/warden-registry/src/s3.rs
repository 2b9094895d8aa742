//! Blobs in an S3-compatible bucket: `s3://bucket/prefix` in `warden.toml`'s `blobs`.
//!
//! Credentials, region and endpoint come from the standard AWS variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or
//! `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` for a server other than AWS), never from the
//! configuration file. Plain HTTP is accepted to a loopback endpoint only.

use crate::error::RegistryError;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use std::sync::Arc;

/// Where and as whom to reach the bucket.
#[derive(Clone, Default)]
pub struct S3Options {
    /// `https://…`, or `http://` to loopback; AWS itself when `None`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl S3Options {
    /// From the standard AWS environment variables.
    #[must_use]
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            endpoint: var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT")),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            access_key: var("AWS_ACCESS_KEY_ID"),
            secret_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
        }
    }
}

/// Whether `blobs` names a bucket rather than a directory.
#[must_use]
pub fn is_bucket_url(blobs: &str) -> bool {
    blobs.starts_with("s3://")
}

/// The bucket and key prefix of `s3://bucket/prefix`.
pub fn parse_url(url: &str) -> Result<(String, String), RegistryError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| RegistryError::invalid("blobs URL", "must start with s3://"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(ok) {
        return Err(RegistryError::invalid(
            "blobs URL",
            format!("{bucket:?} is not a bucket name (3-63 of a-z, 0-9, '-', '.')"),
        ));
    }
    Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

fn loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The object store for `url` (`s3://bucket/prefix`).
pub fn store(url: &str, opts: &S3Options) -> Result<Arc<dyn ObjectStore>, RegistryError> {
    let (bucket, prefix) = parse_url(url)?;
    // A bucket that fails fails the request within seconds (it is refused, 503), rather
    // than holding it through object_store's default three minutes of retries. A
    // stalled one is cut by the blob store's own bound on silence (`blobs::STALL`), not
    // by a bound on the whole request, which would cut every download longer than it.
    let retry = object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(15),
        ..object_store::RetryConfig::default()
    };
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&bucket)
        .with_region(opts.region.as_deref().unwrap_or("us-east-1"))
        .with_retry(retry)
        .with_client_options(
            object_store::ClientOptions::new()
                .with_connect_timeout(std::time::Duration::from_secs(5))
                .with_timeout_disabled(),
        );
    if let Some(ep) = &opts.endpoint {
        if ep.starts_with("http://") {
            if !loopback_http(ep) {
                return Err(RegistryError::invalid(
                    "S3 endpoint",
                    format!("{ep}: plain HTTP is accepted to loopback only; use https://"),
                ));
            }
            b = b.with_allow_http(true);
        } else if !ep.starts_with("https://") {
            return Err(RegistryError::invalid(
                "S3 endpoint",
                format!("{ep}: not an http(s) URL"),
            ));
        }
        b = b.with_endpoint(ep);
    }
    if let (Some(k), Some(s)) = (&opts.access_key, &opts.secret_key) {
        b = b.with_access_key_id(k).with_secret_access_key(s);
    }
    if let Some(t) = &opts.session_token {
        b = b.with_token(t);
    }
    let s3 = b.build()?;
    Ok(if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(PrefixStore::new(s3, prefix.as_str()))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bucket_urls_and_endpoints_are_checked() {
        assert_eq!(
            parse_url("s3://models-prod/warden/blobs/").unwrap(),
            ("models-prod".into(), "warden/blobs".into())
        );
        assert_eq!(
            parse_url("s3://abc").unwrap(),
            ("abc".into(), String::new())
        );
        for bad in [
            "s3://",
            "s3://A_B/x",
            "s3://ab",
            "gs://bucket/x",
            "/var/blobs",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(loopback_http("http://127.0.0.1:9000"));
        assert!(loopback_http("http://localhost:9000/"));
        assert!(loopback_http("http://[::1]:9000"));
        assert!(!loopback_http("http://10.0.0.5:9000"));
        assert!(!loopback_http("http://127.0.0.1.example.com:9000"));
        let far = S3Options {
            endpoint: Some("http://s3.internal:9000".into()),
            ..S3Options::default()
        };
        assert!(
            store("s3://bucket/p", &far).is_err(),
            "plain HTTP off loopback"
        );
    }
}
