//! The `hf` source through the real hf-hub client against a local Hub (see
//! `data_common/hub.rs`): listing, pattern matching, downloads with checksums and
//! resumption, the cache, and the Hub's error classes. No internet is used.

use crate::data_common;

use std::sync::atomic::AtomicUsize;
use std::sync::OnceLock;

use data_common::hub::{sha256_hex, Access, Hub, HubFile, HubRepo, COMMIT};
use data_common::*;
use serde_json::json;
use soma_flow_engine::record::StageStatus;
use soma_flow_engine::{KeyContext, StageKind};
use soma_flow_stages::kinds::fetch_dataset::FetchDatasetKind;

const TOKEN: &str = "hf_local_test_token";

fn jsonl_file() -> Vec<u8> {
    jsonl_bytes(&[
        vec![("text", "hub json one"), ("meta", "a")],
        vec![("text", "hub json two"), ("meta", "b")],
    ])
}

fn parquet_file() -> Vec<u8> {
    let rows: Vec<String> = (0..30).map(|i| format!("hub parquet row {i:02}")).collect();
    parquet_bytes(
        &[("content", rows.iter().map(|r| Some(r.as_str())).collect())],
        7,
    )
}

fn repo(id: &str, access: Access, broken_downloads: usize) -> HubRepo {
    HubRepo {
        access,
        broken_downloads: AtomicUsize::new(broken_downloads),
        ..HubRepo::new(
            id,
            vec![
                HubFile {
                    path: ".gitattributes".into(),
                    bytes: b"*.parquet filter=lfs".to_vec(),
                    lfs: false,
                },
                HubFile {
                    path: "README.md".into(),
                    bytes: b"# a dataset card".to_vec(),
                    lfs: false,
                },
                HubFile {
                    path: "data/train-0.jsonl".into(),
                    bytes: jsonl_file(),
                    lfs: false,
                },
                HubFile {
                    path: "data/train-1.parquet".into(),
                    bytes: parquet_file(),
                    lfs: true,
                },
                HubFile {
                    path: "other/notes.txt".into(),
                    bytes: b"notes".to_vec(),
                    lfs: false,
                },
            ],
        )
    }
}

/// One Hub per test binary: hf-hub reads HF_ENDPOINT and HF_TOKEN from the
/// environment, which is process-wide.
fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| {
        let hub = Hub::start(vec![
            repo("soma/corpus", Access::Open, 0),
            repo("soma/flaky", Access::Open, 1),
            repo("soma/errors", Access::Open, 0),
            HubRepo {
                tampered: true,
                ..repo("soma/tampered", Access::Open, 0)
            },
            repo("soma/gated", Access::Unauthorized, 0),
            repo("soma/private", Access::Forbidden, 0),
            repo("soma/moving", Access::Open, 0),
            repo("soma/down", Access::Unavailable, 0),
        ]);
        std::env::set_var("HF_ENDPOINT", &hub.endpoint);
        std::env::set_var("HF_TOKEN", TOKEN);
        hub
    })
}

fn expected_docs() -> Vec<String> {
    let mut docs = vec!["hub json one".to_owned(), "hub json two".to_owned()];
    docs.extend((0..30).map(|i| format!("hub parquet row {i:02}")));
    docs
}

#[test]
fn fetches_a_hub_dataset_with_hf_hub() {
    let hub = hub();
    let ws = Workspace::new();
    // Without `files`, the data files (Parquet, JSON Lines) are taken: not the card.
    let opts = options(json!({"source": "hf", "repo": "soma/corpus", "holdout": 0.0}));
    let fetched = ws.fetch(&opts, "first").unwrap();
    assert_eq!(fetched.train_docs(), expected_docs());
    let sources = &fetched.report.train.sources;
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[1].path, "data/train-1.parquet");
    assert_eq!(sources[1].repo.as_deref(), Some("soma/corpus"));
    assert_eq!(sources[1].revision.as_deref(), Some(COMMIT));
    assert_eq!(
        sources[1].source_hash.as_deref(),
        Some(sha256_hex(&parquet_file()).as_str())
    );
    assert_eq!(
        sources[1].blake3,
        blake3::hash(&parquet_file()).to_hex().to_string()
    );
    assert_eq!(sources[0].size, jsonl_file().len() as u64);

    let requests: Vec<String> = hub
        .requests()
        .into_iter()
        .filter(|r| r.contains("soma/corpus"))
        .collect();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("GET /api/datasets/soma/corpus/tree/{COMMIT}"))),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.ends_with(&format!("auth=Bearer {TOKEN}"))),
        "HF_TOKEN is sent with every request: {requests:#?}"
    );
    let downloads = |requests: &[String]| {
        requests
            .iter()
            .filter(|r| r.starts_with("GET /datasets/"))
            .count()
    };
    assert_eq!(downloads(&requests), 2);

    // A second run finds the files in the cache and writes identical bytes.
    let before = hub.requests().len();
    let again = ws.fetch(&opts, "again").unwrap();
    assert_eq!(again.files(), fetched.files());
    let later: Vec<String> = hub.requests()[before..]
        .iter()
        .filter(|r| r.contains("soma/corpus"))
        .cloned()
        .collect();
    assert_eq!(downloads(&later), 0, "{later:#?}");

    // Patterns select from the repo's listing; `revision` may be the commit itself.
    let opts = options(
        json!({"source": "hf", "repo": "soma/corpus", "revision": COMMIT, "files": ["other/*.txt"], "holdout": 0.0}),
    );
    assert_eq!(ws.fetch(&opts, "notes").unwrap().train_docs(), ["notes"]);
}

