//! The remote store against a local S3 server (moto): two stores stand for two
//! machines sharing one bucket.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use soma_flow_engine::app::{self, RemoteArgs};
use soma_flow_engine::record::{RunRecord, StageStatus};
use soma_flow_engine::remote::{open_url, KeyScheme, Remote, Trust, TrustSetting};
use soma_flow_engine::store::{Check, Store};

use crate::harness::{options, statuses, Project};
use crate::moto;

const PIPELINE: &str = r#"
name: shared
params:
  text: hello
stages:
  a:
    kind: step
    with: { text: "${params.text}", tally: TALLY }
  b:
    kind: step
    inputs: { x: a.out }
    with: { text: " world", tally: TALLY }
  tree:
    kind: command
    with:
      run: mkdir -p outputs/t/sub outputs/t/empty && echo data > outputs/t/sub/f && printf '#!/bin/sh\n' > outputs/t/x.sh && chmod +x outputs/t/x.sh
      outs: [t]
"#;

/// `PIPELINE` plus a stage that needs `b`'s output, so it must come down.
const DOWNSTREAM: &str = r#"
  c:
    kind: step
    inputs: { x: b.out }
    with: { text: "!", tally: TALLY }
"#;

/// A fresh bucket on the shared moto server, as an `s3://` URL.
fn bucket(name: &str) -> String {
    moto::shared(name);
    format!("s3://{name}/cache")
}

fn remote(url: &str) -> Arc<Remote> {
    Arc::new(Remote::open(url).unwrap_or_else(|e| panic!("{e:#}")))
}

