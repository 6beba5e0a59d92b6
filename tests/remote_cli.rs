//! The remote store through the binary, against moto: `run --remote` on two stores,
//! and `push` and `pull` killed midway (`kill -9`) leaving nothing that lies, then
//! finishing when run again.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::Project;
use crate::moto;

/// A 48 MiB random output: long enough to transfer that a kill lands midway.
const BIG: &str = "name: big
stages:
  big:
    kind: command
    with:
      run: head -c 48M /dev/urandom > outputs/big
      outs: [big]
";

/// Every stored object of the store at `root` matches its name.
fn assert_objects_intact(root: &Path) {
    let Ok(shards) = std::fs::read_dir(root.join("objects")) else {
        return;
    };
    for shard in shards {
        for object in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = object.unwrap().path();
            let (hash, _) = soma_flow_engine::hash::hash_file(&path).unwrap();
            assert_eq!(
                path.file_name().unwrap().to_str().unwrap(),
                hash,
                "{} does not match its name",
                path.display()
            );
        }
    }
}

/// Runs `args` and kills it with SIGKILL once `ready` holds (or after 20 s).
fn killed(p: &Project, args: &[&str], ready: impl Fn() -> bool) {
    let mut child = p
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Lines logged by interrupted transfers in the store at `root`: downloads (`parts`)
/// or uploads (`upload`), over all their files.
fn logged(root: &Path, kind: &str) -> usize {
    std::fs::read_dir(root.join("tmp/remote")).map_or(0, |dir| {
        dir.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == kind))
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .count()
            })
            .sum()
    })
}

#[test]
fn push_and_pull_killed_midway_leave_nothing_that_lies_and_finish_when_run_again() {
    moto::shared("cli-remote-kill");
    let url = "s3://cli-remote-kill/cache";
    let p = Project::new();
    p.write("big.yaml", BIG);
    let (a, b, c) = ("--store=a", "--store=b", "--store=c");
    let run = p.run(&[a, "run", "big.yaml"]);
    assert_eq!(run.code(), 0, "{}", run.all());

    // A push killed midway: whatever the remote shows must be whole. A fresh store
    // pulls either nothing (no entry yet) or the verified object.
    let store_a = p.path().join("a");
    killed(&p, &[a, "push", "--remote", url], || {
        logged(&store_a, "upload") > 1
    });
    let pulled = p.run(&[c, "pull", "big.yaml", "--remote", url]);
    assert_eq!(pulled.code(), 0, "{}", pulled.all());
    assert_objects_intact(&p.path().join("c"));

    // Pushed again, it completes (resuming the upload when the kill left one); the
    // next push has nothing to do.
    let resumable = logged(&store_a, "upload") > 1;
    let push = p.run(&[a, "push", "--remote", url]);
    assert_eq!(push.code(), 0, "{}", push.all());
    if resumable {
        assert!(
            push.stderr().contains("resuming an upload"),
            "{}",
            push.all()
        );
    }
    let again = p.run(&[a, "push", "--remote", url]);
    assert!(
        again.stdout().contains("in the remote store already"),
        "{}",
        again.all()
    );

    // A pull killed midway leaves no object that is not whole; run again, it
    // finishes (resuming the parts it had) and the next run is a local hit.
    let store_b = p.path().join("b");
    killed(&p, &[b, "pull", "big.yaml", "--remote", url], || {
        logged(&store_b, "parts") > 0
    });
    assert_objects_intact(&store_b);
    let pulled = p.run(&[b, "pull", "big.yaml", "--remote", url]);
    assert_eq!(pulled.code(), 0, "{}", pulled.all());
    assert!(pulled.stdout().contains("pulled"), "{}", pulled.all());
    assert_objects_intact(&p.path().join("b"));
    let local = p.run(&[b, "run", "big.yaml"]);
    assert_eq!(local.code(), 0, "{}", local.all());
    assert!(local.stdout().contains("cached"), "{}", local.all());
}

