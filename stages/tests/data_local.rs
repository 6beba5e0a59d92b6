//! The data library on local files: formats, compression, filters, limits, holdout,
//! determinism, the reader, and the errors that name what is wrong.

use crate::data_common;

use data_common::*;
use serde_json::json;
use soma_flow_stages::data::{FetchOptions, SourceKind};

/// Five files in every supported format; documents must come out whole and in order.
fn mixed_inputs(ws: &Workspace) {
    ws.write("corpus/a.txt", b"plain text document");
    ws.write("corpus/b.py", b"def f():\n    return 1\n");
    let jsonl = jsonl_bytes(&[
        vec![("text", "json one"), ("id", "1")],
        vec![("text", "json two"), ("id", "2")],
    ]);
    ws.write("corpus/c.jsonl.gz", &gzip(&jsonl));
    let jsonl = jsonl_bytes(&[vec![("content", "zstd json")]]);
    ws.write("corpus/d.jsonl.zst", &zstd(&jsonl));
    let parquet = parquet_bytes(
        &[(
            "content",
            vec![
                Some("row 0"),
                None,
                Some("row 2"),
                Some("row 3"),
                Some("row 4"),
            ],
        )],
        2,
    );
    ws.write("corpus/e.parquet", &parquet);
    ws.write("corpus/f.parquet.zst", &zstd(&parquet));
    ws.write("corpus/g.txt.gz", &gzip(b"gzipped text"));
    ws.write(
        "corpus/h.json.gz",
        &gzip(&jsonl_bytes(&[vec![("text", "json lines named .json")]])),
    );
}

