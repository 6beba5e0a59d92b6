//! The `with` keys of the `fetch-dataset` stage.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use soma_flow_chain::ObjectID;
use soma_flow_engine::WithError;

use crate::network::with::{NetworkSchema, NetworkWith};

/// Where the documents come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Files on this machine: `paths`.
    Local,
    /// A dataset repository on the Hugging Face Hub: `repo`, `revision`, `files`.
    Hf,
    /// An object or prefix in object storage or on a web server: `url`.
    Url,
    /// The data that filled the SOMA network's targets: `network`, `targets`,
    /// `strict`.
    Network,
}

/// Which targets' data `source: network` reads, by their status.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    /// Filled this epoch or the last: the bond is still held.
    Filled,
    /// Filled earlier, and its reward claimed.
    Claimed,
}

impl TargetState {
    pub fn name(self) -> &'static str {
        match self {
            TargetState::Filled => "filled",
            TargetState::Claimed => "claimed",
        }
    }
}

/// Whose wins `source: network` reads: `any` model's, `me` (models the signer owned
/// when they won), or one model's, by id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub enum WonBy {
    #[default]
    Any,
    Me,
    Model(ObjectID),
}

impl WonBy {
    pub fn is_any(&self) -> bool {
        *self == WonBy::Any
    }
}

impl TryFrom<String> for WonBy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "any" => Ok(WonBy::Any),
            "me" => Ok(WonBy::Me),
            id => id.parse().map(WonBy::Model).map_err(|_| {
                format!("`{id}` is not `any`, `me` or a model id (0x and 64 hex digits)")
            }),
        }
    }
}

impl From<WonBy> for String {
    fn from(w: WonBy) -> String {
        match w {
            WonBy::Any => "any".into(),
            WonBy::Me => "me".into(),
            WonBy::Model(id) => id.to_hex(),
        }
    }
}

/// Options of one dataset fetch. Documents keep their boundaries: each file of plain
/// text, each JSON Lines record and each Parquet row is one document.
#[serde_inline_default]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchOptions {
    pub source: SourceKind,
    /// `local`: files, directories (read recursively) or glob patterns, relative to
    /// the pipeline directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// `hf`: dataset repository id, `owner/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// `hf`: branch, tag or commit (default `main`). A branch or tag is resolved to its
    /// commit on every run, for the cache key and the manifest, so a moved branch
    /// refetches; a 40-digit commit id is used without asking the Hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `hf` and `url` prefixes: glob patterns over the file paths to fetch (`*`
    /// crosses `/`). Default: for `hf` the data files (`.parquet`, `.jsonl`,
    /// `.ndjson`, `.json`, compressed or not), for a `url` prefix every object.
    /// Dotfiles are never read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// JSON Lines field or Parquet column holding the text (default `text` or
    /// `content`, whichever exists). `column` is accepted as another name.
    #[serde(default, alias = "column", skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `url`: `s3://`, `gs://`, `az://`, `https://`, `http://` or `file://` URL of one
    /// object, or of a prefix ending in `/` whose objects are all read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Stop before the document that would take the total over this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Stop after this many documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_docs: Option<u64>,
    /// Shuffle the file order and the documents (seeded, reproducible).
    #[serde(default)]
    pub shuffle: bool,
    #[serde(default)]
    pub seed: u64,
    /// Only files with one of these extensions (`py`, `.rs`; compression suffixes
    /// such as `.gz` are looked through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Only files whose path (relative to the source root) matches this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Drop documents shorter than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_len: Option<u64>,
    /// Drop documents longer than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u64>,
    /// Keep only records whose `language` (or `lang`) field or column equals this
    /// value (case-insensitive); records without such a field are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Fraction of the documents held out as a second dataset, in [0, 1).
    #[serde_inline_default(0.05)]
    pub holdout: f64,
    /// `network`: which network (as for the network stages; default `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<NetworkSchema>")]
    pub network: Option<NetworkWith>,
    /// `network`: which filled targets (default: every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<TargetFilter>,
    /// `network`: fail when a target's data cannot be downloaded or does not match
    /// its manifest (default: skip it with a note).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
}

impl FetchOptions {
    /// Options for `source` with every other key at its default.
    pub fn new(source: SourceKind) -> Self {
        serde_json::from_value(serde_json::json!({ "source": source }))
            .expect("every key but `source` has a default")
    }
}

impl FetchOptions {
    /// Checks what deserialisation cannot: the keys each source needs or ignores. The
    /// error is located at the key at fault.
    pub fn validate(&self) -> Result<(), WithError> {
        if !(0.0..1.0).contains(&self.holdout) {
            return Err(WithError::at(
                &["holdout"],
                format!("`holdout` is {}, not in [0, 1)", self.holdout),
            ));
        }
        if let (Some(min), Some(max)) = (self.min_len, self.max_len) {
            if min > max {
                return Err(WithError::at(
                    &["min_len"],
                    format!("`min_len` {min} is above `max_len` {max}"),
                ));
            }
        }
        let given = [
            ("paths", !self.paths.is_empty(), SourceKind::Local),
            ("repo", self.repo.is_some(), SourceKind::Hf),
            ("revision", self.revision.is_some(), SourceKind::Hf),
            ("url", self.url.is_some(), SourceKind::Url),
            ("network", self.network.is_some(), SourceKind::Network),
            ("targets", self.targets.is_some(), SourceKind::Network),
            ("strict", self.strict, SourceKind::Network),
        ];
        for (key, present, owner) in given {
            if present && owner != self.source {
                return Err(WithError::at(
                    &[key],
                    format!(
                        "`{key}` belongs to `source: {}`, not `source: {}`",
                        owner.name(),
                        self.source.name()
                    ),
                ));
            }
        }
        let (needed, present) = match self.source {
            SourceKind::Local => ("paths", !self.paths.is_empty()),
            SourceKind::Hf => ("repo", self.repo.is_some()),
            SourceKind::Url => ("url", self.url.is_some()),
            SourceKind::Network => ("network", true),
        };
        self.targets().check().map_err(|e| e.within("targets"))?;
        self.check_patterns()?;
        if let Some(url) = &self.url {
            crate::data::check_url(url).map_err(|e| WithError::at(&["url"], e.to_string()))?;
        }
        if let Some(network) = &self.network {
            network.check()?;
        }
        if !present {
            return Err(WithError::at(
                &["source"],
                format!("`source: {}` needs `{needed}`", self.source.name()),
            ));
        }
        Ok(())
    }
}

