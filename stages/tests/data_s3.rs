//! The `url` source through object_store: S3 against a local `moto_server` (required:
//! `python3 -m pip install 'moto[server]'`; a missing server fails the test, it never
//! skips), and `file://` URLs.

use crate::data_common;
use crate::moto;

use std::sync::OnceLock;

use data_common::*;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::json;

const BUCKET: &str = "soma-data";
fn parquet_file() -> Vec<u8> {
    parquet_bytes(
        &[(
            "text",
            vec![Some("s3 row a"), Some("s3 row b"), Some("s3 row c")],
        )],
        2,
    )
}

/// The shared server (credentials in the environment the way users set them), with
/// this test's objects uploaded once.
fn moto() {
    static UPLOADED: OnceLock<()> = OnceLock::new();
    UPLOADED.get_or_init(|| {
        moto::shared(BUCKET);
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(BUCKET)
            .with_allow_http(true)
            .build()
            .unwrap();
        let objects: Vec<(&str, Vec<u8>)> = vec![
            (
                "corpus/a.jsonl.gz",
                gzip(&jsonl_bytes(&[vec![("content", "s3 json")]])),
            ),
            ("corpus/b.parquet", parquet_file()),
            ("corpus/skip.bin", b"not data".to_vec()),
        ];
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            for (name, bytes) in objects {
                store
                    .put(&ObjectPath::from(name), PutPayload::from(bytes))
                    .await
                    .unwrap();
            }
        });
    });
}

#[test]
fn fetches_objects_from_s3() {
    moto();
    let ws = Workspace::new();
    let prefix = format!("s3://{BUCKET}/corpus/");
    let opts = options(
        json!({"source": "url", "url": prefix, "files": ["*.jsonl.gz", "*.parquet"], "holdout": 0.0}),
    );
    let fetched = ws.fetch(&opts, "prefix").unwrap();
    assert_eq!(
        fetched.train_docs(),
        ["s3 json", "s3 row a", "s3 row b", "s3 row c"]
    );
    let source = &fetched.report.train.sources[1];
    assert_eq!(source.path, format!("s3://{BUCKET}/corpus/b.parquet"));
    assert_eq!(source.size, parquet_file().len() as u64);
    assert!(
        source.revision.is_some(),
        "the ETag pins the object version"
    );
    assert_eq!(
        source.blake3,
        blake3::hash(&parquet_file()).to_hex().to_string()
    );
    assert!(
        fetched
            .progress
            .iter()
            .any(|l| l.contains("downloading s3://")),
        "{:?}",
        fetched.progress
    );
    let again = ws.fetch(&opts, "again").unwrap();
    assert_eq!(again.files(), fetched.files());

    let one = options(
        json!({"source": "url", "url": format!("s3://{BUCKET}/corpus/b.parquet"), "holdout": 0.0}),
    );
    assert_eq!(
        ws.fetch(&one, "one").unwrap().train_docs(),
        ["s3 row a", "s3 row b", "s3 row c"]
    );

    let missing = format!("s3://{BUCKET}/corpus/missing.parquet");
    let e = error_text(ws.fetch(
        &options(json!({"source": "url", "url": missing})),
        "missing",
    ));
    assert!(
        e.starts_with(&format!("{missing}: ")) && e.to_lowercase().contains("not found"),
        "{e}"
    );
    let e = error_text(ws.fetch(
        &options(json!({"source": "url", "url": prefix, "files": ["*.csv"]})),
        "none",
    ));
    assert!(
        e.contains(&format!("no files in {prefix} matched")) && e.contains("skip.bin"),
        "{e}"
    );
}

#[test]
fn resumes_a_partial_download_with_a_ranged_get() {
    moto();
    let ws = Workspace::new();
    let url = format!("s3://{BUCKET}/corpus/b.parquet");
    let opts = options(json!({"source": "url", "url": url, "holdout": 0.0}));
    let first = ws.fetch(&opts, "first").unwrap();
    // Leave only the first half, as an interrupted transfer does.
    let downloads = ws.dir.path().join("state/downloads");
    let done = std::fs::read_dir(&downloads)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-b.parquet"))
        .unwrap();
    let bytes = std::fs::read(&done).unwrap();
    std::fs::remove_file(&done).unwrap();
    let mut part = done.clone().into_os_string();
    part.push(".part");
    std::fs::write(&part, &bytes[..bytes.len() / 2]).unwrap();
    let resumed = ws.fetch(&opts, "resumed").unwrap();
    assert_eq!(resumed.files(), first.files());
    assert_eq!(std::fs::read(&done).unwrap(), bytes);
    assert!(!std::path::Path::new(&part).exists());
}

#[test]
fn file_urls_read_local_objects() {
    let ws = Workspace::new();
    ws.write(
        "objects/x.jsonl.zst",
        &zstd(&jsonl_bytes(&[vec![("text", "from a file url")]])),
    );
    let dir = ws.base().join("objects").canonicalize().unwrap();
    let url = format!("file://{}/", dir.display());
    let fetched = ws
        .fetch(
            &options(json!({"source": "url", "url": url, "holdout": 0.0})),
            "file",
        )
        .unwrap();
    assert_eq!(fetched.train_docs(), ["from a file url"]);
}