#[test]
fn every_format_and_compression_keeps_documents_whole_and_in_order() {
    let ws = Workspace::new();
    mixed_inputs(&ws);
    let opts = options(json!({"source": "local", "paths": ["corpus"], "holdout": 0.0}));
    let fetched = ws.fetch(&opts, "all").unwrap();
    let rows = ["row 0", "row 2", "row 3", "row 4"];
    let mut expected = vec![
        "plain text document",
        "def f():\n    return 1\n",
        "json one",
        "json two",
        "zstd json",
    ];
    expected.extend(rows);
    expected.extend(rows);
    expected.push("gzipped text");
    expected.push("json lines named .json");
    assert_eq!(fetched.train_docs(), expected);
    assert!(fetched.holdout.is_empty());

    let train = &fetched.train;
    assert_eq!(train.len(), expected.len());
    assert_eq!(train.get(2), b"json one");
    let total: usize = expected.iter().map(|d| d.len()).sum();
    assert_eq!(train.total_bytes(), total as u64);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fetched.dir.join("train/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["documents"], json!(expected.len()));
    assert_eq!(manifest["bytes"], json!(total));
    assert_eq!(manifest["split"], "train");
    assert_eq!(manifest["options"]["paths"], json!(["corpus"]));
    let sources = manifest["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 8);
    assert_eq!(sources[0]["path"], "corpus/a.txt");
    let a_hash = blake3::hash(b"plain text document").to_hex().to_string();
    assert_eq!(sources[0]["blake3"], json!(a_hash));
    let index = std::fs::read(fetched.dir.join("train/index.bin")).unwrap();
    assert_eq!(index.len(), (expected.len() + 1) * 8);
    assert_eq!(&index[8..16], &19u64.to_le_bytes());
    assert!(
        fetched.progress.iter().any(|l| l.contains("MB/s")),
        "{:?}",
        fetched.progress
    );
}

fn numbered_docs(ws: &Workspace, n: usize) {
    let values: Vec<String> = (0..n).map(|i| format!("document number {i:03}")).collect();
    let records: Vec<Vec<(&str, &str)>> =
        values.iter().map(|v| vec![("text", v.as_str())]).collect();
    ws.write("docs.jsonl", &jsonl_bytes(&records));
}

#[test]
fn holdout_split_sizes_partition_the_documents() {
    let ws = Workspace::new();
    numbered_docs(&ws, 100);
    for (holdout, held) in [(0.0, 0), (0.05, 5), (0.1, 10), (0.333, 33)] {
        let opts = options(json!({"source": "local", "paths": ["docs.jsonl"], "holdout": holdout}));
        let fetched = ws.fetch(&opts, &format!("h{holdout}")).unwrap();
        assert_eq!(fetched.holdout.len(), held, "holdout {holdout}");
        assert_eq!(fetched.train.len(), 100 - held, "holdout {holdout}");
        assert_eq!(fetched.report.holdout.documents, held as u64);
        assert_eq!(fetched.report.holdout.split, "holdout");
        // Without shuffling each split keeps the input order.
        let train = fetched.train_docs();
        assert!(train.windows(2).all(|w| w[0] < w[1]));
        let mut all = train;
        all.extend(fetched.holdout_docs());
        all.sort();
        let expected: Vec<String> = (0..100)
            .map(|i| format!("document number {i:03}"))
            .collect();
        assert_eq!(all, expected);
    }
    // The default holdout is 5%.
    let opts = options(json!({"source": "local", "paths": ["docs.jsonl"]}));
    assert_eq!(ws.fetch(&opts, "default").unwrap().holdout.len(), 5);
}

#[test]
fn same_inputs_and_options_give_byte_identical_outputs() {
    let ws = Workspace::new();
    numbered_docs(&ws, 50);
    mixed_inputs(&ws);
    let opts = |seed: u64| {
        options(
            json!({"source": "local", "paths": ["docs.jsonl", "corpus"], "shuffle": true, "seed": seed, "holdout": 0.2}),
        )
    };
    let first = ws.fetch(&opts(7), "first").unwrap();
    let second = ws.fetch(&opts(7), "second").unwrap();
    assert_eq!(first.files(), second.files());
    let other = ws.fetch(&opts(8), "other").unwrap();
    assert_ne!(first.train_docs(), other.train_docs());
    let mut a = first.train_docs();
    a.extend(first.holdout_docs());
    let mut b = other.train_docs();
    b.extend(other.holdout_docs());
    a.sort();
    b.sort();
    assert_eq!(a, b, "shuffling reorders, it never changes the documents");
    let unshuffled = ws
        .fetch(
            &options(json!({"source": "local", "paths": ["docs.jsonl"], "holdout": 0.0})),
            "plain",
        )
        .unwrap();
    let shuffled = ws
        .fetch(
            &options(json!({"source": "local", "paths": ["docs.jsonl"], "holdout": 0.0, "shuffle": true})),
            "shuffled",
        )
        .unwrap();
    assert_ne!(unshuffled.train_docs(), shuffled.train_docs());
}

#[test]
fn file_and_document_filters() {
    let ws = Workspace::new();
    ws.write("src/main.rs", b"fn main() {}");
    ws.write("src/lib.rs.gz", &gzip(b"pub mod x;"));
    ws.write("src/tool.py", b"print('hello')");
    ws.write("docs/readme.md", b"# readme");
    ws.write(".hidden/secret.rs", b"fn hidden() {}");
    let run = |extra: serde_json::Value, name: &str| {
        let mut opts = json!({"source": "local", "paths": ["."], "holdout": 0.0});
        opts.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ws.fetch(&options(opts), name).unwrap().train_docs()
    };
    assert_eq!(
        run(json!({"extensions": ["rs"]}), "ext"),
        ["pub mod x;", "fn main() {}"]
    );
    assert_eq!(
        run(json!({"extensions": [".py", "md"]}), "ext2"),
        ["# readme", "print('hello')"]
    );
    assert_eq!(
        run(json!({"pattern": "src/*.py"}), "pattern"),
        ["print('hello')"]
    );
    assert_eq!(
        run(json!({"min_len": 12, "max_len": 14}), "len"),
        ["fn main() {}", "print('hello')"]
    );

    // `language` keeps matching records and records without a language.
    ws.write(
        "lang/a.jsonl",
        &jsonl_bytes(&[
            vec![("text", "rust code"), ("language", "Rust")],
            vec![("text", "python code"), ("language", "Python")],
            vec![("text", "unknown")],
        ]),
    );
    ws.write(
        "lang/b.parquet",
        &parquet_bytes(
            &[
                ("text", vec![Some("pq rust"), Some("pq go")]),
                ("lang", vec![Some("rust"), Some("go")]),
            ],
            8,
        ),
    );
    let opts = options(
        json!({"source": "local", "paths": ["lang/*"], "language": "rust", "holdout": 0.0}),
    );
    assert_eq!(
        ws.fetch(&opts, "lang").unwrap().train_docs(),
        ["rust code", "unknown", "pq rust"]
    );
}

/// Absolute paths, folders and globs, under a hidden folder (a temporary directory, a
/// `~/.cache`): the folders above what the entry names are no part of the file names
/// that the filters (dotfiles skipped) and the records see.
#[test]
fn absolute_paths_and_globs_work_anywhere() {
    let ws = Workspace::new();
    ws.write("elsewhere/.cache/corpus/a.md", b"alpha");
    ws.write("elsewhere/.cache/corpus/b.md", b"beta");
    ws.write("elsewhere/.cache/corpus/sub/c.txt", b"gamma");
    ws.write("elsewhere/.cache/corpus/.git/d.md", b"dotted");
    let root = ws.base().join("elsewhere/.cache/corpus");
    let root = root.to_str().unwrap();
    for (i, (paths, docs)) in [
        (json!([format!("{root}/*.md")]), vec!["alpha", "beta"]),
        (json!([root]), vec!["alpha", "beta", "gamma"]),
        (json!([format!("{root}/")]), vec!["alpha", "beta", "gamma"]),
        (
            json!([format!("{root}/b.md"), format!("{root}/a.md")]),
            vec!["alpha", "beta"],
        ),
        (json!([format!("{root}/**/*.txt")]), vec!["gamma"]),
    ]
    .into_iter()
    .enumerate()
    {
        let opts = options(json!({"source": "local", "paths": paths, "holdout": 0.0}));
        let fetched = ws
            .fetch(&opts, &format!("abs{i}"))
            .unwrap_or_else(|e| panic!("{paths}: {e}"));
        assert_eq!(fetched.train_docs(), docs, "{paths}");
    }
}

#[test]
fn max_docs_and_max_bytes_stop_early() {
    let ws = Workspace::new();
    numbered_docs(&ws, 40); // 19 bytes each
    let run = |extra: serde_json::Value, name: &str| {
        let mut opts = json!({"source": "local", "paths": ["docs.jsonl"], "holdout": 0.25});
        opts.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let fetched = ws.fetch(&options(opts), name).unwrap();
        (
            fetched.train.len() + fetched.holdout.len(),
            fetched.train.total_bytes() + fetched.holdout.total_bytes(),
        )
    };
    assert_eq!(run(json!({"max_docs": 12}), "docs"), (12, 12 * 19));
    assert_eq!(run(json!({"max_bytes": 100}), "bytes"), (5, 95));
    assert_eq!(
        run(json!({"max_bytes": 95, "max_docs": 3}), "both"),
        (3, 57)
    );
    // With shuffling the limit samples across the input, still deterministically.
    let shuffled = |name: &str| {
        let opts = json!({"source": "local", "paths": ["docs.jsonl"], "holdout": 0.0, "max_docs": 5, "shuffle": true, "seed": 3});
        ws.fetch(&options(opts), name).unwrap().train_docs()
    };
    assert_eq!(shuffled("s1"), shuffled("s2"));
}

#[test]
fn errors_name_the_thing_at_fault() {
    let ws = Workspace::new();
    ws.write("a.jsonl", &jsonl_bytes(&[vec![("body", "x"), ("id", "1")]]));
    ws.write(
        "b.parquet",
        &parquet_bytes(&[("body", vec![Some("x")]), ("url", vec![Some("u")])], 4),
    );
    ws.write("broken.parquet", b"PAR1 this is not really parquet");
    ws.write("bad.jsonl", b"{\"text\": \"fine\"}\n{not json\n");
    ws.write("c.jsonl", &jsonl_bytes(&[vec![("text", "x")]]));
    let fetch = |json: serde_json::Value| error_text(ws.fetch(&options(json), "err"));

    let e = fetch(json!({"source": "local", "paths": ["a.jsonl"]}));
    assert!(
        e.contains("a.jsonl") && e.contains("`text` or `content`") && e.contains("body, id"),
        "{e}"
    );
    let e = fetch(json!({"source": "local", "paths": ["b.parquet"], "column": "text"}));
    assert!(
        e.contains("b.parquet") && e.contains("no column `text`") && e.contains("body, url"),
        "{e}"
    );
    let e = fetch(json!({"source": "local", "paths": ["c.jsonl"], "field": "body"}));
    assert!(
        e.contains("c.jsonl line 1")
            && e.contains("no field `body`")
            && e.contains("available: text"),
        "{e}"
    );
    let e = fetch(json!({"source": "local", "paths": ["broken.parquet"]}));
    assert!(e.contains("broken.parquet: unreadable or corrupt"), "{e}");
    let e = fetch(json!({"source": "local", "paths": ["bad.jsonl"]}));
    assert!(
        e.contains("bad.jsonl: unreadable or corrupt: line 2"),
        "{e}"
    );
    let e = fetch(json!({"source": "local", "paths": ["*.jsonl"], "extensions": ["rs"]}));
    assert!(
        e.contains("no files in local paths") && e.contains("*.rs") && e.contains("a.jsonl"),
        "{e}"
    );
    let e = fetch(json!({"source": "local", "paths": ["missing/*.txt"]}));
    assert!(
        e.contains("no files") && e.contains("found: nothing"),
        "{e}"
    );
    let e = fetch(json!({"source": "local", "paths": ["missing.txt"]}));
    assert!(
        e.contains("missing.txt") && e.contains("No such file"),
        "{e}"
    );
    let e = fetch(json!({"source": "url", "url": "ftp://example.com/data.jsonl"}));
    assert!(
        e.contains("unknown source \"ftp://example.com/data.jsonl\""),
        "{e}"
    );
    let e = fetch(json!({"source": "hf", "paths": ["x"]}));
    assert!(e.contains("`paths` belongs to `source: local`"), "{e}");
    let e = fetch(json!({"source": "hf"}));
    assert!(e.contains("`source: hf` needs `repo`"), "{e}");
    let e = fetch(json!({"source": "local", "paths": ["c.jsonl"], "holdout": 1.0}));
    assert!(e.contains("`holdout` is 1"), "{e}");

    let e = serde_json::from_value::<FetchOptions>(json!({"source": "ftp"}))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown variant `ftp`") && e.contains("`local`, `hf`, `url`"),
        "{e}"
    );
    let e = serde_json::from_value::<FetchOptions>(json!({"source": "local", "colum": "x"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `colum`"), "{e}");
}

#[test]
fn options_defaults_aliases_and_schema() {
    let opts = options(json!({"source": "hf", "repo": "a/b", "column": "content"}));
    let mut expected = FetchOptions::new(SourceKind::Hf);
    expected.repo = Some("a/b".into());
    expected.field = Some("content".into());
    assert_eq!(opts, expected);
    assert_eq!(opts.holdout, 0.05);
    let schema = serde_json::to_value(schemars::schema_for!(FetchOptions)).unwrap();
    let properties = schema["properties"].as_object().unwrap();
    for key in [
        "source",
        "paths",
        "repo",
        "revision",
        "files",
        "field",
        "url",
        "max_bytes",
        "max_docs",
        "shuffle",
        "seed",
        "extensions",
        "pattern",
        "min_len",
        "max_len",
        "language",
        "holdout",
    ] {
        assert!(properties.contains_key(key), "schema lacks {key}");
    }
    assert_eq!(schema["additionalProperties"], json!(false));
}

#[test]
fn reader_rejects_a_truncated_dataset() {
    let ws = Workspace::new();
    numbered_docs(&ws, 3);
    let fetched = ws
        .fetch(
            &options(json!({"source": "local", "paths": ["docs.jsonl"], "holdout": 0.0})),
            "x",
        )
        .unwrap();
    let docs = fetched.dir.join("train/docs.bin");
    let bytes = std::fs::read(&docs).unwrap();
    std::fs::write(&docs, &bytes[..bytes.len() - 1]).unwrap();
    let e = soma_flow_stages::data::Dataset::open(&fetched.dir.join("train"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("unreadable or corrupt") && e.contains("docs.bin"),
        "{e}"
    );
}

#[test]
fn option_and_duration_errors_are_located_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    let mut registry = soma_flow_engine::Registry::new();
    soma_flow_stages::kinds::register(&mut registry);
    let opts = soma_flow_engine::pipeline::LoadOptions {
        registry: &registry,
        overrides: &[],
        backend: None,
        backends: soma_flow_stages::backend::SETTING,
    };
    for (stage, place, needle) in [
        (
            "kind: fetch-dataset\n    with:\n      source: hf\n      paths: [a.txt]",
            "p.yaml:7:14",
            "with.paths: `paths` belongs to `source: local`",
        ),
        (
            "kind: fetch-dataset\n    with:\n      source: local\n      paths: [a.txt, 'b/[x']",
            "p.yaml:7:22",
            "with.paths[1]: `b/[x` is not a glob",
        ),
        (
            "kind: fetch-dataset\n    with:\n      source: url\n      url: ftp://host/data.jsonl",
            "p.yaml:7:12",
            "with.url: unknown source \"ftp://host/data.jsonl\"",
        ),
        (
            "kind: reveal\n    with:\n      poll: 1s\n      wait: soon",
            "p.yaml:7:13",
            "with.wait: `soon` is not a duration",
        ),
    ] {
        std::fs::write(&path, format!("name: x\nstages:\n  s:\n    {stage}\n")).unwrap();
        let err = soma_flow_engine::pipeline::read(&path)
            .and_then(|source| soma_flow_engine::pipeline::load(source, &opts))
            .err()
            .expect("rejected")
            .to_string();
        assert!(err.contains(place) && err.contains(needle), "{err}");
    }
}