#[test]
fn run_with_remote_on_a_second_store_runs_nothing() {
    moto::shared("cli-remote-run");
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: p\nremote: s3://cli-remote-run/c\nstages:\n  s:\n    kind: command\n    with: { run: echo hi > outputs/o, outs: [o] }\n",
    );
    let first = p.run(&["--store=a", "run", "p.yaml"]);
    assert_eq!(first.code(), 0, "{}", first.all());
    let second = p.run(&["--store=b", "run", "p.yaml"]);
    assert_eq!(second.code(), 0, "{}", second.all());
    assert!(second.stdout().contains("remote"), "{}", second.all());
    // `--remote none` turns it off: the stage runs on the third store.
    let third = p.run(&["--store=c", "run", "p.yaml", "--remote", "none"]);
    assert_eq!(third.code(), 0, "{}", third.all());
    assert!(third.stdout().contains("ran"), "{}", third.all());
}

#[test]
fn wrong_credentials_are_named_and_the_run_goes_on_locally() {
    // A server that checks credentials as S3 does; the test's keys exist nowhere.
    let strict = moto::start_moto_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let endpoint = format!("http://127.0.0.1:{}", strict.port);
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: p\nstages:\n  s:\n    kind: command\n    with: { run: echo hi > outputs/o, outs: [o] }\n",
    );
    let with_strict = |args: &[&str]| {
        crate::common::Run(
            p.cmd(args)
                .env("AWS_ENDPOINT_URL", &endpoint)
                .output()
                .unwrap(),
        )
    };
    let run = with_strict(&["run", "p.yaml", "--remote", "s3://some-bucket/c"]);
    assert_eq!(run.code(), 0, "{}", run.all());
    assert!(run.stderr().contains("InvalidAccessKeyId"), "{}", run.all());
    assert!(
        run.stderr().contains("running with the local store alone"),
        "{}",
        run.all()
    );
    assert!(run.stdout().contains("ran"), "{}", run.all());
    // `push` exists to talk to the remote: there it is an error.
    let push = with_strict(&["push", "--remote", "s3://some-bucket/c"]);
    assert_eq!(push.code(), 1, "{}", push.all());
    assert!(
        push.stderr().contains("s3://some-bucket/c cannot be used"),
        "{}",
        push.all()
    );
}

/// A TCP relay to a local port that can be cut: open connections are shut and new ones
/// refused, as when the network goes away. `relayed` counts the bytes it passed on.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    relayed: Arc<AtomicUsize>,
}

fn relay(upstream: u16) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cut = Arc::new(AtomicBool::new(false));
    let cut2 = Arc::clone(&cut);
    let relayed = Arc::new(AtomicUsize::new(0));
    let relayed2 = Arc::clone(&relayed);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            if cut2.load(Ordering::SeqCst) {
                continue; // dropped: the connection is reset
            }
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let pairs = [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ];
            for (mut from, mut to) in pairs {
                let cut = Arc::clone(&cut2);
                let relayed = Arc::clone(&relayed2);
                std::thread::spawn(move || {
                    from.set_read_timeout(Some(Duration::from_millis(20)))
                        .unwrap();
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        if cut.load(Ordering::SeqCst) {
                            let _ = from.shutdown(Shutdown::Both);
                            let _ = to.shutdown(Shutdown::Both);
                            return;
                        }
                        match from.read(&mut buf) {
                            Ok(0) => {
                                let _ = to.shutdown(Shutdown::Write);
                                return;
                            }
                            Ok(n) => {
                                if to.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                                relayed.fetch_add(n, Ordering::SeqCst);
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => return,
                        }
                    }
                });
            }
        }
    });
    Relay { port, cut, relayed }
}