/// Runs `file` of `project` against `store_dir` (one "machine") and `remote`.
fn run_on(project: &Project, store_dir: &str, file: &str, remote: &Arc<Remote>) -> RunRecord {
    let plan = project.load(file, &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut opts = options(4, &[]);
    opts.remote = Some(Arc::clone(remote));
    let store = Store::open(&project.path().join(store_dir)).unwrap();
    app::execute(Arc::new(plan), store, opts).unwrap()
}

fn store(project: &Project, dir: &str) -> Store {
    Store::open(&project.path().join(dir)).unwrap()
}

/// Does to the object at `rel` under the bucket URL what `act` does, as someone else
/// with access to the bucket might.
fn raw<T, F: std::future::Future<Output = T>>(
    url: &str,
    rel: &str,
    act: impl FnOnce(Arc<dyn ObjectStore>, ObjectPath) -> F,
) -> T {
    let (store, prefix) = open_url(url).unwrap();
    let path = ObjectPath::from(format!("{prefix}/{rel}"));
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(act(store, path))
}

fn put_raw(url: &str, rel: &str, bytes: &[u8]) {
    let payload = PutPayload::from(bytes.to_vec());
    raw(url, rel, |store, path| async move {
        store.put(&path, payload).await
    })
    .unwrap();
}

fn delete_raw(url: &str, rel: &str) {
    raw(
        url,
        rel,
        |store, path| async move { store.delete(&path).await },
    )
    .unwrap();
}

fn remote_has(url: &str, rel: &str) -> bool {
    raw(
        url,
        rel,
        |store, path| async move { store.head(&path).await },
    )
    .is_ok()
}

/// Runs a generic command (`push`, `pull`) on the store `dir` of `project`.
fn command(project: &Project, dir: &str, command: app::Command) -> app::ExitStatus {
    let store = app::StoreArgs {
        store: Some(project.path().join(dir)),
    };
    app::run_command(&crate::harness::env(), command, &store).unwrap()
}

fn remote_args(url: &str) -> RemoteArgs {
    RemoteArgs {
        url: Some(url.to_string()),
    }
}

#[test]
fn a_second_machine_gets_every_stage_from_the_remote_and_downloads_only_what_it_needs() {
    let url = bucket("remote-two-machines");
    let remote = remote(&url);
    let p = Project::new();
    p.write("p.yaml", PIPELINE);
    let a = run_on(&p, "store-a", "p.yaml", &remote);
    assert!(statuses(&a).iter().all(|(_, s)| *s == StageStatus::Ran));
    assert_eq!(p.executed().len(), 2);

    // Machine B: every stage is a remote hit, nothing executes, nothing comes down.
    let b = run_on(&p, "store-b", "p.yaml", &remote);
    assert_eq!(p.executed().len(), 2, "B executed a stage");
    for (name, s) in &b.stages {
        assert_eq!(s.status, StageStatus::Hit, "{name}");
        assert!(s.remote, "{name} was not a remote hit");
        assert_eq!(s.outputs, a.stages[name].outputs, "{name}");
    }
    let store_b = store(&p, "store-b");
    for s in b.stages.values() {
        for out in s.outputs.values() {
            assert!(matches!(store_b.verify(out).unwrap(), Check::Missing));
        }
    }

    // A stage that must run on B brings down exactly the input it reads, verified.
    p.write("p.yaml", &format!("{PIPELINE}{DOWNSTREAM}"));
    let b2 = run_on(&p, "store-b", "p.yaml", &remote);
    assert_eq!(b2.stages["c"].status, StageStatus::Ran);
    assert_eq!(p.executed(), ["a", "b", "c"]);
    let text = std::fs::read_to_string(store_b.path_of(&b2.stages["c"].outputs["out"])).unwrap();
    assert_eq!(text, "hello world!");
    assert!(matches!(
        store_b.verify(&b2.stages["b"].outputs["out"]).unwrap(),
        Check::Ok
    ));
    assert!(matches!(
        store_b.verify(&b2.stages["a"].outputs["out"]).unwrap(),
        Check::Missing
    ));

    // `pull` of the pipeline brings the rest, the directory with its modes and empty
    // directory included, and files entries: B's next run is all local hits.
    let pulled = command(
        &p,
        "store-b",
        app::Command::Pull {
            target: Some(p.path().join("p.yaml").display().to_string()),
            remote: remote_args(&url),
        },
    );
    assert_eq!(pulled, app::ExitStatus::Ok);
    let tree = store_b.path_of(&a.stages["tree"].outputs["t"]);
    assert_eq!(
        std::fs::read_to_string(tree.join("sub/f")).unwrap(),
        "data\n"
    );
    assert!(tree.join("empty").is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tree.join("x.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_ne!(mode & 0o111, 0, "x.sh lost its executable bit");
    }
    let b3 = {
        let plan = p.load("p.yaml", &[]).unwrap();
        app::execute(Arc::new(plan), store(&p, "store-b"), options(4, &[])).unwrap()
    };
    for (name, s) in &b3.stages {
        assert_eq!(s.status, StageStatus::Hit, "{name}");
        assert!(!s.remote, "{name} should be a local hit after pull");
    }
}

#[test]
fn two_machines_at_once_build_a_key_once() {
    let url = bucket("remote-concurrent");
    let remote_a = remote(&url);
    let remote_b = remote(&url);
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: slow\nstages:\n  s:\n    kind: step\n    with: { text: x, sleep_ms: 1500, tally: TALLY }\n",
    );
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| run_on(&p, "store-a", "p.yaml", &remote_a));
        std::thread::sleep(Duration::from_millis(100));
        let b = scope.spawn(|| run_on(&p, "store-b", "p.yaml", &remote_b));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(p.executed(), ["s"], "the key was built twice");
    let mut both = [a.stages["s"].status, b.stages["s"].status];
    both.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(both, [StageStatus::Hit, StageStatus::Ran]);
    assert_eq!(a.stages["s"].outputs, b.stages["s"].outputs);
    assert!(!remote_has(
        &url,
        &format!("leases/{}.json", a.stages["s"].key.as_ref().unwrap())
    ));
}

