//! train, distill, average and embed on v1-tiny on the CPU.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use serde_json::json;
use soma_flow_engine::yaml::PathSeg;
use soma_flow_engine::Registry;
use soma_flow_stages::backend::run_on;
use soma_flow_stages::kinds::distill::{teacher_files, DistillSettings, DistillSpec};
use soma_flow_stages::merge::{average_files, lerp_weights};
use soma_flow_stages::model::{ArchConfig, SomaModel};
use soma_flow_stages::training::documents::open_documents;
use soma_flow_stages::training::embedding::EmbedMode;
use soma_flow_stages::training::embedding::{embed_file, EmbedWith};
use soma_flow_stages::training::job::{Job, ObjectiveSpec, Outputs, Report};
use soma_flow_stages::training::objective::TaskLoss;
use soma_flow_stages::training::settings::Settings;
use soma_flow_stages::BackendChoice;

type B = NdArray<f32>;

fn tiny() -> ArchConfig {
    "v1-tiny".parse().unwrap()
}

fn save_model(dir: &Path, name: &str, arch: &ArchConfig, seed: u64) -> PathBuf {
    let path = dir.join(name);
    SomaModel::<B>::init(arch, seed, &Default::default())
        .save(&path)
        .unwrap();
    path
}

/// This repository's own Rust sources: the training documents.
fn repo_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Held out: the engine's sources are never trained on.
fn holdout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/src/kind/mod.rs")
}

fn quiet(_: &str) {}

fn outputs(dir: &Path) -> Outputs {
    Outputs {
        model: dir.join("model.safetensors"),
        metrics: dir.join("metrics.jsonl"),
        curve: dir.join("curve"),
    }
}

pub fn quick_settings(steps: usize) -> Settings {
    let mut s = Settings {
        arch: Some(tiny()),
        steps,
        seed: 7,
        checkpoint_every: 0,
        ..Settings::default()
    };
    s.optimizer.lr = 3e-3;
    (s.data.batch, s.data.accum, s.data.seq_len) = (4, 2, 128);
    s
}

pub fn train<S: ObjectiveSpec>(
    settings: &Settings,
    spec: &S,
    holdout: Option<&Path>,
    scratch: &Path,
    out: &Path,
    halt_after: Option<usize>,
) -> Report {
    train_on(
        BackendChoice::NdArray,
        settings,
        spec,
        holdout,
        scratch,
        out,
        halt_after,
    )
}

/// [`train`] on `backend`.
pub fn train_on<S: ObjectiveSpec>(
    backend: BackendChoice,
    settings: &Settings,
    spec: &S,
    holdout: Option<&Path>,
    scratch: &Path,
    out: &Path,
    halt_after: Option<usize>,
) -> Report {
    std::fs::create_dir_all(out).unwrap();
    let data = repo_sources();
    let outputs = outputs(out);
    let job = Job {
        settings,
        spec,
        data: &data,
        init: None,
        holdout,
        scratch,
        progress: &quiet,
        halt_after,
        title: "test",
        outputs: &outputs,
    };
    run_on(backend, job).unwrap().unwrap()
}

/// `arch` and `init` disagreeing is refused, naming both architectures.
#[test]
fn an_arch_that_contradicts_init_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let init = save_model(dir.path(), "init.safetensors", &tiny(), 1);
    let settings = Settings {
        arch: Some("v1-small".parse().unwrap()),
        ..quick_settings(1)
    };
    let outputs = outputs(dir.path());
    let job = Job {
        settings: &settings,
        spec: &TaskLoss,
        data: &repo_sources(),
        init: Some(&init),
        holdout: None,
        scratch: dir.path(),
        progress: &quiet,
        halt_after: None,
        title: "test",
        outputs: &outputs,
    };
    let error = job.arch().unwrap_err().to_string();
    assert!(
        error.contains("`arch` is v1-small (dim 256, 4 layers, hidden 1024, vocab 264)")
            && error.contains("are v1-tiny (dim 128, 2 layers, hidden 512, vocab 264)"),
        "{error}"
    );
}