impl FetchOptions {
    /// Compiles every glob as the sources will: `paths` with wildcards (the `glob`
    /// crate, over this machine's files), `files` and `pattern` (`globset`, over a
    /// listing).
    fn check_patterns(&self) -> Result<(), WithError> {
        use soma_flow_engine::yaml::PathSeg::{Index, Key};
        let not_a_glob = |path, pattern: &str, why: String| WithError {
            path,
            message: format!("`{pattern}` is not a glob: {why}"),
            help: Some(
                "`*` any part of a name, `**` any folders, `?` one character, `[ab]` one of".into(),
            ),
        };
        for (i, p) in self.paths.iter().enumerate() {
            if let (true, Err(e)) = (p.contains(['*', '?', '[']), glob::Pattern::new(p)) {
                return Err(not_a_glob(
                    vec![Key("paths".into()), Index(i)],
                    p,
                    e.to_string(),
                ));
            }
        }
        let listed = self.files.iter().enumerate();
        let listed = listed.map(|(i, p)| (vec![Key("files".into()), Index(i)], p));
        for (path, p) in listed.chain(
            self.pattern
                .iter()
                .map(|p| (vec![Key("pattern".into())], p)),
        ) {
            if let Err(e) = globset::Glob::new(p) {
                return Err(not_a_glob(path, p, e.kind().to_string()));
            }
        }
        Ok(())
    }

    /// `source: local`: each of `paths` names something under `dir` (a glob: the
    /// folder before its first wildcard exists), so that a wrong path is said on load,
    /// with the folder a relative one was taken from.
    pub fn check_local_paths(&self, dir: &std::path::Path) -> Result<(), WithError> {
        use soma_flow_engine::yaml::PathSeg::{Index, Key};
        if self.source != SourceKind::Local {
            return Ok(());
        }
        for (i, entry) in self.paths.iter().enumerate() {
            let fixed = soma_flow_engine::params::before_wildcards(std::path::Path::new(entry));
            let full = dir.join(&fixed);
            if full.exists() {
                continue;
            }
            return Err(WithError {
                path: vec![Key("paths".into()), Index(i)],
                message: format!(
                    "nothing at {}{}",
                    full.display(),
                    crate::network::with::taken_from(&fixed, dir)
                ),
                help: Some(
                    "a path given with --set is taken from the working directory when it \
                     exists there; absolute paths work anywhere"
                        .into(),
                ),
            });
        }
        Ok(())
    }

    /// The targets `source: network` reads.
    pub fn targets(&self) -> TargetFilter {
        self.targets.clone().unwrap_or_default()
    }
}

/// Which filled targets a read of the network selects (`fetch-dataset`'s
/// `source: network`, `gaps`): the `targets` key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetFilter {
    /// The targets' statuses to read (default both `filled` and `claimed`; the chain
    /// deletes a target when its reward is claimed, so `claimed` finds targets only
    /// on a network that keeps them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<TargetState>,
    /// Only targets generated (and so filled) in this epoch or later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_epoch: Option<u64>,
    /// Only targets generated in this epoch or earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_epoch: Option<u64>,
    /// Whose wins: `any` (the default), `me` (models the signer owned when they won)
    /// or a model id.
    #[serde(default, skip_serializing_if = "WonBy::is_any")]
    pub won_by: WonBy,
    /// At most this many targets, the most recent first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl TargetFilter {
    pub fn check(&self) -> Result<(), WithError> {
        if let (Some(from), Some(to)) = (self.from_epoch, self.to_epoch) {
            if from > to {
                return Err(WithError::at(
                    &["from_epoch"],
                    format!("`from_epoch` {from} is after `to_epoch` {to}"),
                ));
            }
        }
        if self.limit == Some(0) {
            return Err(WithError::at(&["limit"], "`limit: 0` selects nothing")
                .help("give N ≥ 1, or leave it out for every target"));
        }
        Ok(())
    }

    /// The statuses to list.
    pub fn states(&self) -> &[TargetState] {
        match self.status.as_slice() {
            [] => &[TargetState::Filled, TargetState::Claimed],
            given => given,
        }
    }

    pub fn in_epochs(&self, epoch: u64) -> bool {
        self.from_epoch.is_none_or(|from| epoch >= from)
            && self.to_epoch.is_none_or(|to| epoch <= to)
    }
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Local => "local",
            SourceKind::Hf => "hf",
            SourceKind::Url => "url",
            SourceKind::Network => "network",
        }
    }
}