#[test]
fn a_lease_left_by_a_dead_machine_expires() {
    let url = bucket("remote-stale-lease");
    let remote = remote(&url);
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: stale\nstages:\n  s:\n    kind: step\n    with: { text: x, tally: TALLY }\n",
    );
    let key = p.load("p.yaml", &[]).unwrap();
    let key = soma_flow_engine::key::CacheKey::compute(&key.stages["s"], &key, &Default::default())
        .unwrap()
        .hash;
    let expires = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 1500;
    put_raw(
        &url,
        &format!("leases/{key}.json"),
        format!(r#"{{"owner":"dead-host (pid 1)","expires":{expires},"ttl_ms":1500}}"#).as_bytes(),
    );
    let r = run_on(&p, "store-a", "p.yaml", &remote);
    assert_eq!(r.stages["s"].status, StageStatus::Ran);
    let runs = p.executions();
    assert_eq!(runs.len(), 1);
    assert!(
        runs[0].start >= expires as u128,
        "it started at {} ms, before the lease expired at {expires} ms",
        runs[0].start
    );
}

#[test]
fn a_corrupt_remote_object_is_caught_named_and_rebuilt_and_a_missing_one_falls_back() {
    let url = bucket("remote-faults");
    let remote = remote(&url);
    let p = Project::new();
    p.write("p.yaml", PIPELINE);
    let a = run_on(&p, "store-a", "p.yaml", &remote);
    let b_out = &a.stages["b"].outputs["out"];

    // Someone overwrites b's object with other bytes of the same length: its version
    // is no longer the one b's entry records, so b is built here.
    let object = format!("objects/{}", b_out.hash);
    put_raw(&url, &object, b"HELLO WORLD");
    p.write("p.yaml", &format!("{PIPELINE}{DOWNSTREAM}"));
    let swapped = run_on(&p, "store-s", "p.yaml", &remote);
    assert_eq!(swapped.stages["b"].status, StageStatus::Ran);
    assert_eq!(swapped.stages["c"].status, StageStatus::Ran);

    // Again, under an entry that records no versions (written by an older soma-flow):
    // the download's hash check catches it.
    let entry = format!("cache/{}.json", a.stages["b"].key.as_ref().unwrap());
    let text = raw(&url, &entry, |store, path| async move {
        store.get(&path).await.unwrap().bytes().await.unwrap()
    });
    let mut json: serde_json::Value = serde_json::from_slice(&text).unwrap();
    json.as_object_mut()
        .unwrap()
        .remove("object_versions")
        .unwrap();
    put_raw(&url, &entry, &serde_json::to_vec(&json).unwrap());
    put_raw(&url, &object, b"HELLO WORLD");
    let c_entry = format!("cache/{}.json", swapped.stages["c"].key.as_ref().unwrap());
    delete_raw(&url, &c_entry);
    let b = run_on(&p, "store-b", "p.yaml", &remote);
    assert_eq!(b.stages["b"].status, StageStatus::Hit);
    assert_eq!(b.stages["c"].status, StageStatus::Failed);
    let message = b.stages["c"].message.as_deref().unwrap();
    assert!(message.contains("does not match its hash"), "{message}");
    assert!(message.contains(&object), "{message}");
    assert!(message.contains("run again"), "{message}");
    let store_b = store(&p, "store-b");
    assert!(matches!(store_b.verify(b_out).unwrap(), Check::Missing));
    assert!(!remote_has(&url, &format!("objects/{}", b_out.hash)));
    let staging = p.path().join("store-b/tmp/remote");
    assert_eq!(
        std::fs::read_dir(&staging).map_or(0, |d| d.count()),
        0,
        "staging left behind"
    );

    // The next run finds b's entry dangling: removed, b built here and shared again.
    let b2 = run_on(&p, "store-b", "p.yaml", &remote);
    assert_eq!(b2.stages["b"].status, StageStatus::Ran);
    assert_eq!(b2.stages["c"].status, StageStatus::Ran);
    assert!(remote_has(&url, &format!("objects/{}", b_out.hash)));

    // An entry whose object was deleted: a warning, and the stage runs locally.
    let a_out = &a.stages["a"].outputs["out"];
    delete_raw(&url, &format!("objects/{}", a_out.hash));
    let c = run_on(&p, "store-c", "p.yaml", &remote);
    assert_eq!(c.stages["a"].status, StageStatus::Ran);
    assert!(remote_has(&url, &format!("objects/{}", a_out.hash)));
    assert!(statuses(&c).iter().all(|(_, s)| *s != StageStatus::Failed));
}

