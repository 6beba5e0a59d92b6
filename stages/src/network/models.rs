//! Which of the signer's models a pipeline works with. An owner may run several models
//! (the main job's, a specialist's); a pipeline names its model (`network.model`), and
//! the store maps the name to the model's id on each network, in
//! `state/network/models.json` (chain id → owner → name → id). A name can also be the
//! id itself (`0x…`), which needs no map: a fresh machine (a CI runner) names its
//! model so.
//!
//! A commit under a name the store does not know never takes over a model it did not
//! make: it creates a new one, unless the signer has exactly one model this store
//! knows by no name and the store knows none of the signer's models by name yet (a
//! model made before names, or by this pipeline on another machine), which it adopts
//! with a note. Several such models are an error that lists them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use soma_flow_chain::client::ModelInfo;
use soma_flow_chain::{ObjectID, SomaAddress};

use super::lifecycle::own_models;
use super::Network;

/// The name a pipeline that names none has.
pub const DEFAULT: &str = "default";

/// chain id → owner (hex) → name → model id (`0x…`).
type Names = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

fn path(store: &Path) -> PathBuf {
    super::state_dir(store).join("models.json")
}

fn read(store: &Path) -> Result<Names> {
    let path = path(store);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a map of model names", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Names::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Written whole and moved into place: never half a map.
fn write(store: &Path, names: &Names) -> Result<()> {
    let path = path(store);
    let json = serde_json::to_vec_pretty(names)?;
    crate::private_file::write(&path, &json, crate::private_file::Existing::Replace)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The model a name stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Named {
    /// The signer's model with this id (not inactive).
    Model(ObjectID),
    /// None yet: a commit creates one and [`remember`]s it.
    New,
}

/// What `name` (a name, or a `0x…` id) stands for among `models` of `owner` on `net`.
/// Adopting a model (see the module) is remembered at once and `note`d.
pub fn resolve(
    net: &Network,
    models: &[ModelInfo],
    owner: &SomaAddress,
    name: &str,
    store: &Path,
    note: &dyn Fn(String),
) -> Result<Named> {
    let mine = own_models(models, owner);
    if name.starts_with("0x") {
        let id: ObjectID = name
            .parse()
            .with_context(|| format!("`{name}` is not a model id"))?;
        return match mine.iter().find(|m| m.id == id) {
            Some(_) => Ok(Named::Model(id)),
            None => bail!(
                "model {id} is not a model of 0x{owner} that is still in the network (an \
                 inactive model cannot be committed to)"
            ),
        };
    }
    let chain = net.chain_id()?;
    let mut names = read(store)?;
    let known = names
        .entry(chain)
        .or_default()
        .entry(owner.to_hex())
        .or_default();
    if let Some(id) = known.get(name) {
        let id: ObjectID = id
            .parse()
            .context("the map of model names holds a bad id")?;
        if mine.iter().any(|m| m.id == id) {
            return Ok(Named::Model(id));
        }
        note(format!(
            "model {id} (`{name}`) is inactive or gone: a new model takes the name"
        ));
        return Ok(Named::New);
    }
    let unnamed: Vec<&&ModelInfo> = mine
        .iter()
        .filter(|m| !known.values().any(|id| *id == m.id.to_hex()))
        .collect();
    match (unnamed.as_slice(), known.is_empty()) {
        ([], _) | (_, false) => Ok(Named::New),
        ([only], true) => {
            let id = only.id;
            known.insert(name.to_owned(), id.to_hex());
            write(store, &names)?;
            note(format!(
                "model {id}, which this store knew by no name, is now `{name}`"
            ));
            Ok(Named::Model(id))
        }
        (several, true) => bail!(
            "0x{owner} has {} models this store knows by no name ({}): say which one is \
             `{name}` with its id (`network.model: 0x…`), once",
            several.len(),
            several
                .iter()
                .map(|m| m.id.to_hex())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Remembers that `name` stands for `id` (a model just created, or named by its id).
pub fn remember(
    net: &Network,
    owner: &SomaAddress,
    name: &str,
    id: &ObjectID,
    store: &Path,
) -> Result<()> {
    if name.starts_with("0x") {
        return Ok(());
    }
    let mut names = read(store)?;
    names
        .entry(net.chain_id()?)
        .or_default()
        .entry(owner.to_hex())
        .or_default()
        .insert(name.to_owned(), id.to_hex());
    write(store, &names)
}

/// Which of the owner's models a stage that reads them (`reveal`, `fetch-competitors`
/// with `own`, `embed` updates) looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Any: the pipeline names no model.
    Any,
    /// The named model, or none before its first commit.
    Only(Option<ObjectID>),
}

impl Selection {
    pub fn admits(&self, id: &ObjectID) -> bool {
        match self {
            Selection::Any => true,
            Selection::Only(only) => only.as_ref() == Some(id),
        }
    }
}

/// The [`Selection`] of a stage whose `network.model` is `name` (no adoption, nothing
/// written).
pub fn selection(
    net: &Network,
    models: &[ModelInfo],
    owner: &SomaAddress,
    name: Option<&str>,
    store: &Path,
) -> Result<Selection> {
    match name {
        None => Ok(Selection::Any),
        Some(name) => known(net, models, owner, name, store).map(Selection::Only),
    }
}

/// The model `name` stands for, if the store or the id says.
fn known(
    net: &Network,
    models: &[ModelInfo],
    owner: &SomaAddress,
    name: &str,
    store: &Path,
) -> Result<Option<ObjectID>> {
    if name.starts_with("0x") {
        return Ok(Some(
            name.parse()
                .with_context(|| format!("`{name}` is not a model id"))?,
        ));
    }
    let names = read(store)?;
    let known = names
        .get(&net.chain_id()?)
        .and_then(|o| o.get(&owner.to_hex()))
        .cloned()
        .unwrap_or_default();
    Ok(match known.get(name) {
        Some(id) => Some(
            id.parse()
                .context("the map of model names holds a bad id")?,
        ),
        // No names yet and one model: it is the one (as a commit would adopt it).
        None => match (own_models(models, owner).as_slice(), known.is_empty()) {
            ([only], true) => Some(only.id),
            _ => None,
        },
    })
}
