//! `fetch-competitors` with `urls:` through the engine: weights served over HTTP by a
//! local server, from S3 on a local `moto_server` (required: `python3 -m pip install
//! 'moto[server]'`; a missing server fails the test, it never skips) and from
//! `file://`. No internet is used.

use crate::common;
use crate::data_common;
use crate::moto;

use std::path::Path;

use data_common::hub::{sha256_hex, Hub, HubFile, HubRepo};
use data_common::run_pipeline;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::json;
use soma_flow_engine::record::{StageRecord, StageStatus};
use soma_flow_engine::store::Store;
use soma_flow_engine::yaml::PathSeg;
use soma_flow_engine::Registry;

fn weights() -> Vec<u8> {
    std::fs::read(common::fixture_weights()).unwrap()
}

/// A pipeline with one `fetch-competitors` stage of the given `with`.
fn pipeline(with: serde_json::Value) -> String {
    format!("name: competitors\nstages:\n  fetch:\n    kind: fetch-competitors\n    with: {with}\n")
}

fn fetch(dir: &Path, with: serde_json::Value) -> StageRecord {
    run_pipeline(dir, &pipeline(with)).stages["fetch"].clone()
}

/// The stage's output directory and its `models.json`.
fn models(dir: &Path, stage: &StageRecord) -> (std::path::PathBuf, Vec<serde_json::Value>) {
    let store = Store::open(&dir.join("store")).unwrap();
    let out = store.path_of(&stage.outputs["models"]);
    let listed = serde_json::from_slice(&std::fs::read(out.join("models.json")).unwrap()).unwrap();
    (out, listed)
}

fn failure(stage: &StageRecord) -> String {
    assert_eq!(stage.status, StageStatus::Failed, "{stage:?}");
    stage.message.clone().unwrap()
}

#[test]
fn downloads_checks_and_validates_weights_over_http() {
    let hub = Hub::start(vec![HubRepo::new(
        "soma/models",
        vec![
            HubFile {
                path: "tiny.safetensors".into(),
                bytes: weights(),
                lfs: true,
            },
            HubFile {
                path: "checked.safetensors".into(),
                bytes: weights(),
                lfs: true,
            },
            HubFile {
                path: "garbage.safetensors".into(),
                bytes: b"not a safetensors file".to_vec(),
                lfs: false,
            },
        ],
    )]);
    let url = |name: &str| {
        format!(
            "{}/datasets/soma/models/resolve/main/{name}.safetensors",
            hub.endpoint
        )
    };
    let sha = sha256_hex(&weights());
    let size = weights().len();
    let dir = tempfile::tempdir().unwrap();
    let good = json!({
        "heads": 4,
        "strict": true,
        "urls": [
            url("tiny"),
            {"url": url("checked"), "sha256": sha.to_uppercase(), "size": size},
        ],
    });
    let stage = fetch(dir.path(), good.clone());
    assert_eq!(stage.status, StageStatus::Ran, "{stage:?}");
    assert_eq!(stage.with["urls"], good["urls"], "the URLs enter the key");
    let (out, listed) = models(dir.path(), &stage);
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (entry, id) in listed.iter().zip(["tiny", "checked"]) {
        assert_eq!(entry["id"], id);
        assert_eq!(entry["url"], url(id));
        assert_eq!(
            entry["sha256"], sha,
            "the hash of the bytes, verified or not"
        );
        assert_eq!(
            std::fs::read(out.join(entry["file"].as_str().unwrap())).unwrap(),
            weights()
        );
    }
    let unverified: Vec<&String> = stage
        .notes
        .iter()
        .filter(|n| n.contains("unverified"))
        .collect();
    assert_eq!(unverified.len(), 1, "{:?}", stage.notes);
    assert!(
        unverified[0].starts_with(&url("tiny")) && unverified[0].contains(&sha),
        "{unverified:?}"
    );
    assert_eq!(fetch(dir.path(), good).status, StageStatus::Hit);

    // A wrong checksum is a different key, so the stage runs, and fails naming the URL.
    let wrong = "0".repeat(64);
    let e = failure(&fetch(
        dir.path(),
        json!({"heads": 4, "strict": true, "urls": [{"url": url("checked"), "sha256": wrong}]}),
    ));
    assert!(
        e.contains(&format!(
            "{}: downloaded sha256 {sha} does not match the expected {wrong}",
            url("checked")
        )),
        "{e}"
    );
    let e = failure(&fetch(
        dir.path(),
        json!({"heads": 4, "strict": true, "urls": [{"url": url("tiny"), "size": 7}]}),
    ));
    assert!(
        e.contains(&format!(
            "{}: downloaded size {size} does not match the expected 7",
            url("tiny")
        )),
        "{e}"
    );
    let e = failure(&fetch(
        dir.path(),
        json!({"heads": 4, "strict": true, "urls": [url("missing")]}),
    ));
    assert!(
        e.contains(&format!("missing: {}: ", url("missing")))
            && e.to_lowercase().contains("not found"),
        "{e}"
    );

    // Without `strict`, what fails a check is skipped with a note.
    let stage = fetch(
        dir.path(),
        json!({"heads": 4, "urls": [url("garbage"), url("missing"), url("tiny")]}),
    );
    assert_eq!(stage.status, StageStatus::Ran, "{stage:?}");
    let (out, listed) = models(dir.path(), &stage);
    let ids: Vec<&str> = listed.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["tiny"]);
    assert!(!out.join("garbage.safetensors").exists());
    let note = |id: &str| {
        let prefix = format!("skipped competitor {id}: {}: ", url(id));
        let found = stage.notes.iter().find(|n| n.starts_with(&prefix));
        found.unwrap_or_else(|| panic!("no note {prefix:?}: {:?}", stage.notes))
    };
    assert!(note("garbage").contains("not a safetensors file"));
    assert!(note("missing").to_lowercase().contains("not found"));
    assert_eq!(
        stage
            .notes
            .iter()
            .filter(|n| n.contains("unverified"))
            .count(),
        1,
        "only what is kept is noted as unverified: {:?}",
        stage.notes
    );
}