#[test]
fn private_outputs_never_leave_the_machine() {
    let url = bucket("remote-private");
    let remote = remote(&url);
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: private\nstages:\n  key:\n    kind: step\n    with: { text: s3cret, private: true, tally: TALLY }\n  open:\n    kind: step\n    with: { text: public, tally: TALLY }\n",
    );
    let a = run_on(&p, "store-a", "p.yaml", &remote);
    let secret = &a.stages["key"];
    assert!(!remote_has(
        &url,
        &format!("cache/{}.json", secret.key.as_ref().unwrap())
    ));
    assert!(!remote_has(
        &url,
        &format!("objects/{}", secret.outputs["out"].hash)
    ));
    assert!(remote_has(
        &url,
        &format!("cache/{}.json", a.stages["open"].key.as_ref().unwrap())
    ));

    // push refuses it too, and says why.
    let status = command(
        &p,
        "store-a",
        app::Command::Push {
            id: Some(a.id.clone()),
            remote: remote_args(&url),
        },
    );
    assert_eq!(status, app::ExitStatus::Ok);
    assert!(!remote_has(
        &url,
        &format!("objects/{}", secret.outputs["out"].hash)
    ));

    let b = run_on(&p, "store-b", "p.yaml", &remote);
    assert_eq!(b.stages["key"].status, StageStatus::Ran);
    assert!(b.stages["open"].remote);
}

#[test]
fn push_uploads_a_run_made_without_the_remote() {
    let url = bucket("remote-push");
    let p = Project::new();
    p.write("p.yaml", PIPELINE);
    let local = p.run("p.yaml", &[]);
    let push = || {
        let remote = remote_args(&url);
        command(&p, "store", app::Command::Push { id: None, remote })
    };
    assert_eq!(push(), app::ExitStatus::Ok);
    // Again: nothing to do, still fine.
    assert_eq!(push(), app::ExitStatus::Ok);
    let b = run_on(&p, "store-b", "p.yaml", &remote(&url));
    for (name, s) in &b.stages {
        assert!(s.remote, "{name}");
        assert_eq!(s.outputs, local.stages[name].outputs);
    }
}