#[test]
fn resumes_a_download_that_broke_off() {
    let hub = hub();
    let ws = Workspace::new();
    let opts = options(
        json!({"source": "hf", "repo": "soma/flaky", "files": ["data/*.parquet"], "holdout": 0.0}),
    );
    let fetched = ws.fetch(&opts, "flaky").unwrap();
    assert_eq!(fetched.train_docs(), expected_docs()[2..]);
    let half = parquet_file().len() / 2;
    let requests = hub.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("soma/flaky") && r.contains(&format!("range=bytes={half}-"))),
        "the download continues from byte {half}: {requests:#?}"
    );
    assert!(
        fetched
            .progress
            .iter()
            .any(|l| l.contains("resuming at byte")),
        "{:#?}",
        fetched.progress
    );
}

#[test]
fn hub_errors_say_what_is_wrong() {
    hub();
    let ws = Workspace::new();
    let fetch = |json: serde_json::Value| error_text(ws.fetch(&options(json), "err"));

    let e = fetch(json!({"source": "hf", "repo": "soma/gated"}));
    assert!(
        e.contains("soma/gated: access denied (401)") && e.contains("HF_TOKEN"),
        "{e}"
    );
    let e = fetch(json!({"source": "hf", "repo": "soma/private"}));
    assert!(
        e.contains("soma/private: access denied (403)") && e.contains("accept its terms"),
        "{e}"
    );
    let e = fetch(json!({"source": "hf", "repo": "soma/missing"}));
    assert!(
        e.ends_with("Hugging Face dataset soma/missing not found"),
        "{e}"
    );
    let e = fetch(json!({"source": "hf", "repo": "soma/missing", "revision": "v1"}));
    assert!(
        e.ends_with("Hugging Face dataset soma/missing not found"),
        "{e}"
    );
    let e = fetch(json!({"source": "hf", "repo": "soma/errors", "revision": "v9"}));
    assert!(e.contains("soma/errors not found at revision `v9`"), "{e}");
    let e = fetch(json!({"source": "hf", "repo": "soma/errors", "files": ["*.csv"]}));
    assert!(
        e.contains("no files in Hugging Face dataset soma/errors@main matched [\"*.csv\"]")
            && e.contains("data/train-1.parquet"),
        "{e}"
    );
    let e = fetch(json!({"source": "hf", "repo": "soma/tampered", "files": ["*.parquet"]}));
    let sha = sha256_hex(&parquet_file());
    assert!(
        e.contains("data/train-1.parquet: downloaded sha256 ")
            && e.contains(&format!("does not match the expected {sha}")),
        "{e}"
    );
    let e = fetch(json!({"source": "hf", "repo": "soma/errors", "column": "body"}));
    assert!(
        e.contains("data/train-0.jsonl line 1: no field `body` (available: meta, text)"),
        "{e}"
    );
}

#[test]
fn a_branch_enters_the_cache_key_as_its_commit() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = "name: hf\nstages:\n  data:\n    kind: fetch-dataset\n    with: {source: hf, repo: soma/moving, revision: main, holdout: 0}\n";
    let run = || {
        let record = run_pipeline(dir.path(), pipeline);
        let stage = record.stages["data"].clone();
        assert!(stage.message.is_none(), "{:?}", stage.message);
        stage
    };
    let first = run();
    assert_eq!(first.status, StageStatus::Ran);
    assert_eq!(first.key_material, json!({"commit": COMMIT}));
    assert_eq!(run().status, StageStatus::Hit, "the branch has not moved");

    // A push moves `main`: same `with`, new data, so the stage runs again.
    let moved = "0123456789abcdef0123456789abcdef01234567";
    hub.move_main("soma/moving", moved);
    let second = run();
    assert_eq!(second.status, StageStatus::Ran);
    assert_eq!(second.key_material, json!({"commit": moved}));
    assert_ne!(second.key, first.key);
    let store = soma_flow_engine::store::Store::open(&dir.path().join("store")).unwrap();
    let dataset =
        soma_flow_stages::data::Dataset::open(&store.path_of(&second.outputs["dataset"])).unwrap();
    assert_eq!(
        dataset.manifest().sources[0].revision.as_deref(),
        Some(moved),
        "the manifest pins the new commit"
    );

    // A commit id is its own key material: the Hub is not asked (it knows no such
    // commit, and the request log stays as it was).
    let key = |repo: &str, revision: &str| {
        let with = options(json!({"source": "hf", "repo": repo, "revision": revision}));
        let context = KeyContext {
            stage: "data",
            pipeline_dir: dir.path(),
        };
        FetchDatasetKind.key_material(&with, &context)
    };
    let asked = || {
        hub.requests()
            .iter()
            .filter(|r| r.contains("soma/moving"))
            .count()
    };
    let before = asked();
    let pinned = "fedcba9876543210fedcba9876543210fedcba98";
    assert_eq!(
        key("soma/moving", pinned).unwrap(),
        json!({"commit": pinned})
    );
    assert_eq!(asked(), before);
    // A branch needs the Hub; when it cannot be reached the error names the repo and
    // the revision, and says how to do without.
    let e = format!("{:#}", key("soma/down", "main").unwrap_err());
    assert!(
        e.contains("cannot resolve revision `main` of Hugging Face dataset soma/down")
            && e.contains("40-digit commit id"),
        "{e}"
    );
}
