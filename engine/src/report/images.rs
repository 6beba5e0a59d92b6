//! Finds the PNG outputs of a run, whether an output is a PNG file or a directory
//! holding some, by content rather than by name: stored objects have no extension.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::record::RunRecord;
use crate::store::{ArtifactKind, Store};

const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// An output holding a whole image data set would bloat the page past use; beyond
/// this many PNGs in one output the rest are only counted.
const MAX_PER_OUTPUT: usize = 12;

pub struct Image {
    /// `stage.output`, or `stage.output/path/in/dir.png` for a file inside a directory.
    pub caption: String,
    /// The name of the copy beside the page.
    pub file_name: String,
    pub bytes: Vec<u8>,
}

#[derive(Default)]
pub struct Images {
    pub found: Vec<Image>,
    /// What could not be shown, and why; the report is still written.
    pub problems: Vec<String>,
}

pub fn collect(store: &Store, record: &RunRecord) -> Images {
    let mut images = Images::default();
    for (stage, s) in &record.stages {
        for (output, artifact) in &s.outputs {
            let label = format!("{stage}.{output}");
            let path = store.path_of(artifact);
            let found = match artifact.kind {
                ArtifactKind::File => png_file(&path).map(|png| {
                    png.into_iter()
                        .map(|bytes| Image {
                            caption: label.clone(),
                            file_name: format!("{label}.png"),
                            bytes,
                        })
                        .collect()
                }),
                ArtifactKind::Dir => pngs_in_dir(&path, &label, &mut images.problems),
            };
            match found {
                Ok(found) => images.found.extend(found),
                Err(e) if e.kind() == io::ErrorKind::NotFound => images.problems.push(format!(
                    "{label}: no longer in the store ({})",
                    path.display()
                )),
                Err(e) => images
                    .problems
                    .push(format!("{label}: cannot read {}: {e}", path.display())),
            }
        }
    }
    images
}

/// The file's bytes if it is a PNG.
fn png_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    if has_png_magic(path)? {
        std::fs::read(path).map(Some)
    } else {
        Ok(None)
    }
}

fn pngs_in_dir(dir: &Path, label: &str, problems: &mut Vec<String>) -> io::Result<Vec<Image>> {
    let mut found = Vec::new();
    let mut left_out = 0usize;
    crate::hash::walk(dir, dir, &mut |rel, meta, path| {
        if !meta.is_file() {
            return Ok(());
        }
        if found.len() == MAX_PER_OUTPUT {
            // Only count: reading the rest would cost time for nothing shown.
            left_out += usize::from(has_png_magic(path)?);
            return Ok(());
        }
        if let Some(bytes) = png_file(path)? {
            let stem = rel.strip_suffix(".png").unwrap_or(rel).replace('/', ".");
            found.push(Image {
                caption: format!("{label}/{rel}"),
                file_name: format!("{label}.{stem}.png"),
                bytes,
            });
        }
        Ok(())
    })?;
    if left_out > 0 {
        problems.push(format!(
            "{label}: {left_out} more PNG file(s) left out; the page shows the first {MAX_PER_OUTPUT}"
        ));
    }
    Ok(found)
}

fn has_png_magic(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; PNG_MAGIC.len()];
    match File::open(path)?.read_exact(&mut head) {
        Ok(()) => Ok(head == PNG_MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StageStatus;
    use crate::report::test_support::{record, stage};
    use crate::store::Artifact;

    /// A valid 1x1 PNG: the magic alone is what is checked, the rest keeps it viewable.
    const TINY_PNG: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f,
        0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8,
        0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];

    fn publish(store: &Store, work: &Path, name: &str, files: &[(&str, &[u8])]) -> Artifact {
        let path = work.join(name);
        if let [("", bytes)] = files {
            std::fs::write(&path, bytes).unwrap();
        } else {
            for (rel, bytes) in files {
                let p = path.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, bytes).unwrap();
            }
        }
        store.publish(&path).unwrap()
    }

    #[test]
    fn finds_pngs_by_content_in_files_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let curve = publish(&store, tmp.path(), "curve", &[("", TINY_PNG)]);
        let text = publish(&store, tmp.path(), "text", &[("", b"not an image at all")]);
        let short = publish(&store, tmp.path(), "short", &[("", b"\x89PN")]);
        let plots = publish(
            &store,
            tmp.path(),
            "plots",
            &[
                ("a/loss", TINY_PNG),
                ("b.png", TINY_PNG),
                ("notes.txt", b"x"),
            ],
        );
        let mut train = stage("train", StageStatus::Ran, 0, 1);
        train.outputs = [
            ("curve", curve),
            ("text", text),
            ("short", short),
            ("plots", plots),
        ]
        .map(|(name, a)| (name.to_string(), a))
        .into();
        let record = record(vec![("train", train)]);
        let images = collect(&store, &record);
        assert!(images.problems.is_empty(), "{:?}", images.problems);
        let names: Vec<_> = images
            .found
            .iter()
            .map(|i| (i.caption.as_str(), i.file_name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("train.curve", "train.curve.png"),
                ("train.plots/a/loss", "train.plots.a.loss.png"),
                ("train.plots/b.png", "train.plots.b.png"),
            ]
        );
        assert!(images.found.iter().all(|i| i.bytes == TINY_PNG));
    }

    #[test]
    fn many_pngs_in_one_output_are_capped_and_missing_objects_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let names: Vec<String> = (0..MAX_PER_OUTPUT + 3)
            .map(|i| format!("{i:03}.png"))
            .collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), TINY_PNG)).collect();
        let many = publish(&store, tmp.path(), "many", &files);
        let gone = Artifact {
            kind: ArtifactKind::File,
            hash: crate::store::ContentHash::parse(&"ab".repeat(32)).unwrap(),
            size: 1,
        };
        let mut s = stage("command", StageStatus::Hit, 0, 1);
        s.outputs = [("many".to_string(), many), ("gone".to_string(), gone)].into();
        let record = record(vec![("s", s)]);
        let images = collect(&store, &record);
        assert_eq!(images.found.len(), MAX_PER_OUTPUT);
        assert_eq!(images.problems.len(), 2, "{:?}", images.problems);
        assert!(images.problems[0].starts_with("s.gone: no longer in the store"));
        assert!(images.problems[1].starts_with("s.many: 3 more PNG file(s) left out"));
    }
}