pub fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn training_lowers_the_holdout_score_and_writes_metrics_and_a_curve() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let settings = quick_settings(40);
    let report = train(
        &settings,
        &TaskLoss,
        Some(&holdout()),
        &dir.path().join("scratch"),
        &out,
        None,
    );
    let (before, after) = report.holdout.unwrap();
    assert!(after < before - 1.0, "holdout score {before} -> {after}");
    let lines = metrics(&out);
    assert_eq!(lines[0]["holdout_score"].as_f64().unwrap(), before);
    let steps: Vec<_> = lines.iter().filter(|l| l.get("loss").is_some()).collect();
    assert_eq!(steps.len(), 40);
    for key in ["step", "loss", "ce", "sigreg", "lr", "tokens_per_s"] {
        assert!(steps[0].get(key).is_some(), "no `{key}` in {}", steps[0]);
    }
    let png = std::fs::read(out.join("curve")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // The saved model is canonical: it loads with the inferred architecture.
    let heads = Some(tiny().num_heads);
    SomaModel::<B>::load_inferred(
        &out.join("model.safetensors"),
        heads,
        0.0,
        &Default::default(),
    )
    .unwrap();
}

#[test]
fn a_killed_run_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        checkpoint_every: 2,
        ..quick_settings(6)
    };
    let straight = dir.path().join("straight");
    train(
        &settings,
        &TaskLoss,
        None,
        &dir.path().join("s1"),
        &straight,
        None,
    );
    let again = dir.path().join("again");
    train(
        &settings,
        &TaskLoss,
        None,
        &dir.path().join("s2"),
        &again,
        None,
    );

    let scratch = dir.path().join("s3");
    let resumed = dir.path().join("resumed");
    // Killed after step 5: step 5 is lost, the checkpoint of step 4 is kept.
    let halted = train(&settings, &TaskLoss, None, &scratch, &resumed, Some(5));
    assert!(!halted.finished);
    assert!(scratch.join("checkpoint-4").is_dir());
    assert!(!resumed.join("model.safetensors").exists());
    let finished = train(&settings, &TaskLoss, None, &scratch, &resumed, None);
    assert!(finished.finished);
    let steps = |d: &Path| {
        metrics(d)
            .iter()
            .map(|l| (l["step"].clone(), l["loss"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(steps(&straight), steps(&resumed));

    // The CPU backend is deterministic (burn-ndarray without its `simd`
    // kernels, whose reductions depend on buffer alignment), so both a rerun
    // and a resumed run give the same bytes.
    let model = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(model(&straight) == model(&again), "two runs differ");
    assert!(
        model(&straight) == model(&resumed),
        "the resumed run differs"
    );

    // A torn checkpoint (files empty after a crash, as a rename without fsync could
    // leave) is discarded: training starts over and still gives the same bytes.
    let torn = dir.path().join("s4");
    train(
        &settings,
        &TaskLoss,
        None,
        &torn,
        &dir.path().join("t"),
        Some(5),
    );
    for file in std::fs::read_dir(torn.join("checkpoint-4")).unwrap() {
        std::fs::File::create(file.unwrap().path()).unwrap();
    }
    let redone = dir.path().join("redone");
    assert!(train(&settings, &TaskLoss, None, &torn, &redone, None).finished);
    assert!(
        model(&straight) == model(&redone),
        "the restarted run differs"
    );
}

#[test]
fn distillation_pulls_student_embeddings_towards_the_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = save_model(dir.path(), "teacher.safetensors", &tiny(), 99);
    let distill = DistillSettings {
        alpha: 0.5,
        teacher_weights: None,
        kl_weight: 0.1,
        temperature: 2.0,
    };
    let spec = DistillSpec {
        teachers: vec![teacher],
        settings: &distill,
        heads: Some(tiny().num_heads),
    };
    let settings = Settings {
        heads: Some(tiny().num_heads),
        ..quick_settings(25)
    };
    let out = dir.path().join("out");
    train(
        &settings,
        &spec,
        None,
        &dir.path().join("scratch"),
        &out,
        None,
    );
    let lines = metrics(&out);
    let mse = |l: &serde_json::Value| l["distill"].as_f64().unwrap();
    let (first, last) = (mse(&lines[0]), mse(lines.last().unwrap()));
    assert!(last < first * 0.5, "embedding MSE {first} -> {last}");
    assert!(lines[0].get("kl").is_some());
}

#[test]
fn averages_are_exact_at_the_endpoints_and_for_a_model_with_itself() {
    let dir = tempfile::tempdir().unwrap();
    let a = save_model(dir.path(), "a.safetensors", &tiny(), 1);
    let b = save_model(dir.path(), "b.safetensors", &tiny(), 2);
    let out = dir.path().join("out.safetensors");
    let bytes = |p: &Path| std::fs::read(p).unwrap();

    average_files(&[a.clone(), a.clone()], &[1.0, 1.0], &out).unwrap();
    assert!(bytes(&out) == bytes(&a), "self-average differs");
    average_files(&[a.clone(), a.clone(), a.clone()], &[0.7, 0.2, 0.1], &out).unwrap();
    assert!(bytes(&out) == bytes(&a), "weighted self-average differs");
    average_files(&[a.clone(), b.clone()], &lerp_weights(0.0), &out).unwrap();
    assert!(bytes(&out) == bytes(&a), "beta 0 is not the first model");
    average_files(&[a.clone(), b.clone()], &lerp_weights(1.0), &out).unwrap();
    assert!(bytes(&out) == bytes(&b), "beta 1 is not the second model");
    average_files(&[a.clone(), b.clone()], &lerp_weights(0.3), &out).unwrap();
    let mixed = SomaModel::<B>::load(&out, &tiny(), &Default::default()).unwrap();
    assert_eq!(mixed.config(), &tiny());

    let wider = ArchConfig {
        pwff_hidden_dim: 256,
        ..tiny()
    };
    let c = save_model(dir.path(), "c.safetensors", &wider, 3);
    let err = average_files(&[a.clone(), c], &[1.0, 1.0], &out)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`encoder.layers.0.pwff.linear_inner.bias`"),
        "{err}"
    );
    let deeper = ArchConfig {
        num_layers: 3,
        ..tiny()
    };
    let d = save_model(dir.path(), "d.safetensors", &deeper, 3);
    let err = average_files(&[a, d], &[1.0, 1.0], &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`encoder.layers.2."), "{err}");
}

#[test]
fn genesis_embeddings_are_unit_norm_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let model = save_model(dir.path(), "m.safetensors", &tiny(), 5);
    let docs = open_documents(&repo_sources()).unwrap();
    let with = |seed, mode| EmbedWith {
        mode,
        sequences: 6,
        seed,
        seq_len: 1024,
        heads: Some(tiny().num_heads),
        ..EmbedWith::default()
    };
    let run = |w: &EmbedWith| {
        embed_file(&model, docs.as_ref(), w, BackendChoice::NdArray, &quiet).unwrap()
    };
    let first = run(&with(3, EmbedMode::Genesis));
    let again = run(&with(3, EmbedMode::Genesis));
    let other = run(&with(4, EmbedMode::Genesis));
    assert_eq!(first.embedding, again.embedding);
    assert_ne!(first.embedding, other.embedding);
    assert_eq!((first.sequences, first.dim), (6, 128));
    let norm: f64 = first
        .embedding
        .iter()
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");

    let won = dir.path().join("won.bin");
    std::fs::write(&won, vec![b'x'; 3000]).unwrap();
    let won_docs = open_documents(&won).unwrap();
    let update = embed_file(
        &model,
        won_docs.as_ref(),
        &with(0, EmbedMode::Update),
        BackendChoice::NdArray,
        &quiet,
    )
    .unwrap();
    assert_eq!(update.sequences, 3);
}

#[test]
fn teachers_come_as_files_or_fetch_competitors_directories() {
    let dir = tempfile::tempdir().unwrap();
    let fetched = dir.path().join("competitors");
    std::fs::create_dir(&fetched).unwrap();
    std::fs::write(
        fetched.join("models.json"),
        r#"[{"id": "0xA", "file": "a.safetensors", "stake": 5}, {"id": "0xB", "file": "b.safetensors"}]"#,
    )
    .unwrap();
    let single = dir.path().join("mine.safetensors");
    let files = teacher_files(&[single.clone(), fetched.clone()]).unwrap();
    assert_eq!(
        files,
        vec![
            single,
            fetched.join("a.safetensors"),
            fetched.join("b.safetensors")
        ]
    );
    assert!(teacher_files(&[]).is_err());
}

fn with_error(kind: &str, with: serde_json::Value) -> Vec<PathSeg> {
    let mut registry = Registry::new();
    soma_flow_stages::kinds::register(&mut registry);
    match registry.get(kind).unwrap().prepare(with.clone()) {
        Ok(_) => panic!("{kind} accepted {with}"),
        Err(e) => e.path,
    }
}

#[test]
fn bad_with_values_are_rejected_naming_the_key() {
    let key = |k: &str| vec![PathSeg::Key(k.into())];
    let path = |keys: &[&str]| -> Vec<PathSeg> {
        keys.iter().map(|k| PathSeg::Key(k.to_string())).collect()
    };
    assert_eq!(with_error("train", json!({"steps": 0})), key("steps"));
    assert_eq!(
        with_error("train", json!({"optimizer": {"lr": 0}})),
        path(&["optimizer", "lr"])
    );
    assert_eq!(
        with_error("train", json!({"data": {"accum": 0}})),
        path(&["data", "accum"])
    );
    assert_eq!(
        with_error("train", json!({"schedule": {"decay": "linear"}})),
        path(&["schedule", "decay"])
    );
    assert_eq!(with_error("train", json!({"stepz": 3})), key("stepz"));
    assert_eq!(
        with_error("train", json!({"optimizer": {"lrr": 3}})),
        path(&["optimizer", "lrr"])
    );
    assert_eq!(
        with_error("distill", json!({"objective": {"alpha": 1.5}})),
        path(&["objective", "alpha"])
    );
    assert_eq!(
        with_error("train", json!({"objective": {"alpha": 0.5}})),
        path(&["objective", "alpha"])
    );
    // The last release's flat keys: an error is at the key as written.
    assert_eq!(with_error("train", json!({"lr": -1e-3})), key("lr"));
    assert_eq!(with_error("distill", json!({"alpha": 1.5})), key("alpha"));
    assert_eq!(
        with_error("distill", json!({"temperature": 0})),
        key("temperature")
    );
    assert_eq!(
        with_error("distill", json!({"teacher_weights": [0, 0]})),
        key("teacher_weights")
    );
    assert_eq!(
        with_error("average", json!({"weights": [1, -1]})),
        key("weights")
    );
    assert_eq!(with_error("average", json!({"beta": 1.5})), key("beta"));
    assert_eq!(with_error("average", json!({"betas": []})), key("betas"));
    assert_eq!(
        with_error("average", json!({"betas": [0, 2]})),
        key("betas")
    );
    assert_eq!(
        with_error("average", json!({"beta": 0.3, "betas": [0]})),
        key("beta")
    );
    assert_eq!(
        with_error("commit", json!({"embed": {"sequences": 0}})),
        vec![
            PathSeg::Key("embed".into()),
            PathSeg::Key("sequences".into())
        ]
    );
    assert_eq!(
        with_error("commit", json!({"embed": {"sequencez": 3}})),
        vec![
            PathSeg::Key("embed".into()),
            PathSeg::Key("sequencez".into())
        ]
    );
    assert_eq!(
        with_error("embed", json!({"sequences": 0})),
        key("sequences")
    );
    // Type errors in the training settings, and inside `arch`'s map.
    assert_eq!(with_error("train", json!({"steps": "ten"})), key("steps"));
    assert_eq!(with_error("distill", json!({"lr": [1]})), key("lr"));
    assert_eq!(
        with_error("distill", json!({"data": {"seq_len": "long"}})),
        path(&["data", "seq_len"])
    );
    assert_eq!(
        with_error(
            "distill",
            json!({"arch": {"preset": "v1-tiny", "heads": "four"}})
        ),
        vec![PathSeg::Key("arch".into()), PathSeg::Key("heads".into())]
    );
    for (kind, with) in [
        ("commit", json!({"storage": "ftp://host/bucket"})),
        ("commit", json!({"public_url": "bucket/prefix"})),
        ("submit", json!({"storage": "bucket"})),
    ] {
        let key_at_fault = with.as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(with_error(kind, with), key(&key_at_fault));
    }

    // Defaults fill every group; the last release's flat keys give the same `with`
    // (hence the same cache key), and say where they moved.
    let mut registry = Registry::new();
    soma_flow_stages::kinds::register(&mut registry);
    let prepare = |kind: &str, with: serde_json::Value| {
        registry
            .get(kind)
            .unwrap()
            .prepare(with)
            .map_err(|e| e.message)
            .unwrap()
    };
    let resolved = prepare("train", json!({"arch": "v1-tiny", "steps": 3})).with;
    assert_eq!(resolved["steps"], 3);
    assert_eq!(resolved["data"]["accum"], 64);
    assert_eq!(resolved["optimizer"]["lr"], 1e-4);
    assert!(resolved.get("objective").is_none());
    let new = prepare(
        "distill",
        json!({"steps": 3, "optimizer": {"lr": 0.01}, "schedule": {"decay": "cosine"},
               "data": {"accum": 2}, "objective": {"alpha": 0.25}}),
    );
    let old = prepare(
        "distill",
        json!({"steps": 3, "lr": 0.01, "schedule": "cosine", "accum": 2, "alpha": 0.25}),
    );
    assert!(new.moved.is_empty());
    assert_eq!(old.with, new.with);
    let moved: Vec<String> = old.moved.iter().map(|m| m.to.join(".")).collect();
    assert_eq!(
        moved,
        [
            "schedule.decay",
            "optimizer.lr",
            "data.accum",
            "objective.alpha"
        ]
    );
}

/// `average` with `betas`: every candidate is scored on the holdout with the chain's
/// score, the lowest kept; the kept model and its recorded loss agree with an
/// independent score of the output.
#[test]
fn average_keeps_the_beta_with_the_lowest_held_out_loss() {
    let dir = tempfile::tempdir().unwrap();
    let sources = repo_sources();
    let held_out = holdout();
    let stage = |seed: u64| {
        format!(
            "kind: train\n    inputs: {{data: data.dataset}}\n    with: {{arch: v1-tiny, heads: 4, steps: 2, seed: {seed}, checkpoint_every: 0, optimizer: {{lr: 0.003}}, data: {{batch: 2, accum: 1, seq_len: 64}}}}"
        )
    };
    let yaml = format!(
        "name: search\nstages:\n  \
         data:\n    kind: fetch-dataset\n    with: {{source: local, paths: ['{}'], holdout: 0}}\n  \
         held:\n    kind: fetch-dataset\n    with: {{source: local, paths: ['{}'], holdout: 0}}\n  \
         a:\n    {}\n  b:\n    {}\n  \
         mix:\n    kind: average\n    inputs: {{models: [a.model, b.model], holdout: held.dataset}}\n    \
         with: {{betas: [0, 0.5, 1], heads: 4, max_blobs: 1}}\n",
        sources.join("*.rs").display(),
        held_out.display(),
        stage(1),
        stage(2)
    );
    let record = crate::data_common::run_pipeline(dir.path(), &yaml);
    let store = soma_flow_engine::store::Store::open(&dir.path().join("store")).unwrap();
    let output = |stage: &str, name: &str| store.path_of(&record.stages[stage].outputs[name]);
    let search: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output("mix", "search")).unwrap()).unwrap();
    let candidates = search["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 3, "{search}");
    let best = candidates
        .iter()
        .min_by(|x, y| {
            x["loss"]
                .as_f64()
                .unwrap()
                .total_cmp(&y["loss"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(search["kept"]["beta"], best["beta"], "{search}");

    let blob = std::fs::read(&held_out).unwrap();
    let kept = output("mix", "model");
    let rescored = soma_flow_stages::score_models(
        std::slice::from_ref(&kept),
        &blob,
        0,
        Some(4),
        BackendChoice::NdArray,
    )
    .unwrap();
    crate::common::assert_close(
        "kept loss",
        rescored.models[0].loss,
        search["kept"]["loss"].as_f64().unwrap() as f32,
        1.0,
    );
    // β = 0 and β = 1 are the two models themselves.
    for (beta, stage) in [(0.0, "a"), (1.0, "b")] {
        if search["kept"]["beta"] == beta {
            let read = |p: &Path| std::fs::read(p).unwrap();
            assert!(read(&kept) == read(&output(stage, "model")));
        }
    }
}
