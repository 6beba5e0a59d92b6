//! The `scores` output of `score` (and `soma-flow score --json`): each model's mean
//! on-chain loss, wins and embedding over the blobs scored, and the winner; with the
//! table people read in run summaries.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use soma_flow_engine::table::{pipe, Align};

use crate::score::{cosine_distance, ScoreReport};

/// One scored model, labelled for people.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoredModel {
    pub name: String,
    /// Mean on-chain loss over the blobs scored.
    pub loss: f32,
    /// Blobs on which this model had the lowest loss.
    #[serde(default)]
    pub wins: usize,
    pub embedding: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<f64>,
}

/// The `scores` output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scores {
    pub seed: u64,
    pub blobs: usize,
    pub models: Vec<ScoredModel>,
    pub winner: usize,
    /// The model that is mine (the `model` input), if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mine: Option<usize>,
}

/// Combines the scores of several blobs (mean loss and embedding, wins per model),
/// names the models and adds their distance to `target`. One blob is exactly the chain's.
pub fn label(
    reports: &[ScoreReport],
    names: &[String],
    seed: u64,
    target: Option<&[f32]>,
) -> Result<Scores> {
    anyhow::ensure!(
        !reports.is_empty(),
        "no data to score: the data input holds no documents"
    );
    let n = reports.len() as f32;
    let models = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let loss = reports.iter().map(|r| r.models[i].loss).sum::<f32>() / n;
            let mut embedding = vec![0.0f32; reports[0].models[i].embedding.len()];
            for r in reports {
                for (acc, x) in embedding.iter_mut().zip(&r.models[i].embedding) {
                    *acc += x / n;
                }
            }
            let distance = target.map(|t| cosine_distance(&embedding, t)).transpose()?;
            let wins = reports.iter().filter(|r| r.winner == i).count();
            Ok(ScoredModel {
                name: name.clone(),
                loss,
                wins,
                embedding,
                distance,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let losses: Vec<f32> = models.iter().map(|m| m.loss).collect();
    let winner = crate::score::winner_index(&losses).context("every model's loss is NaN")?;
    Ok(Scores {
        seed,
        blobs: reports.len(),
        models,
        winner,
        mine: None,
    })
}

/// How the scores were computed, the line under [`table`].
pub fn caption(scores: &Scores) -> String {
    format!(
        "(on-chain loss, noise seed {}, mean over {} blob(s))",
        scores.seed, scores.blobs
    )
}

/// The table printed by `soma-flow score` and in run summaries: a pipe table, which
/// `report` draws as a table.
pub fn table(scores: &Scores) -> String {
    let with_distance = scores.models.iter().any(|m| m.distance.is_some());
    let mut columns = vec![
        ("#", Align::Right),
        ("model", Align::Left),
        ("loss", Align::Right),
        ("wins", Align::Right),
    ];
    if with_distance {
        columns.push(("distance", Align::Right));
    }
    columns.push(("", Align::Left));
    let rows: Vec<Vec<String>> = scores
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut row = vec![
                i.to_string(),
                m.name.clone(),
                format!("{:.6}", m.loss),
                m.wins.to_string(),
            ];
            if with_distance {
                row.push(m.distance.map_or(String::new(), |d| format!("{d:.6}")));
            }
            row.push(if i == scores.winner { "← winner" } else { "" }.into());
            row
        })
        .collect();
    pipe(&columns, &rows)
}

/// The competitor with the lowest loss other than model `mine`.
fn strongest_other(scores: &Scores, mine: usize) -> Option<&ScoredModel> {
    scores
        .models
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != mine)
        .map(|(_, m)| m)
        .min_by(|a, b| a.loss.total_cmp(&b.loss))
}

/// By how much `other`'s loss exceeds `me`'s, as a percentage of `other`'s (negative:
/// mine is worse).
fn lead_percent(me: &ScoredModel, other: &ScoredModel) -> f32 {
    100.0 * (other.loss - me.loss) / other.loss.abs().max(f32::MIN_POSITIVE)
}

/// What `compare` shows of a score table: the winner and its loss, and with a model of
/// mine, its loss, whether it wins and its lead over the strongest competitor in %.
pub fn headline(scores: &Scores) -> Vec<(String, serde_json::Value)> {
    use serde_json::json;
    let winner = &scores.models[scores.winner];
    let mut out = vec![
        ("winner".to_string(), json!(winner.name)),
        ("winner loss".to_string(), json!(winner.loss)),
    ];
    if let Some(mine) = scores.mine {
        let me = &scores.models[mine];
        out.push(("my loss".into(), json!(me.loss)));
        out.push(("I win".into(), json!(scores.winner == mine)));
        if let Some(other) = strongest_other(scores, mine) {
            out.push(("my lead %".into(), json!(lead_percent(me, other))));
        }
    }
    out
}

/// Whether model `mine` wins, by how much and against whom: the line a run summary
/// leads with.
pub fn verdict(scores: &Scores, mine: usize) -> String {
    let me = &scores.models[mine];
    let Some(other) = strongest_other(scores, mine) else {
        return format!("{} has no competitor to beat here", me.name);
    };
    let margin = (other.loss - me.loss).abs();
    let percent = lead_percent(me, other).abs();
    if scores.winner == mine {
        format!(
            "{} WINS: loss {:.4} against {:.4} of the strongest competitor, {} ({margin:.4} lower, {percent:.1}%)",
            me.name, me.loss, other.loss, other.name
        )
    } else {
        format!(
            "{} LOSES: loss {:.4}; {} wins with {:.4} ({margin:.4} lower, {percent:.1}%)",
            me.name, me.loss, other.name, other.loss
        )
    }
}