#[test]
fn downloads_weights_from_s3_and_file_urls() {
    moto::shared("soma-models");
    let store = AmazonS3Builder::from_env()
        .with_bucket_name("soma-models")
        .with_allow_http(true)
        .build()
        .unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        store
            .put(
                &ObjectPath::from("v1/s3model.safetensors"),
                PutPayload::from(weights()),
            )
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let local = std::fs::canonicalize(common::fixture_weights()).unwrap();
    let stage = fetch(
        dir.path(),
        json!({"heads": 4, "strict": true, "urls": [
            {"url": "s3://soma-models/v1/s3model.safetensors", "sha256": sha256_hex(&weights())},
            format!("file://{}", local.display()),
        ]}),
    );
    assert_eq!(stage.status, StageStatus::Ran, "{stage:?}");
    let (out, listed) = models(dir.path(), &stage);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["id"], "s3model");
    assert_eq!(
        std::fs::read(out.join("s3model.safetensors")).unwrap(),
        weights()
    );
}

fn with_error(with: serde_json::Value) -> (Vec<PathSeg>, String) {
    let mut registry = Registry::new();
    soma_flow_stages::kinds::register(&mut registry);
    match registry
        .get("fetch-competitors")
        .unwrap()
        .prepare(with.clone())
    {
        Ok(_) => panic!("accepted {with}"),
        Err(e) => (e.path, e.message),
    }
}

#[test]
fn bad_urls_are_rejected_before_running() {
    let at = |i: usize, field: Option<&str>| {
        let mut path = vec![PathSeg::Key("urls".into()), PathSeg::Index(i)];
        path.extend(field.map(|f| PathSeg::Key(f.into())));
        path
    };
    let (path, message) = with_error(json!({"urls": ["ftp://host/a.safetensors"]}));
    assert_eq!(path, at(0, None));
    assert!(message.contains("\"ftp://host/a.safetensors\"") && message.contains("s3://"));
    let (path, message) = with_error(
        json!({"urls": ["https://host/a.safetensors", {"url": "https://host/b", "sha256": "abc"}]}),
    );
    assert_eq!(path, at(1, Some("sha256")));
    assert!(message.contains("`abc` is not a SHA-256"), "{message}");
    let (path, message) = with_error(
        json!({"urls": ["https://host/x/m.safetensors", "s3://bucket/y/m.safetensors"]}),
    );
    assert_eq!(path, at(1, None));
    assert!(
        message.contains("would be saved as m.safetensors"),
        "{message}"
    );
    let (path, message) = with_error(json!({"urls": ["https://host/dir/"]}));
    assert_eq!(path, at(0, None));
    assert!(message.contains("names no file"), "{message}");
    let (path, message) = with_error(json!({"urls": [{"url": "https://host/a", "sha": "x"}]}));
    assert_eq!(path[..2], at(0, None)[..]);
    assert!(message.contains("unknown field `sha`"), "{message}");
}

/// Ids, SHA-256s and the network (its name or fullnode URL, its architecture) are
/// parsed once, on load: a bad one is named at its key, and what enters the cache key
/// is the text as written.
#[test]
fn ids_and_the_network_are_parsed_on_load_and_named_at_their_key() {
    let id = format!("0x{}", "ab".repeat(32));
    let (path, message) = with_error(json!({"ids": [id, "0xzz"]}));
    assert_eq!(path, [PathSeg::Key("ids".into()), PathSeg::Index(1)]);
    assert!(message.contains("`0xzz` is not a model id"), "{message}");
    let (path, message) = with_error(json!({"network": {"arch": "v9"}}));
    assert_eq!(
        path,
        [PathSeg::Key("network".into()), PathSeg::Key("arch".into())]
    );
    assert!(message.contains("unknown model preset `v9`"), "{message}");
    for (network, key) in [
        (json!({"name": "moon"}), Some("name")),
        (json!({"rpc": "fullnode:9000"}), Some("rpc")),
        (json!("moon"), None),
    ] {
        let (path, message) = with_error(json!({ "network": network }));
        let mut expected = vec![PathSeg::Key("network".into())];
        expected.extend(key.map(|k| PathSeg::Key(k.into())));
        assert_eq!(path, expected, "{message}");
        assert!(message.contains("is not a network"), "{message}");
    }

    let mut registry = Registry::new();
    soma_flow_stages::kinds::register(&mut registry);
    let with = json!({"ids": [id.to_uppercase().replace("0X", "0x")],
                      "network": {"arch": "v1-small", "rpc": "http://127.0.0.1:9000"}});
    let resolved = registry
        .get("fetch-competitors")
        .unwrap()
        .prepare(with.clone())
        .unwrap_or_else(|e| panic!("{}", e.message))
        .with;
    assert_eq!(resolved["ids"], with["ids"]);
    assert_eq!(resolved["network"]["arch"], "v1-small");
    assert_eq!(resolved["network"]["rpc"], "http://127.0.0.1:9000");
}
