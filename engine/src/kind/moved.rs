//! `with` keys a kind still reads under an old spelling ([`StageKind::moved`]): moved
//! to their new place before the `with` is deserialised, and warned about at the old
//! key with the new spelling, so that a pipeline written for the last release still
//! loads, with the same cache keys as one written the new way.
//!
//! [`StageKind::moved`]: super::StageKind::moved

use serde_json::{Map, Value as Json};

use crate::yaml::PathSeg;

/// One old top-level key and the path it moved to (`lr` → `optimizer.lr`).
pub type Move = (&'static str, &'static [&'static str]);

/// A key of one `with` that was read under its old spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub from: &'static str,
    pub to: &'static [&'static str],
}

impl Moved {
    /// The warning, for the stage's diagnostics.
    pub fn message(&self) -> String {
        format!(
            "moved to `{}`; the old spelling is read until the next release",
            self.to.join(".")
        )
    }

    /// The new spelling of the old key's value `value` (as written in the file).
    pub fn new_spelling(&self, value: &Json) -> String {
        let value = serde_json::to_string(value).unwrap_or_default();
        let inner = self.to[1..]
            .iter()
            .rev()
            .fold(value, |inner, key| format!("{{ {key}: {inner} }}"));
        format!("write `{}: {inner}`", self.to[0])
    }

    /// `path` as the file spells it: a path under the new place is under the old key.
    pub fn old_path(&self, path: &mut Vec<PathSeg>) {
        let new: Vec<PathSeg> = self
            .to
            .iter()
            .map(|k| PathSeg::Key(k.to_string()))
            .collect();
        if path.starts_with(&new) {
            path.splice(..new.len(), [PathSeg::Key(self.from.to_string())]);
        }
    }
}

/// Moves each old key of `with` that `moves` names to its new path, unless the new
/// path is already given (then the old key stays, and is refused as unknown) or the
/// old key is the new group itself, written the new way (a map).
pub fn apply(with: &mut Json, moves: &[Move]) -> Vec<Moved> {
    let mut moved = Vec::new();
    let Some(map) = with.as_object_mut() else {
        return moved;
    };
    // An old key whose name the new group took (`schedule: cosine` → `schedule.decay`)
    // moves first, so that the keys moving into that group find it a map.
    let (renamed, others): (Vec<&Move>, Vec<&Move>) = moves
        .iter()
        .partition(|(from, to)| to.first() == Some(from));
    for &(from, to) in renamed.into_iter().chain(others) {
        let Some(value) = map.get(from) else { continue };
        if to.first() == Some(&from) && value.is_object() {
            continue;
        }
        let value = map.remove(from).expect("present");
        let (last, parents) = to.split_last().expect("a move names a new path");
        match parent(map, parents) {
            Some(parent) if !parent.contains_key(*last) => {
                parent.insert(last.to_string(), value);
                moved.push(Moved { from, to });
            }
            _ => {
                map.insert(from.to_owned(), value);
            }
        }
    }
    moved
}

/// The map at `path` under `map` (created on the way), or `None` when something other
/// than a map is in the way.
fn parent<'m>(map: &'m mut Map<String, Json>, path: &[&str]) -> Option<&'m mut Map<String, Json>> {
    path.iter().try_fold(map, |node, key| {
        node.entry(key.to_string())
            .or_insert_with(|| Json::Object(Map::new()))
            .as_object_mut()
    })
}