#[test]
fn an_unusable_remote_is_named_and_the_run_goes_on_locally() {
    moto::shared("remote-exists");
    let err = Remote::open("s3://no-such-bucket-here/x").unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("s3://no-such-bucket-here/x"), "{text}");
    assert!(remote_args("s3://no-such-bucket-here/x")
        .open(None, KeyScheme::PLAIN)
        .is_none());
    assert!(Remote::open("nonsense:/x").is_err());
    // A pipeline naming an unusable URL is a validation error at `remote`.
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: x\nremote: \"ftp://h/x\"\nstages:\n  s:\n    kind: step\n",
    );
    let err = match p.load("p.yaml", &[]) {
        Ok(_) => panic!("an ftp:// remote loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("remote"), "{err}");
    assert!(err.contains("p.yaml:2"), "{err}");
}

#[test]
fn an_interrupted_download_resumes_and_a_bad_partial_is_fetched_again() {
    let url = bucket("remote-resume");
    let remote = remote(&url);
    let p = Project::new();
    // 20 MiB: three parts.
    let big = p.path().join("big");
    let bytes: Vec<u8> = (0..20u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&big, &bytes).unwrap();
    let a = store(&p, "store-a");
    let artifact = a.publish(&big).unwrap();
    let quiet = |_: &str| {};
    let meter = soma_flow_engine::remote::Meter::new("big".into(), artifact.size, &quiet);
    remote.upload(&a, &artifact, &meter).unwrap();

    // B was killed after writing part 1 of 3 (logged), with garbage elsewhere.
    let b = store(&p, "store-b");
    let staging = p.path().join("store-b/tmp/remote");
    std::fs::create_dir_all(&staging).unwrap();
    let mut partial = vec![0u8; bytes.len()];
    let part = soma_flow_engine::remote::PART_SIZE;
    partial[part..2 * part].copy_from_slice(&bytes[part..2 * part]);
    std::fs::write(staging.join(format!("{}.part", artifact.hash)), &partial).unwrap();
    std::fs::write(staging.join(format!("{}.parts", artifact.hash)), "1\n").unwrap();
    remote.download(&b, &artifact, &meter).unwrap();
    assert!(matches!(b.verify(&artifact).unwrap(), Check::Ok));
    assert_eq!(std::fs::read(b.path_of(&artifact)).unwrap(), bytes);

    // A partial whose logged part is wrong (a torn write): fetched again in full, and
    // the remote's good object is not blamed.
    let c = store(&p, "store-c");
    let staging = p.path().join("store-c/tmp/remote");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(
        staging.join(format!("{}.part", artifact.hash)),
        vec![1u8; bytes.len()],
    )
    .unwrap();
    std::fs::write(staging.join(format!("{}.parts", artifact.hash)), "0\n1\n").unwrap();
    remote.download(&c, &artifact, &meter).unwrap();
    assert_eq!(std::fs::read(c.path_of(&artifact)).unwrap(), bytes);
    assert!(remote.has(&artifact).unwrap());
}

#[test]
fn a_tree_listing_not_in_the_walks_own_form_is_refused() {
    use soma_flow_engine::hash::{tree_hash, TreeEntry};
    use soma_flow_engine::store::{Artifact, ArtifactKind, ContentHash};
    let url = bucket("remote-crafted-tree");
    let remote = remote(&url);
    let p = Project::new();
    let a = store(&p, "store-a");
    let file = p.path().join("f");
    std::fs::write(&file, "data").unwrap();
    let object = a.publish(&file).unwrap();
    let quiet = |_: &str| {};
    let meter = soma_flow_engine::remote::Meter::new("f".into(), object.size, &quiet);
    remote.upload(&a, &object, &meter).unwrap();

    // A listing whose hash is self-consistent, but that names `d` both as an empty
    // directory and as the parent of a file: no walk of a real tree gives it.
    let listing = vec![
        TreeEntry::Dir { path: "d".into() },
        TreeEntry::File {
            path: "d/f".into(),
            hash: object.hash.clone(),
            size: object.size,
            executable: false,
        },
    ];
    let (hash, size) = tree_hash(&listing);
    let tree = Artifact {
        kind: ArtifactKind::Dir,
        hash: ContentHash::parse(&hash).unwrap(),
        size,
    };
    put_raw(
        &url,
        &format!("trees/{hash}.json"),
        &serde_json::to_vec(&listing).unwrap(),
    );
    let b = store(&p, "store-b");
    let err = remote.download(&b, &tree, &meter).unwrap_err();
    assert!(
        format!("{err:#}").contains("its entries do not form a tree"),
        "{err:#}"
    );
    assert!(
        !remote_has(&url, &format!("trees/{hash}.json")),
        "not condemned"
    );
    assert!(matches!(b.verify(&tree).unwrap(), Check::Missing));
}

/// A key file of the engine's own scheme, and its address.
fn key_file(project: &Project, name: &str, seed: u8) -> (std::path::PathBuf, String) {
    let path = project.path().join(name);
    std::fs::write(&path, format!("{seed:02x}").repeat(32)).unwrap();
    let trust = Trust::new(KeyScheme::PLAIN, Some(&path), None).unwrap();
    (path, trust.signer().unwrap().to_string())
}

/// The remote at `url`, signing with `key` (if any) and trusting `trust` (if said).
fn remote_trusting(url: &str, key: Option<&std::path::Path>, trust: Option<&str>) -> Arc<Remote> {
    let setting: Option<TrustSetting> = trust.map(|t| t.parse().unwrap());
    let trust = Trust::new(KeyScheme::PLAIN, key, setting.as_ref()).unwrap();
    Arc::new(Remote::open_with(url, trust).unwrap_or_else(|e| panic!("{e:#}")))
}

fn all(r: &RunRecord, status: StageStatus) -> bool {
    r.stages.values().all(|s| s.status == status)
}

#[test]
fn only_entries_signed_by_a_trusted_key_are_hits_and_others_are_built_here() {
    let url = bucket("remote-signed");
    let p = Project::new();
    p.write("p.yaml", PIPELINE);
    let (key_a, addr_a) = key_file(&p, "a.key", 1);
    let (key_x, addr_x) = key_file(&p, "x.key", 2);

    // A publishes signed entries.
    let a = run_on(
        &p,
        "store-a",
        "p.yaml",
        &remote_trusting(&url, Some(&key_a), None),
    );
    assert!(all(&a, StageStatus::Ran));
    let key_of = |stage: &str| a.stages[stage].key.clone().unwrap();
    assert!(remote_has(
        &url,
        &format!("cache/{}/{addr_a}.json", key_of("a"))
    ));

    // B trusts A: every stage is a hit, verified.
    let b = run_on(
        &p,
        "store-b",
        "p.yaml",
        &remote_trusting(&url, None, Some(&addr_a)),
    );
    assert!(all(&b, StageStatus::Hit), "{:?}", statuses(&b));
    assert!(b
        .stages
        .values()
        .all(|s| s.remote && s.unverified.is_none()));
    assert_eq!(p.executed().len(), 2);

    // C trusts only X: A's entries are ignored and everything is built here, then
    // published signed by X beside A's (the shared entry stays A's: the first wins).
    let c = run_on(
        &p,
        "store-c",
        "p.yaml",
        &remote_trusting(&url, Some(&key_x), Some(&addr_x)),
    );
    assert!(all(&c, StageStatus::Ran), "{:?}", statuses(&c));
    assert_eq!(p.executed().len(), 4);
    assert!(remote_has(
        &url,
        &format!("cache/{}/{addr_x}.json", key_of("a"))
    ));
    // D trusts X: hits through X's own entries.
    let d = run_on(
        &p,
        "store-d",
        "p.yaml",
        &remote_trusting(&url, None, Some(&addr_x)),
    );
    assert!(all(&d, StageStatus::Hit), "{:?}", statuses(&d));

    // An unsigned entry (someone with write access, no key) is not a hit for a reader
    // that trusts keys, and the stage is built here.
    let url2 = bucket("remote-unsigned");
    let u = run_on(&p, "store-u", "p.yaml", &remote(&url2));
    assert!(all(&u, StageStatus::Ran));
    let e = run_on(
        &p,
        "store-e",
        "p.yaml",
        &remote_trusting(&url2, None, Some(&addr_a)),
    );
    assert!(all(&e, StageStatus::Ran), "{:?}", statuses(&e));
    // Nobody configured: taken, but marked unverified, and so are the stages below.
    let f = run_on(&p, "store-f", "p.yaml", &remote(&url2));
    assert!(all(&f, StageStatus::Hit));
    assert_eq!(f.stages["a"].unverified.as_deref(), Some("a"));
    assert_eq!(f.stages["b"].unverified.as_deref(), Some("b"));

    // A signed entry edited after signing (another output hash) is condemned; the
    // stage is built here, and A's signed entry written again.
    let path = format!("cache/{}/{addr_a}.json", key_of("tree"));
    let text = raw(&url, &path, |store, path| async move {
        store.get(&path).await.unwrap().bytes().await.unwrap()
    });
    let edited = String::from_utf8(text.to_vec()).unwrap().replace(
        &a.stages["tree"].outputs["t"].hash.to_string(),
        &"0".repeat(64),
    );
    put_raw(&url, &path, edited.as_bytes());
    let shared = format!("cache/{}.json", key_of("tree"));
    put_raw(&url, &shared, edited.as_bytes());
    let g = run_on(
        &p,
        "store-g",
        "p.yaml",
        &remote_trusting(&url, Some(&key_a), None),
    );
    assert_eq!(g.stages["tree"].status, StageStatus::Ran);
    assert_eq!(g.stages["tree"].outputs, a.stages["tree"].outputs);
    let republished = raw(&url, &shared, |store, path| async move {
        store.get(&path).await.unwrap().bytes().await.unwrap()
    });
    assert!(
        !String::from_utf8_lossy(&republished).contains(&"0".repeat(64)),
        "the edited shared entry was kept"
    );
    let h = run_on(
        &p,
        "store-h",
        "p.yaml",
        &remote_trusting(&url, None, Some(&addr_a)),
    );
    assert!(all(&h, StageStatus::Hit), "{:?}", statuses(&h));
}

#[test]
fn an_object_replaced_after_its_entry_was_signed_is_condemned_and_the_stage_built_here() {
    let url = bucket("remote-swapped");
    let p = Project::new();
    p.write("p.yaml", PIPELINE);
    let (key_a, addr_a) = key_file(&p, "a.key", 3);
    let a = run_on(
        &p,
        "store-a",
        "p.yaml",
        &remote_trusting(&url, Some(&key_a), None),
    );
    let out = &a.stages["b"].outputs["out"];
    // Other bytes of the same length under the same name.
    put_raw(&url, &format!("objects/{}", out.hash), b"HELLO WORLD");
    let b = run_on(
        &p,
        "store-b",
        "p.yaml",
        &remote_trusting(&url, None, Some(&addr_a)),
    );
    assert_eq!(b.stages["a"].status, StageStatus::Hit);
    assert_eq!(
        b.stages["b"].status,
        StageStatus::Ran,
        "a swapped object was a hit"
    );
    assert_eq!(&b.stages["b"].outputs["out"], out);
    // B does not sign: A's entry was condemned, and B's unsigned one is not taken by
    // readers that trust A; A builds it once more and all is well again.
    let a2 = run_on(
        &p,
        "store-a2",
        "p.yaml",
        &remote_trusting(&url, Some(&key_a), None),
    );
    assert_eq!(a2.stages["b"].status, StageStatus::Ran);
    let c = run_on(
        &p,
        "store-c",
        "p.yaml",
        &remote_trusting(&url, None, Some(&addr_a)),
    );
    assert!(all(&c, StageStatus::Hit), "{:?}", statuses(&c));
    let text = std::fs::read_to_string(store(&p, "store-a2").path_of(out)).unwrap();
    assert_eq!(text, "hello world");
}

#[test]
fn a_stage_that_acts_for_the_user_refuses_inputs_from_unverified_entries_unless_told() {
    let url = bucket("remote-acts");
    let p = Project::new();
    let pipeline = |text: &str| {
        format!(
            "name: acts\nstages:\n  model:\n    kind: step\n    with: {{ text: weights, tally: TALLY }}\n  commit:\n    kind: step\n    inputs: {{ x: model.out }}\n    with: {{ text: \"{text}\", acts: true, tally: TALLY }}\n"
        )
    };
    p.write("p.yaml", &pipeline("first"));
    let (key_a, addr_a) = key_file(&p, "a.key", 4);
    // A machine with no key publishes; a reader with no trust takes it unverified.
    run_on(&p, "store-a", "p.yaml", &remote(&url));
    p.write("p.yaml", &pipeline("second"));
    let b = run_on(&p, "store-b", "p.yaml", &remote(&url));
    assert_eq!(b.stages["model"].status, StageStatus::Hit);
    assert_eq!(b.stages["commit"].status, StageStatus::Failed);
    let message = b.stages["commit"].message.as_deref().unwrap();
    assert!(message.contains("derive from `model`"), "{message}");
    assert!(message.contains("SOMA_FLOW_REMOTE_TRUST"), "{message}");
    // Said explicitly: `any`.
    let c = run_on(
        &p,
        "store-c",
        "p.yaml",
        &remote_trusting(&url, None, Some("any")),
    );
    assert_eq!(c.stages["commit"].status, StageStatus::Ran);
    // Or verified: A signs its model, and a reader trusting A commits.
    let url2 = bucket("remote-acts-signed");
    run_on(
        &p,
        "store-a2",
        "p.yaml",
        &remote_trusting(&url2, Some(&key_a), None),
    );
    p.write("p.yaml", &pipeline("third"));
    let d = run_on(
        &p,
        "store-d",
        "p.yaml",
        &remote_trusting(&url2, None, Some(&addr_a)),
    );
    assert_eq!(d.stages["model"].status, StageStatus::Hit);
    assert_eq!(d.stages["commit"].status, StageStatus::Ran);
}

#[test]
fn a_lease_judged_by_its_renewals_here_not_by_its_holders_clock() {
    let url = bucket("remote-skewed-lease");
    let remote = remote(&url);
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: skew\nstages:\n  s:\n    kind: step\n    with: { text: x, tally: TALLY }\n",
    );
    let plan = p.load("p.yaml", &[]).unwrap();
    let key =
        soma_flow_engine::key::CacheKey::compute(&plan.stages["s"], &plan, &Default::default())
            .unwrap()
            .hash;
    let lease = format!("leases/{key}.json");
    let now_ms = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };

    // A holder whose clock runs years ahead, dead: its lease says 2100, and stops
    // changing. Taken over within its time to live (1.5 s) plus one renewal period.
    let year_2100 = 4_102_444_800_000u64;
    put_raw(
        &url,
        &lease,
        format!(r#"{{"owner":"ahead (pid 1)","expires":{year_2100},"ttl_ms":1500}}"#).as_bytes(),
    );
    let t0 = now_ms();
    let r = run_on(&p, "store-a", "p.yaml", &remote);
    assert_eq!(r.stages["s"].status, StageStatus::Ran);
    let waited = p.executions()[0].start as u64 - t0;
    assert!(
        (1500..1500 + 500 + 1500).contains(&waited),
        "taken over after {waited} ms"
    );

    // A live holder whose clock runs behind (its lease "expired" long ago by its own
    // clock) is not taken over while it renews.
    delete_raw(&url, &format!("cache/{key}.json"));
    let renewing = std::sync::atomic::AtomicBool::new(true);
    let t1 = now_ms();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for renewal in 0.. {
                let body = format!(
                    r#"{{"owner":"behind (pid 2)","expires":1000,"ttl_ms":900,"renewal":{renewal}}}"#
                );
                put_raw(&url, &lease, body.as_bytes());
                std::thread::sleep(Duration::from_millis(300));
                if now_ms() - t1 > 3000 {
                    break;
                }
            }
            renewing.store(false, std::sync::atomic::Ordering::SeqCst);
        });
        let r = run_on(&p, "store-b", "p.yaml", &remote);
        assert_eq!(r.stages["s"].status, StageStatus::Ran);
    });
    let started = p.executions()[1].start as u64;
    assert!(
        started >= t1 + 3000,
        "taken from a live holder after {} ms",
        started - t1
    );
    assert!(!renewing.load(std::sync::atomic::Ordering::SeqCst));
}