#[test]
fn a_network_cut_mid_transfer_fails_clearly_and_leaves_nothing_that_lies() {
    let port = moto::shared("cli-remote-cut");
    let url = "s3://cli-remote-cut/cache";
    let p = Project::new();
    p.write("big.yaml", BIG);
    let run = p.run(&["--store=a", "run", "big.yaml"]);
    assert_eq!(run.code(), 0, "{}", run.all());
    let through = |relay: &Relay, args: &[&str]| {
        p.cmd(args)
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", relay.port),
            )
            .env("SOMA_FLOW_STORAGE_RETRY", "1s")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // The network goes away while a push uploads: once a MiB of the 48 has passed (a
    // fixed delay could cut a slow-starting push before its upload, at the remote's
    // layout check).
    let up = relay(port);
    let child = through(&up, &["--store=a", "push", "--remote", url]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while up.relayed.load(Ordering::SeqCst) < 1 << 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    up.cut.store(true, Ordering::SeqCst);
    let push = crate::common::Run(child.wait_with_output().unwrap());
    if push.code() != 0 {
        assert!(push.stdout().contains("FAILED"), "{}", push.all());
    }
    // Whatever the remote shows is whole: a fresh store pulls nothing or the object.
    let pulled = p.run(&["--store=c", "pull", "big.yaml", "--remote", url]);
    assert_eq!(pulled.code(), 0, "{}", pulled.all());
    assert_objects_intact(&p.path().join("c"));
    let push = p.run(&["--store=a", "push", "--remote", url]);
    assert_eq!(push.code(), 0, "{}", push.all());

    // The network goes away while a pull downloads: it fails naming what, keeps no
    // object that is not whole, and the next pull resumes and finishes.
    let down = relay(port);
    let store_b = p.path().join("b");
    let child = through(&down, &["--store=b", "pull", "big.yaml", "--remote", url]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while logged(&store_b, "parts") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    down.cut.store(true, Ordering::SeqCst);
    let pull = crate::common::Run(child.wait_with_output().unwrap());
    if pull.code() != 0 {
        assert!(
            pull.stdout().contains("FAILED: output `big`"),
            "{}",
            pull.all()
        );
    }
    assert_objects_intact(&store_b);
    let pulled = p.run(&["--store=b", "pull", "big.yaml", "--remote", url]);
    assert_eq!(pulled.code(), 0, "{}", pulled.all());
    assert!(pulled.stdout().contains("pulled"), "{}", pulled.all());
}

/// A stage with a directory output, whose listing the remote keeps under `trees/`.
const TREE: &str = "name: p
stages:
  tree:
    kind: command
    with: { run: mkdir -p outputs/t && echo data > outputs/t/f, outs: [t] }
";

/// The last run's record in the store `dir`.
fn last_record(p: &Project, dir: &str) -> serde_json::Value {
    let out = p.run(&[&format!("--store={dir}"), "runs", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let runs: Vec<serde_json::Value> = serde_json::from_str(&out.stdout()).unwrap();
    runs.last().cloned().expect("a run")
}

#[test]
fn entries_signed_with_a_keygen_key_are_taken_by_its_address_alone() {
    moto::shared("cli-remote-trust");
    let url = "s3://cli-remote-trust/cache";
    let p = Project::new();
    p.write("p.yaml", TREE);
    let address = |key: &str| {
        let made = p.run(&["keygen", "--out", key]);
        assert_eq!(made.code(), 0, "{}", made.all());
        let out = p.run(&["address", "--key-file", key]);
        out.stdout().trim().to_string()
    };
    let (ci, other) = (address("ci.key"), address("other.key"));
    let with = |store: &str, key: Option<&str>, trust: Option<&str>| {
        let mut cmd = p.cmd(&[
            &format!("--store={store}"),
            "run",
            "p.yaml",
            "--remote",
            url,
        ]);
        cmd.env_remove("SOMA_FLOW_REMOTE_KEY")
            .env_remove("SOMA_FLOW_REMOTE_TRUST");
        if let Some(key) = key {
            cmd.env("SOMA_FLOW_REMOTE_KEY", key);
        }
        if let Some(trust) = trust {
            cmd.env("SOMA_FLOW_REMOTE_TRUST", trust);
        }
        crate::common::Run(cmd.output().unwrap())
    };
    // CI signs with its key (and trusts itself: no "not verified" note).
    let published = with("ci", Some("ci.key"), None);
    assert_eq!(published.code(), 0, "{}", published.all());
    assert!(
        !published.stderr().contains("not verified"),
        "{}",
        published.all()
    );
    let key = last_record(&p, "ci")["stages"]["tree"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let port = moto::shared("cli-remote-trust");
    let signed = moto::get_object(
        port,
        "cli-remote-trust",
        &format!("cache/cache/{key}/{ci}.json"),
    );
    let signed = String::from_utf8(signed.expect("an entry under CI's address")).unwrap();
    let secret = std::fs::read_to_string(p.path().join("ci.key")).unwrap();
    assert!(!signed.contains(secret.trim()), "the key is in the entry");

    // A laptop that trusts CI's address takes it.
    let laptop = with("laptop", None, Some(&ci));
    assert_eq!(laptop.code(), 0, "{}", laptop.all());
    assert!(laptop.stdout().contains("remote"), "{}", laptop.all());
    // One that trusts another key ignores it, says why, and builds it here.
    let wary = with("wary", None, Some(&other));
    assert_eq!(wary.code(), 0, "{}", wary.all());
    assert!(wary.stdout().contains("ran"), "{}", wary.all());
    assert!(
        wary.stderr()
            .contains(&format!("signed by {ci}, which is not trusted here")),
        "{}",
        wary.all()
    );
    // One that configured nothing takes it, and says once that it is not verified.
    let open = with("open", None, None);
    assert_eq!(open.code(), 0, "{}", open.all());
    assert_eq!(
        open.stderr()
            .matches("remote entries are not verified")
            .count(),
        1,
        "{}",
        open.all()
    );
    // A trust list that is not one names what is valid.
    let bad = with("bad", None, Some("0x12"));
    assert!(
        bad.stderr().contains("SOMA_FLOW_REMOTE_TRUST"),
        "{}",
        bad.all()
    );
    assert!(bad.stderr().contains("64 hex digits"), "{}", bad.all());
}

#[test]
fn a_poisoned_tree_listing_is_condemned_named_by_pull_and_the_next_run_heals() {
    let port = moto::shared("cli-remote-poison");
    let url = "s3://cli-remote-poison/cache";
    let p = Project::new();
    p.write("p.yaml", TREE);
    let a = p.run(&["--store=a", "run", "p.yaml", "--remote", url]);
    assert_eq!(a.code(), 0, "{}", a.all());
    let record = last_record(&p, "a");
    let tree = record["stages"]["tree"]["outputs"]["t"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let key = record["stages"]["tree"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let listing = format!("cache/trees/{tree}.json");
    let entry = format!("cache/cache/{key}.json");
    let poison = r#"[{"type":"dir","path":"../escape"}]"#;
    let bucket = "cli-remote-poison";
    moto::put_object(port, bucket, &listing, poison.as_bytes());

    // The listing is not the version the entry records: B's run condemns both and
    // builds the tree here (and publishes it again).
    let b = p.run(&["--store=b", "run", "p.yaml", "--remote", url]);
    assert_eq!(b.code(), 0, "{}", b.all());
    assert!(b.stdout().contains("ran"), "{}", b.all());
    assert!(
        b.stderr()
            .contains("was replaced after the entry was published"),
        "{}",
        b.all()
    );

    // Again, under an entry that records no versions (an older writer's): C's run takes
    // it (nothing comes down); its pull refuses the listing, says which object and
    // which check, and condemns the listing and the entry.
    moto::put_object(port, bucket, &listing, poison.as_bytes());
    let text = moto::get_object(port, bucket, &entry).expect("B published the entry");
    let mut json: serde_json::Value = serde_json::from_slice(&text).unwrap();
    json.as_object_mut().unwrap().remove("object_versions");
    moto::put_object(port, bucket, &entry, &serde_json::to_vec(&json).unwrap());
    let c = p.run(&["--store=c", "run", "p.yaml", "--remote", url]);
    assert!(c.stdout().contains("remote"), "{}", c.all());
    let pull = p.run(&["--store=c", "pull", "p.yaml", "--remote", url]);
    assert_eq!(pull.code(), 1, "{}", pull.all());
    assert!(pull.stdout().contains(&listing), "{}", pull.all());
    assert!(
        pull.stdout().contains("not inside the tree"),
        "{}",
        pull.all()
    );
    assert!(
        pull.stdout().contains("deleted from the remote"),
        "{}",
        pull.all()
    );
    assert!(moto::get_object(port, bucket, &listing).is_none());
    assert!(moto::get_object(port, bucket, &entry).is_none());

    // The next run builds it here and publishes it again; pull then works anywhere.
    let healed = p.run(&["--store=d", "run", "p.yaml", "--remote", url]);
    assert_eq!(healed.code(), 0, "{}", healed.all());
    assert!(healed.stdout().contains("ran"), "{}", healed.all());
    let pull = p.run(&["--store=e", "pull", "p.yaml", "--remote", url]);
    assert_eq!(pull.code(), 0, "{}", pull.all());
    assert!(pull.stdout().contains("pulled"), "{}", pull.all());
}
