use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreScheme, RetryConfig};

use crate::duration::from_env;

/// Environment prefixes whose variables configure the cloud stores, mirroring each
/// builder's `from_env` (other variables could clash with builder option names).
const CREDENTIAL_PREFIXES: [&str; 3] = ["AWS_", "GOOGLE_", "AZURE_"];

/// Whether an environment variable configures the cloud stores (credentials included).
pub fn is_store_setting(name: &str) -> bool {
    CREDENTIAL_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// How long a failing request to object storage is retried before it counts as failed,
/// unless `SOMA_FLOW_STORAGE_RETRY` says otherwise (object_store's default).
const RETRY_FOR: Duration = Duration::from_secs(180);

/// Opens the object store behind `url` and the path inside it, with credentials from
/// the environment as each cloud's own tools read them; `Err` says why the URL is
/// unusable. A request that fails (a network cut, a server error) is retried for
/// `SOMA_FLOW_STORAGE_RETRY` (a duration, default 3m) before it fails.
pub fn open_url(url: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath), String> {
    open_stores(url).map(|opened| (opened.store, opened.path))
}

/// A store as [`open_url`] opens it, with its multipart interface where it has one
/// (S3, GCS, Azure): uploads through it can resume after an interruption.
pub(super) struct Opened {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) parts: Option<Arc<dyn MultipartStore>>,
    pub(super) path: ObjectPath,
}

/// The URL parsed, the kind of store it names and the path inside it; `Err` says why
/// it cannot be used. Nothing is built or contacted (pipelines are checked with it).
pub fn check_url(url: &str) -> Result<(url::Url, ObjectStoreScheme, ObjectPath), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let (scheme, path) = ObjectStoreScheme::parse(&parsed).map_err(|e| e.to_string())?;
    let path = ObjectPath::parse(path).map_err(|e| e.to_string())?;
    match scheme {
        ObjectStoreScheme::Local
        | ObjectStoreScheme::AmazonS3
        | ObjectStoreScheme::GoogleCloudStorage
        | ObjectStoreScheme::MicrosoftAzure
        | ObjectStoreScheme::Http => Ok((parsed, scheme, path)),
        other => Err(format!("{other:?} storage is not supported")),
    }
}

pub(super) fn open_stores(url: &str) -> Result<Opened, String> {
    let (parsed, scheme, path) = check_url(url)?;
    let mut options: Vec<(String, String)> = std::env::vars()
        .filter(|(key, _)| is_store_setting(key))
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .collect();
    // A plain-http endpoint is a local test server (moto, MinIO): allow it rather
    // than making every such setup also set AWS_ALLOW_HTTP.
    let http_endpoint = options
        .iter()
        .any(|(k, v)| k.starts_with("aws_endpoint") && v.starts_with("http://"));
    if http_endpoint {
        options.push(("aws_allow_http".into(), "true".into()));
    }
    // An explicit http:// URL is the caller's choice of plain HTTP.
    if parsed.scheme() == "http" {
        options.push(("allow_http".into(), "true".into()));
    }
    let retry = RetryConfig {
        retry_timeout: from_env("SOMA_FLOW_STORAGE_RETRY", RETRY_FOR)?,
        ..RetryConfig::default()
    };
    // As `object_store::parse_url_opts` builds them, with the retry setting.
    macro_rules! build {
        ($builder:ty, $url:expr) => {{
            let builder = options.into_iter().fold(
                <$builder>::new()
                    .with_url($url.to_string())
                    .with_retry(retry),
                |builder, (key, value)| match key.parse() {
                    Ok(k) => builder.with_config(k, value),
                    Err(_) => builder,
                },
            );
            Arc::new(builder.build().map_err(|e| e.to_string())?)
        }};
    }
    fn both<S: ObjectStore + MultipartStore>(
        store: Arc<S>,
    ) -> (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>) {
        (Arc::clone(&store) as _, Some(store as _))
    }
    let (store, parts) = match scheme {
        ObjectStoreScheme::Local => (
            Arc::new(object_store::local::LocalFileSystem::new()) as _,
            None,
        ),
        ObjectStoreScheme::AmazonS3 => both(build!(object_store::aws::AmazonS3Builder, parsed)),
        ObjectStoreScheme::GoogleCloudStorage => {
            both(build!(object_store::gcp::GoogleCloudStorageBuilder, parsed))
        }
        ObjectStoreScheme::MicrosoftAzure => {
            both(build!(object_store::azure::MicrosoftAzureBuilder, parsed))
        }
        ObjectStoreScheme::Http => {
            let url = &parsed[..url::Position::BeforePath];
            let http: Arc<object_store::http::HttpStore> =
                build!(object_store::http::HttpBuilder, url);
            (http as _, None)
        }
        _ => unreachable!("check_url accepts only the schemes above"),
    };
    Ok(Opened { store, parts, path })
}

/// object_store's errors repeat their sources and quote whole XML bodies: this says
/// once what failed, with the server's error code and message when it sent one.
pub(super) fn concise(e: impl std::fmt::Display) -> anyhow::Error {
    let text = e.to_string();
    let field = |tag: &str| {
        let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
        let end = start + text[start..].find(&format!("</{tag}>"))?;
        Some(text[start..end].to_string())
    };
    let head = text.split(": <?xml").next().unwrap_or(&text);
    // The first "Error performing …" is the request; what follows repeats it.
    let head = match head.match_indices(": Error performing").nth(1) {
        Some((i, _)) => &head[..i],
        None => head,
    };
    match (field("Code"), field("Message")) {
        (Some(code), Some(message)) => anyhow!("{head}: {code}: {message}"),
        _ => anyhow!("{head}"),
    }
}

pub(super) fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

pub(super) fn is_taken(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}
