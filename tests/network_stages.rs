//! The network stages through the real binary on the store's local network: the
//! same gRPC client, transactions and chain rules as on testnet.

use crate::common;

use common::{publish_stages, statuses, Project, EMBED, FIXTURE};
use soma_flow_test_support::files_under;

fn publish_pipeline(p: &Project) {
    let stages = publish_stages(
        "0.25",
        "commission: 1000, network: { genesis: false }",
        Some(""),
    );
    p.write("publish.yaml", &format!("name: publish\nstages:\n{stages}"));
}

#[test]
fn commit_then_reveal_across_an_epoch_on_the_local_network() {
    let p = Project::new();
    publish_pipeline(&p);
    let first = p.run(&["run", "publish.yaml"]);
    assert_eq!(
        first.code(),
        3,
        "reveal waits for the next epoch: {}",
        first.all()
    );
    assert!(first.all().contains("throwaway key"), "{}", first.all());
    assert!(
        first.stdout().contains("cannot be revealed before epoch 1"),
        "{}",
        first.all()
    );
    let models = p.localnet_models();
    assert_eq!(models["epoch"], 0);
    let rows = models["models"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "no genesis models: {rows:?}");
    assert_eq!(rows[0]["state"], "pending");
    assert_eq!(
        rows[0]["embedding"],
        serde_json::json!([]),
        "nothing revealed yet"
    );

    // The key sits in the store, private, and nowhere else; beside it the record
    // to reveal with (so a later run can reveal without this run's outputs).
    let network = p.store().join("state/network");
    let mut kept: Vec<_> = std::fs::read_dir(network.join("keys"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    kept.sort();
    let names: Vec<_> = kept
        .iter()
        .map(|k| k.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].ends_with(".json") && names[1].ends_with(".key"),
        "{names:?}"
    );
    let key = std::fs::read_to_string(&kept[1]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for file in kept.iter().chain([&network.join("localnet/signer.key")]) {
        let mode = file.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    for dir in ["state", "state/network/keys", "state/network/localnet"] {
        let mode = p.store().join(dir).metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{dir}/ is owner-only");
    }
    // Before its reveal the key appears in no output, log, record or cache entry.
    let mut seen = first.all();
    for dir in ["runs", "logs", "cache", "objects"] {
        for e in files_under(&p.store().join(dir)) {
            seen.push_str(&String::from_utf8_lossy(&std::fs::read(e).unwrap()));
        }
    }
    assert!(
        !seen.contains(key.trim()),
        "the decryption key leaked before its reveal"
    );

    assert_eq!(p.run(&["localnet", "advance-epoch"]).code(), 0);
    let second = p.run(&["run", "publish.yaml"]);
    assert_eq!(second.code(), 0, "{}", second.all());
    assert_eq!(
        statuses(&p.last_record()),
        [
            ("weights".into(), "hit".into()),
            ("embed".into(), "hit".into()),
            ("commit".into(), "hit".into()),
            ("reveal".into(), "ran".into())
        ]
    );
    let rows = p.localnet_models()["models"].as_array().unwrap().clone();
    assert_eq!(rows[0]["state"], "active");
    let record = p.output_json("publish.yaml", "commit.record");
    assert_eq!(rows[0]["id"], record["model_id"]);
    assert_eq!(rows[0]["url"], record["url"]);
    let expected: Vec<f64> = [0.25, -0.25].repeat(64);
    assert_eq!(
        rows[0]["embedding"],
        serde_json::json!(expected),
        "the chain checked the embedding commitment"
    );

    let third = p.run(&["run", "publish.yaml"]);
    assert_eq!(third.code(), 0);
    assert!(statuses(&p.last_record()).iter().all(|(_, s)| s == "hit"));
}

#[test]
fn a_missed_reveal_window_fails_the_reveal_and_the_next_run_commits_again() {
    let p = Project::new();
    publish_pipeline(&p);
    assert_eq!(p.run(&["run", "publish.yaml"]).code(), 3);
    assert_eq!(p.run(&["localnet", "advance-epoch"]).code(), 0);
    assert_eq!(p.run(&["localnet", "advance-epoch"]).code(), 0);
    // The cached commit record no longer holds: the commit runs again in epoch 2,
    // on a new model (the chain slashed the unrevealed one).
    let out = p.run(&["run", "publish.yaml"]);
    assert_eq!(out.code(), 3, "{}", out.all());
    assert!(
        out.stderr().contains("missed its reveal window"),
        "{}",
        out.all()
    );
    let record = p.output_json("publish.yaml", "commit.record");
    assert_eq!(record["commit_epoch"], 2);
}

#[test]
fn a_wrong_embedding_length_is_refused_before_anything_is_sent() {
    let p = Project::new();
    publish_pipeline(&p);
    let text = std::fs::read_to_string(p.path().join("publish.yaml"))
        .unwrap()
        .replace("* 64", "* 8");
    p.write("publish.yaml", &text);
    let out = p.run(&["run", "publish.yaml"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(
        out.all().contains(
            "the embedding has 16 values, but the local network's target_embedding_dim is 128"
        ),
        "{}",
        out.all()
    );
    let rows = p.localnet_models()["models"].as_array().unwrap().clone();
    assert!(rows.is_empty(), "no model was created: {rows:?}");
}

#[test]
fn testnet_needs_a_public_storage_url() {
    let p = Project::new();
    p.write(
        "t.yaml",
        "name: t\nstages:\n  c:\n    kind: commit\n    inputs: {model: c.x, embedding: c.y}\n    with: {network: testnet}\n",
    );
    let out = p.run(&["validate", "t.yaml"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("give `storage`"), "{}", out.all());
    p.write(
        "t.yaml",
        "name: t\nstages:\n  c:\n    kind: commit\n    inputs: {model: c.x, embedding: c.y}\n    with: {network: {name: moon}}\n",
    );
    let out = p.run(&["validate", "t.yaml"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(
        out.stderr().contains("`moon` is not a network"),
        "{}",
        out.all()
    );
}

#[test]
fn keygen_address_faucet_and_balance() {
    let p = Project::new();
    let out = p.run(&["keygen", "--out", "me.key"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    use std::os::unix::fs::PermissionsExt;
    let mode = p
        .path()
        .join("me.key")
        .metadata()
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let secret = std::fs::read_to_string(p.path().join("me.key")).unwrap();
    assert!(secret.starts_with("somaprivkey1"), "the SDK's key form");
    let address = p.run(&["address", "--key-file", "me.key"]);
    assert_eq!(address.code(), 0, "{}", address.all());
    let address = address.stdout().trim().to_string();
    assert!(
        address.starts_with("0x") && address.len() == 66,
        "printed as every id: {address}"
    );
    assert!(out.stdout().contains(&address), "{}", out.all());
    assert_eq!(
        p.run(&["keygen", "--out", "me.key"]).code(),
        1,
        "never overwrites a key"
    );

    let faucet = p.run(&["faucet", "--key-file", "me.key"]);
    assert_eq!(faucet.code(), 0, "{}", faucet.all());
    let balance = p.run(&["balance", "--address", &address]);
    assert_eq!(balance.code(), 0, "{}", balance.all());
    assert!(balance.stdout().contains("1000 SOMA"), "{}", balance.all());
    assert!(!balance.all().contains(secret.trim()) && !faucet.all().contains(secret.trim()));

    p.write("bad.key", "not a key at all\n");
    let bad = p.run(&["address", "--key-file", "bad.key"]);
    assert_eq!(bad.code(), 1);
    assert!(
        bad.stderr().contains("somaprivkey1") && !bad.stderr().contains("not a key at all"),
        "{}",
        bad.all()
    );
}

/// A faucet nobody answers at is said to be unreachable, not to have refused.
#[test]
fn an_unreachable_faucet_is_called_unreachable() {
    let p = Project::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = p.run(&[
        "faucet",
        "--network",
        &url,
        "--faucet",
        &url,
        "--address",
        &format!("0x{}", "ab".repeat(32)),
    ]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(
        out.stderr().contains(&format!(
            "the faucet of the fullnode at {url} is unreachable"
        )),
        "{}",
        out.all()
    );
}

/// The local network's targets with `status`, as `localnet targets --json` lists them.
fn targets(p: &Project, status: &str) -> Vec<serde_json::Value> {
    let out = p.run(&["localnet", "targets", "--status", status, "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    v["targets"].as_array().unwrap().clone()
}

/// Starts a local network whose genesis models are Active, and fills two of its
/// targets with `localnet submit`, each with a different piece of a source file.
/// Returns the filled targets.
fn fill_two_targets(p: &Project) -> Vec<serde_json::Value> {
    p.write(
        "fetch.yaml",
        "name: fetch\nstages:\n  fetch:\n    kind: fetch-competitors\n    with: {heads: 4}\n",
    );
    assert_eq!(p.run(&["run", "fetch.yaml"]).code(), 0);
    // No model was Active at the change into epoch 1: targets come with the next.
    assert_eq!(p.run(&["localnet", "advance-epoch"]).code(), 0);
    let open = targets(p, "open");
    assert_eq!(open.len(), 100, "the chain's count at v5");
    assert!(open
        .iter()
        .all(|t| t["model_ids"].as_array().unwrap().len() == 2));

    // Each submission sends its own piece, so the two targets hold different data.
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/engine/src/dag.rs");
    let text = std::fs::read(source).unwrap();
    for (i, piece) in text.chunks(1500).take(2).enumerate() {
        let blob = format!("blob{i}.txt");
        std::fs::write(p.path().join(&blob), piece).unwrap();
        let out = p.run(&[
            "localnet", "submit", "--data", &blob, "--count", "1", "--heads", "4",
        ]);
        assert_eq!(out.code(), 0, "{}", out.all());
        assert_eq!(
            out.stdout().matches("filled target").count(),
            1,
            "{}",
            out.all()
        );
    }
    let filled = targets(p, "filled");
    assert_eq!(filled.len(), 2, "{filled:?}");
    filled
}

#[test]
fn a_data_submitter_fills_targets_routed_to_the_genesis_models() {
    let p = Project::new();
    let filled = fill_two_targets(&p);
    for t in &filled {
        assert!(
            t["winning_model_id"].is_string() && t["data_url"].is_string(),
            "{t}"
        );
        assert!(t["model_ids"]
            .as_array()
            .unwrap()
            .contains(&t["winning_model_id"]));
    }
    assert_eq!(
        targets(&p, "open").len(),
        100,
        "each fill spawns a replacement"
    );
}

/// The documents of a stored dataset directory, in order.
fn documents(dir: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(dir);
    let docs = std::fs::read(dir.join("docs.bin")).unwrap();
    let index = std::fs::read(dir.join("index.bin")).unwrap();
    let offsets: Vec<usize> = index
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as usize)
        .collect();
    offsets
        .windows(2)
        .map(|w| docs[w[0]..w[1]].to_vec())
        .collect()
}

#[test]
fn the_data_that_filled_targets_becomes_a_dataset() {
    let p = Project::new();
    let filled = fill_two_targets(&p);
    let data = |t: &serde_json::Value| {
        std::fs::read(common::file_url_path(t["data_url"].as_str().unwrap())).unwrap()
    };
    let pipeline = |name: &str, extra: &str| {
        p.write(
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\nstages:\n  data:\n    kind: fetch-dataset\n    \
                 with: {{source: network, holdout: 0{extra}}}\n"
            ),
        );
        let out = p.run(&["run", &format!("{name}.yaml")]);
        (out, format!("{name}.yaml"))
    };

    // Every filled target's winning data, one document each, byte for byte.
    let (out, file) = pipeline("all", "");
    assert_eq!(out.code(), 0, "{}", out.all());
    let dataset = p.output_path(&file, "data.dataset");
    let mut got = documents(&dataset);
    let mut want: Vec<Vec<u8>> = filled.iter().map(data).collect();
    assert_ne!(want[0], want[1], "two different submissions");
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dataset}/manifest.json")).unwrap())
            .unwrap();
    let recorded: Vec<&str> = manifest["network"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    for t in &filled {
        assert!(recorded.contains(&t["id"].as_str().unwrap()), "{manifest}");
    }
    assert!(manifest["sources"]
        .as_array()
        .unwrap()
        .iter()
        .all(
            |s| s["revision"] == format!("epoch {}", filled[0]["generation_epoch"])
                && s["source_hash"].as_str().unwrap().len() == 64
        ));

    // The same targets: the cached fetch stands.
    let (out, _) = pipeline("all", "");
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(
        statuses(&p.last_record()),
        [("data".to_string(), "hit".to_string())]
    );

    // A new fill: the cached fetch no longer stands.
    std::fs::write(
        p.path().join("blob2.txt"),
        b"fn main() { println!(\"a third\"); }",
    )
    .unwrap();
    let out = p.run(&[
        "localnet",
        "submit",
        "--data",
        "blob2.txt",
        "--count",
        "1",
        "--heads",
        "4",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let filled = targets(&p, "filled");
    assert_eq!(filled.len(), 3);
    let (out, file) = pipeline("all", "");
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(
        statuses(&p.last_record()),
        [("data".to_string(), "ran".to_string())]
    );
    assert_eq!(documents(&p.output_path(&file, "data.dataset")).len(), 3);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!(
            "{}/manifest.json",
            p.output_path(&file, "data.dataset")
        ))
        .unwrap(),
    )
    .unwrap();

    // One winner's data only; and none for a signer whose models won nothing.
    let winner = filled[0]["winning_model_id"].as_str().unwrap();
    let (out, file) = pipeline("one", &format!(", targets: {{won_by: \"{winner}\"}}"));
    assert_eq!(out.code(), 0, "{}", out.all());
    let won = filled
        .iter()
        .filter(|t| t["winning_model_id"] == winner)
        .count();
    assert_eq!(documents(&p.output_path(&file, "data.dataset")).len(), won);
    let (out, file) = pipeline("mine", ", targets: {won_by: me}");
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(
        out.all().contains("offers no filled target"),
        "{}",
        out.all()
    );
    assert!(documents(&p.output_path(&file, "data.dataset")).is_empty());

    // The first target's data is gone from its URL: the fullnode's `/data/{id}`
    // serves it from its blobs. The second's is corrupt everywhere: skipped with a
    // note, or a failure naming the target when `strict`.
    let localnet_blobs = p.store().join("state/network/localnet/blobs");
    std::fs::create_dir_all(&localnet_blobs).unwrap();
    let first = common::file_url_path(filled[0]["data_url"].as_str().unwrap());
    let second = common::file_url_path(filled[1]["data_url"].as_str().unwrap());
    let cached = p.store().join("state/data/network");
    std::fs::remove_dir_all(&cached).unwrap();
    let checksum = |id: &serde_json::Value| {
        manifest["network"]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == *id)
            .unwrap()["checksum"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first_bytes = std::fs::read(&first).unwrap();
    std::fs::write(
        localnet_blobs.join(checksum(&filled[0]["id"])),
        &first_bytes,
    )
    .unwrap();
    std::fs::remove_file(&first).unwrap();
    let mut bad = std::fs::read(&second).unwrap();
    bad[0] ^= 1;
    std::fs::write(&second, &bad).unwrap();
    let second_id = filled[1]["id"].as_str().unwrap();

    let (out, _) = pipeline("strict", ", strict: true");
    assert_ne!(out.code(), 0, "{}", out.all());
    assert!(
        out.all().contains(second_id) && out.all().contains("Blake2b-256"),
        "{}",
        out.all()
    );
    let (out, file) = pipeline("lenient", ", seed: 1");
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(
        out.all().contains(&format!("skipped target {second_id}")),
        "{}",
        out.all()
    );
    let mut got = documents(&p.output_path(&file, "data.dataset"));
    let mut want: Vec<Vec<u8>> = vec![first_bytes, data(&filled[2])];
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn bad_commission_is_a_validation_error() {
    let p = Project::new();
    p.write(
        "bad.yaml",
        "name: bad\nstages:\n  c:\n    kind: commit\n    inputs: {model: c.x, embedding: c.y}\n    with: {commission: 20000}\n",
    );
    let out = p.run(&["validate", "bad.yaml"]);
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr().contains("bad.yaml:6:24") && out.stderr().contains("over 100%"),
        "{}",
        out.all()
    );
}

/// Two other owners publish; the second one's ciphertext is then corrupted in
/// storage. Returns their model ids.
fn two_competitors(p: &Project) -> (String, String) {
    let stages = publish_stages(
        "${params.e}",
        r#"network: { key_file: "${params.key}", genesis: false }"#,
        Some(r#"network: { key_file: "${params.key}" }"#),
    );
    let params = "params: { key: a.key, e: 0.5 }";
    p.write(
        "owner.yaml",
        &format!("name: owner\n{params}\nstages:\n{stages}"),
    );
    assert_eq!(p.run(&["keygen", "--out", "a.key"]).code(), 0);
    assert_eq!(p.run(&["keygen", "--out", "b.key"]).code(), 0);
    assert_eq!(p.run(&["run", "owner.yaml"]).code(), 3);
    assert_eq!(
        p.run(&["run", "owner.yaml", "--set", "key=b.key", "--set", "e=-0.5"])
            .code(),
        3
    );
    assert_eq!(p.run(&["localnet", "advance-epoch"]).code(), 0);
    assert_eq!(p.run(&["run", "owner.yaml"]).code(), 0);
    assert_eq!(
        p.run(&["run", "owner.yaml", "--set", "key=b.key", "--set", "e=-0.5"])
            .code(),
        0
    );
    let rows = p.localnet_models()["models"].as_array().unwrap().clone();
    assert!(rows.iter().all(|r| r["state"] == "active"), "{rows:?}");
    // The registry lists models by id, not by age: tell them apart by embedding.
    let by_first = |e: f64| {
        rows.iter()
            .find(|r| r["embedding"][0] == e)
            .unwrap()
            .clone()
    };
    let (good, corrupt) = (by_first(0.5), by_first(-0.5));
    let url = url::Url::parse(corrupt["url"].as_str().unwrap()).unwrap();
    let path = url.to_file_path().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let id = |r: &serde_json::Value| r["id"].as_str().unwrap().to_owned();
    (id(&good), id(&corrupt))
}

/// The `fetch.models` directory of fetch.yaml's latest run, and its listing.
fn fetched_models(p: &Project) -> (String, Vec<serde_json::Value>) {
    let dir = p.output_path("fetch.yaml", "fetch.models");
    let listing = std::fs::read(format!("{dir}/models.json")).unwrap();
    (dir, serde_json::from_slice(&listing).unwrap())
}

#[test]
fn fetch_competitors_decrypts_revealed_models_and_skips_a_corrupt_one() {
    let p = Project::new();
    let (good, corrupt) = two_competitors(&p);
    p.write(
        "fetch.yaml",
        "name: fetch\nparams: {strict: false}\nstages:\n  fetch:\n    kind: fetch-competitors\n    with: {strict: '${params.strict}'}\n",
    );
    let out = p.run(&["run", "fetch.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    // The manifest URL's bytes fail the checksum, and so does the fullnode's
    // `/model/{id}`, which checks what it serves.
    assert!(
        out.stdout()
            .contains(&format!("skipped competitor {corrupt}")),
        "{}",
        out.all()
    );
    let (dir, listed) = fetched_models(&p);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], good.as_str());
    assert_eq!(
        listed[0]["embedding"],
        serde_json::json!([0.5, -0.5].repeat(64))
    );
    let fetched = std::fs::read(format!("{dir}/{good}.safetensors")).unwrap();
    assert_eq!(
        fetched,
        std::fs::read(FIXTURE).unwrap(),
        "decrypted to the exact committed bytes"
    );

    let out = p.run(&["run", "fetch.yaml", "--set", "strict=true"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(
        out.all().contains("competitors failed their checks"),
        "{}",
        out.all()
    );

    // The winner of a score stage over the fetched competitors is reported.
    p.write(
        "score.yaml",
        &format!(
            "name: s\nstages:\n  fetch:\n    kind: fetch-competitors\n  blob:\n    kind: command\n    with: {{run: 'head -c 3000 {FIXTURE} > outputs/b', outs: [b]}}\n  score:\n    kind: score\n    inputs: {{competitors: fetch.models, data: blob.b}}\n    with: {{heads: 4}}\n"
        ),
    );
    let out = p.run(&["run", "score.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stdout().contains("← winner"), "{}", out.all());
}

#[test]
fn commit_computes_the_genesis_embedding_when_none_is_given() {
    let p = Project::new();
    p.write(
        "doc.txt",
        &"fn main() { println!(\"hello\"); }\n".repeat(40),
    );
    p.write(
        "embed.yaml",
        &format!(
            r#"
name: embed
stages:
  weights:
    kind: command
    with: {{ run: "cp {FIXTURE} outputs/model", outs: [model] }}
  data:
    kind: fetch-dataset
    with: {{ source: local, paths: [doc.txt], holdout: 0 }}
  commit:
    kind: commit
    inputs: {{ model: weights.model, data: data.dataset }}
    with: {{ embed: {{ heads: 4, sequences: 2, seq_len: 64 }} }}
"#
        ),
    );
    let out = p.run(&["run", "embed.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let rows = p.localnet_models()["models"].as_array().unwrap().clone();
    let record = p.output_json("embed.yaml", "commit.record");
    let mine = rows
        .iter()
        .find(|r| r["id"] == record["model_id"])
        .expect("mine");
    assert_eq!(mine["state"], "pending");
    let embedding: Vec<f64> = serde_json::from_value(record["embedding"].clone()).unwrap();
    assert_eq!(embedding.len(), 128, "v1-tiny's dimension");
    let norm: f64 = embedding.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-4,
        "a unit-norm genesis embedding: {norm}"
    );
}

#[test]
fn a_fresh_local_network_offers_its_genesis_models_as_competitors() {
    let p = Project::new();
    p.write(
        "fetch.yaml",
        "name: fetch\nstages:\n  fetch:\n    kind: fetch-competitors\n    with: {strict: true, heads: 4}\n",
    );
    let out = p.run(&["run", "fetch.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let models = p.localnet_models();
    assert_eq!(
        models["epoch"], 1,
        "revealed in epoch 1, as the chain requires"
    );
    let rows = models["models"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["state"] == "active"), "{rows:?}");
    let (dir, listed) = fetched_models(&p);
    assert_eq!(listed.len(), 2);
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/stages/assets/genesis");
    let mut decrypted: Vec<Vec<u8>> = listed
        .iter()
        .map(|m| std::fs::read(format!("{dir}/{}", m["file"].as_str().unwrap())).unwrap())
        .collect();
    let mut shipped: Vec<Vec<u8>> = ["genesis-code", "genesis-prose"]
        .iter()
        .map(|name| std::fs::read(format!("{assets}/{name}.safetensors")).unwrap())
        .collect();
    decrypted.sort();
    shipped.sort();
    assert!(decrypted == shipped, "both decrypt to the shipped weights");

    // A cached fetch stands while the registry offers the same models.
    assert_eq!(p.run(&["run", "fetch.yaml"]).code(), 0);
    assert_eq!(statuses(&p.last_record())[0].1, "hit");
}

#[test]
fn an_edited_local_competitor_is_fetched_again() {
    let p = Project::new();
    std::fs::copy(FIXTURE, p.path().join("theirs.safetensors")).unwrap();
    p.write(
        "local.yaml",
        "name: local\nstages:\n  fetch:\n    kind: fetch-competitors\n    with: {paths: [theirs.safetensors], heads: 4, strict: true}\n",
    );
    let status = |p: &Project| {
        let out = p.run(&["run", "local.yaml"]);
        assert_eq!(out.code(), 0, "{}", out.all());
        statuses(&p.last_record())[0].1.clone()
    };
    assert_eq!(status(&p), "ran");
    assert_eq!(status(&p), "hit");
    let genesis = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/stages/assets/genesis/genesis-code.safetensors"
    );
    std::fs::copy(genesis, p.path().join("theirs.safetensors")).unwrap();
    assert_eq!(status(&p), "ran", "new content, new key");
}

#[test]
fn bad_network_dataset_options_are_validation_errors() {
    let p = Project::new();
    let check = |with: &str, at: &str, says: &str| {
        p.write(
            "bad.yaml",
            &format!("name: bad\nstages:\n  d:\n    kind: fetch-dataset\n    with: {with}\n"),
        );
        let out = p.run(&["validate", "bad.yaml"]);
        assert_eq!(out.code(), 2, "{}", out.all());
        assert!(
            out.stderr().contains(at) && out.stderr().contains(says),
            "{with}: {}",
            out.all()
        );
    };
    check(
        "{source: network, targets: {won_by: someone}}",
        "bad.yaml:5",
        "`someone` is not `any`, `me` or a model id",
    );
    check(
        "{source: network, targets: {from_epoch: 5, to_epoch: 2}}",
        "bad.yaml:5",
        "`from_epoch` 5 is after `to_epoch` 2",
    );
    check(
        "{source: local, paths: [a], targets: {won_by: me}}",
        "bad.yaml:5",
        "`targets` belongs to `source: network`",
    );
    check(
        "{source: network, targets: {status: [open]}}",
        "bad.yaml:5",
        "open",
    );
}

/// With no filled target, `gaps` says so and how to get some.
#[test]
fn gaps_without_filled_targets_says_how_to_get_some() {
    let p = Project::new();
    let out = p.run(&["gaps", "--model", FIXTURE, "--heads", "4"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(
        out.stdout()
            .contains("no filled target to measure on the local network")
            && out.stdout().contains("soma-flow localnet submit"),
        "{}",
        out.all()
    );
}

#[test]
fn gaps_score_my_model_against_each_targets_winner_as_score_does() {
    let p = Project::new();
    let filled = fill_two_targets(&p);
    p.write(
        "gaps.yaml",
        &format!(
            r#"
name: gaps
stages:
  mine:
    kind: command
    with: {{ run: "cp {FIXTURE} outputs/model", outs: [model] }}
  gaps:
    kind: gaps
    inputs: {{ model: mine.model }}
    with: {{ heads: 4 }}
  fetch:
    kind: fetch-competitors
    with: {{ heads: 4 }}
  blob:
    kind: fetch-dataset
    with: {{ source: local, paths: [blob0.txt], holdout: 0 }}
  score:
    kind: score
    inputs: {{ model: mine.model, competitors: fetch.models, data: blob.dataset }}
    with: {{ heads: 4 }}
"#
        ),
    );
    let out = p.run(&["run", "gaps.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.all().contains("filled targets"), "{}", out.all());
    let table = p.output_json("gaps.yaml", "gaps.table");
    let rows = table.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{table}");
    for (row, t) in rows.iter().zip({
        let mut f = filled.clone();
        f.sort_by_key(|t| t["id"].as_str().unwrap().to_owned());
        f
    }) {
        assert_eq!(row["target"], t["id"]);
        assert_eq!(row["winner"], t["winning_model_id"]);
        let margin = row["my_loss"].as_f64().unwrap() - row["winner_loss"].as_f64().unwrap();
        assert!((row["margin"].as_f64().unwrap() - margin).abs() < 1e-5);
        assert_eq!(row["would_win"], margin < 0.0);
        assert_eq!(
            row["routed_to_me"], false,
            "the genesis models are not mine"
        );
    }

    // `score` on the same data with the same seed gives the same losses, bit for bit.
    let blob0 = std::fs::read(p.path().join("blob0.txt")).unwrap();
    let row = rows
        .iter()
        .find(|r| {
            let t = filled.iter().find(|t| t["id"] == r["target"]).unwrap();
            std::fs::read(common::file_url_path(t["data_url"].as_str().unwrap())).unwrap() == blob0
        })
        .expect("blob0 filled a target");
    let scores = p.output_json("gaps.yaml", "score.scores");
    let loss = |name: &str| {
        scores["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {scores}"))["loss"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(row["my_loss"].as_f64().unwrap(), loss("mine.model"));
    assert_eq!(
        row["winner_loss"].as_f64().unwrap(),
        loss(row["winner"].as_str().unwrap())
    );

    // The summary adds the table up; the dataset holds the data I lose on.
    let summary = p.output_json("gaps.yaml", "gaps.summary");
    let wins = rows.iter().filter(|r| r["would_win"] == true).count();
    assert_eq!(summary["targets"], 2);
    assert_eq!(summary["would_win"], wins);
    assert_eq!(summary["worst"].as_array().unwrap().len(), 2 - wins);
    let lost = documents(&p.output_path("gaps.yaml", "gaps.dataset"));
    assert_eq!(lost.len(), 2 - wins);

    // `soma-flow gaps` measures the same.
    let out = p.run(&["gaps", "--model", FIXTURE, "--heads", "4", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let printed: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(printed["table"], table);
    assert_eq!(printed["summary"]["would_win"], wins);

    // Unchanged network: the gaps stand.
    let out = p.run(&["run", "gaps.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(statuses(&p.last_record()).iter().all(|(_, s)| s == "hit"));
}

#[test]
fn placement_routes_candidates_among_the_local_registry_and_draws_a_map() {
    let p = Project::new();
    p.write(
        "place.yaml",
        &format!(
            r#"
name: place
stages:
  a:
    kind: command
    with: {{ run: "{EMBED} 0.25 > outputs/embedding", outs: [embedding] }}
  b:
    kind: command
    with: {{ run: "{EMBED} -0.5 > outputs/embedding", outs: [embedding] }}
  place:
    kind: placement
    inputs: {{ candidates: [a.embedding, b.embedding] }}
    with: {{ samples: 50 }}
  mine:
    kind: command
    with: {{ run: "cp {FIXTURE} outputs/model", outs: [model] }}
  # Nothing is filled yet: no gaps, said so, and an empty dataset.
  gaps:
    kind: gaps
    inputs: {{ model: mine.model }}
    with: {{ heads: 4 }}
"#
        ),
    );
    let out = p.run(&["run", "place.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    // Two genesis models and a candidate, three models per target: all meet everywhere.
    assert!(
        out.all().contains("every target reaches every model"),
        "{}",
        out.all()
    );
    let placement = p.output_json("place.yaml", "place.placement");
    assert_eq!(placement["k"], 3, "the chain's target_models_per_target");
    assert_eq!(placement["registry"].as_array().unwrap().len(), 2);
    for landing in placement["landings"].as_array().unwrap() {
        assert_eq!(landing["routed"], 50, "{landing}");
        let met = landing["competitors"].as_array().unwrap();
        assert_eq!(met.len(), 2, "{landing}");
        assert!(met.iter().all(|c| c[1] == 50), "{landing}");
    }
    let map = std::fs::read(p.output_path("place.yaml", "place.map")).unwrap();
    assert!(map.starts_with(b"\x89PNG"), "the map is a PNG");
    assert!(out.all().contains("I would win 0/0"), "{}", out.all());
    assert_eq!(p.output_json("place.yaml", "gaps.summary")["targets"], 0);
    assert!(documents(&p.output_path("place.yaml", "gaps.dataset")).is_empty());

    // `soma-flow network map` places the same embedding alike.
    let a = p.output_path("place.yaml", "a.embedding");
    let out = p.run(&[
        "network",
        "map",
        "--embedding",
        &a,
        "--samples",
        "50",
        "--json",
        "--out",
        "m.png",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let printed: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(
        printed["landings"][0]["routed"],
        placement["landings"][0]["routed"]
    );
    assert!(p.path().join("m.png").is_file());
    let out = p.run(&["network", "map", "--samples", "5"]);
    assert_ne!(out.code(), 0);
    assert!(out.all().contains("nothing to place"), "{}", out.all());

    // Same registry: the placement stands. Nothing to place: a clear error.
    let out = p.run(&["run", "place.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(statuses(&p.last_record()).iter().all(|(_, s)| s == "hit"));
    p.write(
        "none.yaml",
        "name: none\nstages:\n  place:\n    kind: placement\n    with: {samples: 10}\n",
    );
    let out = p.run(&["run", "none.yaml"]);
    assert_ne!(out.code(), 0);
    assert!(out.all().contains("nothing to place"), "{}", out.all());
}

#[test]
fn embed_updates_from_my_wins_when_due_and_keeps_the_registered_one_otherwise() {
    let p = Project::new();
    publish_pipeline(&p);
    assert_eq!(p.run(&["run", "publish.yaml"]).code(), 3);
    assert_eq!(p.run(&["localnet", "advance-epoch"]).code(), 0);
    let out = p.run(&["run", "publish.yaml"]);
    assert_eq!(out.code(), 0, "revealed: {}", out.all());
    // Mine is the only model: every target routes to it, and every fill is my win.
    assert_eq!(p.run(&["localnet", "advance-epoch"]).code(), 0);
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/engine/src/dag.rs");
    let text = std::fs::read(source).unwrap();
    for (i, piece) in text.chunks(1200).take(2).enumerate() {
        std::fs::write(p.path().join(format!("won{i}.txt")), piece).unwrap();
    }
    let out = p.run(&[
        "localnet", "submit", "--data", "won0.txt", "--data", "won1.txt", "--count", "2",
        "--heads", "4",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let registered = p.localnet_models()["models"][0]["embedding"].clone();

    p.write(
        "update.yaml",
        &format!(
            r#"
name: update
stages:
  weights:
    kind: command
    with: {{ run: "cp {FIXTURE} outputs/model", outs: [model] }}
  embed:
    kind: embed
    inputs: {{ model: weights.model }}
    with: {{ mode: update, network: {{ genesis: false }}, every_wins: 2, seq_len: 256, heads: 4 }}
"#
        ),
    );
    let embedding = || {
        let dir = p.output_path("update.yaml", "embed.embedding");
        let bytes = std::fs::read(format!("{dir}/embedding.json")).unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    };
    let out = p.run(&["run", "update.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.all().contains("update due (2 wins"), "{}", out.all());
    let file = embedding();
    assert_eq!(file["update"]["updated"], true, "{file}");
    assert_eq!(file["update"]["wins"].as_array().unwrap().len(), 2);
    assert_eq!(file["mode"], "update");
    assert_ne!(file["embedding"], registered, "the won data moved it");

    // Those wins are used: the next run is not due and keeps the registered one.
    let out = p.run(&["run", "update.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(
        out.all().contains("update not due: 0 of 2 wins"),
        "{}",
        out.all()
    );
    let file = embedding();
    assert_eq!(file["update"]["updated"], false);
    assert_eq!(file["embedding"], registered);
}

/// An owner runs several models: each pipeline commits to the model it names, a second
/// pipeline never takes over the first's model, and the store maps the names to ids.
#[test]
fn each_pipeline_commits_to_the_model_it_names() {
    let p = Project::new();
    let pipeline = |name: &str, embedding: &str| {
        let commit = format!("network: {{ genesis: false, model: {name} }}");
        let stages = publish_stages(embedding, &commit, None);
        p.write(
            &format!("{name}.yaml"),
            &format!("name: {name}\nstages:\n{stages}"),
        )
    };
    pipeline("main", "0.25");
    pipeline("specialist", "0.5");
    for name in ["main", "specialist"] {
        let out = p.run(&["run", &format!("{name}.yaml")]);
        assert_eq!(out.code(), 0, "{name}: {}", out.all());
        assert!(
            out.stdout().contains(&format!("(`{name}`)")),
            "{}",
            out.all()
        );
    }
    let main = p.output_json("main.yaml", "commit.record")["model_id"].clone();
    let specialist = p.output_json("specialist.yaml", "commit.record")["model_id"].clone();
    assert_ne!(
        main, specialist,
        "the second pipeline made a model of its own"
    );
    let rows = p.localnet_models()["models"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["state"] == "pending"), "{rows:?}");
    let names: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.store().join("state/network/models.json")).unwrap(),
    )
    .unwrap();
    let owner_names = names.as_object().unwrap().values().next().unwrap();
    let names = owner_names.as_object().unwrap().values().next().unwrap();
    assert_eq!(names["main"], main);
    assert_eq!(names["specialist"], specialist);
}
