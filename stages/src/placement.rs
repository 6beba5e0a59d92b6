//! Embedding placement: the chain's routing (weighted KNN over the Active models,
//! k per target, sqrt-stake voting power; `soma_flow_chain::knn`, bit for bit)
//! run over many target embeddings drawn as the chain draws them
//! (`arrgen::target_embedding` of consecutive seeds), for my embedding and for
//! candidates in its place: the share of targets routed to me, and whom I meet there.
//! Also the picture: the registry and the candidates projected on their first two
//! principal components.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, ensure, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use soma_flow_chain::knn::{self, Candidate};
use soma_flow_chain::{arrgen, ObjectID};

use crate::training::curve::{register_font, FAMILY};

/// The id a candidate that is no registered model routes under: the highest, so it
/// sorts after every real model, as a new model's random id usually would not; ties
/// in score are the only place the order matters.
pub const NEW_MODEL: ObjectID = ObjectID([0xff; 32]);

/// A model of the registry as routing sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub id: String,
    pub stake: u64,
    /// Owned by the signer.
    pub mine: bool,
    pub embedding: Vec<f32>,
}

/// An embedding to place: in place of `replaces` (my model), or as a new model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    pub stake: u64,
    pub embedding: Vec<f32>,
}

/// Where a scenario lands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Landing {
    pub name: String,
    /// Sampled targets routed to it.
    pub routed: usize,
    /// `routed / samples`.
    pub share: f64,
    /// The models routed alongside it, by how many of those targets, most first.
    pub competitors: Vec<(String, usize)>,
}

/// The `placement` output: the inputs of the simulation and what it found, so that
/// an independent computation can repeat it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Targets drawn: seeds `seed`, `seed + 1`, ….
    pub samples: usize,
    pub seed: u64,
    /// Models per target.
    pub k: usize,
    pub registry: Vec<Registered>,
    pub scenarios: Vec<Scenario>,
    pub landings: Vec<Landing>,
}

impl Placement {
    /// A line per placed embedding: its share, and the three models it meets most.
    pub fn lines(&self) -> Vec<String> {
        self.landings
            .iter()
            .map(|l| {
                let met: Vec<String> = l
                    .competitors
                    .iter()
                    .take(3)
                    .map(|(id, n)| format!("{} ({n})", &id[..10.min(id.len())]))
                    .collect();
                format!(
                    "{}: {:.1}% of targets ({}/{}), meeting {}",
                    l.name,
                    100.0 * l.share,
                    l.routed,
                    self.samples,
                    if met.is_empty() {
                        "no one".to_owned()
                    } else {
                        met.join(", ")
                    }
                )
            })
            .collect()
    }
}

/// What to place: my model's registered embedding ("mine now", if I have an Active
/// model), then each of `candidates`. Each takes my model's place (and stake), or,
/// when I have none, enters as a new model staking `stake` (default: the registry's
/// median).
pub fn scenarios(
    registry: &[Registered],
    candidates: Vec<(String, Vec<f32>)>,
    stake: Option<u64>,
) -> Vec<Scenario> {
    let mine = registry.iter().find(|m| m.mine);
    let median = {
        let mut stakes: Vec<u64> = registry.iter().map(|m| m.stake).collect();
        stakes.sort_unstable();
        stakes.get(stakes.len() / 2).copied().unwrap_or(0)
    };
    let place = |name: String, embedding: Vec<f32>| Scenario {
        name,
        replaces: mine.map(|m| m.id.clone()),
        stake: mine.map_or(stake.unwrap_or(median), |m| m.stake),
        embedding,
    };
    mine.map(|m| ("mine now".to_owned(), m.embedding.clone()))
        .into_iter()
        .chain(candidates)
        .map(|(name, embedding)| place(name, embedding))
        .collect()
}

/// Routes `samples` drawn targets for each scenario.
pub fn simulate(
    registry: Vec<Registered>,
    scenarios: Vec<Scenario>,
    samples: usize,
    seed: u64,
    k: usize,
) -> Result<Placement> {
    ensure!(samples > 0, "no targets to sample");
    let dim = registry
        .first()
        .map(|m| m.embedding.len())
        .or_else(|| scenarios.first().map(|s| s.embedding.len()))
        .ok_or_else(|| anyhow!("the registry has no Active model and nothing is placed"))?;
    if let Some(s) = scenarios.iter().find(|s| s.embedding.len() != dim) {
        anyhow::bail!(
            "`{}` has {} values; the network's models have {dim}",
            s.name,
            s.embedding.len()
        );
    }
    let ids: Vec<ObjectID> = registry
        .iter()
        .map(|m| m.id.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("a registry id is not an object id"))?;
    let mut landings: Vec<(usize, BTreeMap<ObjectID, usize>)> =
        vec![(0, BTreeMap::new()); scenarios.len()];
    // Each scenario's candidate list, in ascending id order as the chain keeps them.
    type Field<'a> = (ObjectID, Vec<(ObjectID, &'a [f32], u64)>);
    let fields: Vec<Field<'_>> = scenarios
        .iter()
        .map(|s| {
            let replaced = s.replaces.as_deref();
            let mut field: Vec<(ObjectID, &[f32], u64)> = registry
                .iter()
                .zip(&ids)
                .filter(|(m, _)| Some(m.id.as_str()) != replaced)
                .map(|(m, id)| (*id, m.embedding.as_slice(), m.stake))
                .collect();
            let me = match replaced {
                Some(id) => id
                    .parse()
                    .map_err(|_| anyhow!("`{id}` is not an object id"))?,
                None => NEW_MODEL,
            };
            field.push((me, s.embedding.as_slice(), s.stake));
            field.sort_by_key(|(id, _, _)| *id);
            Ok((me, field))
        })
        .collect::<Result<_>>()?;
    for i in 0..samples {
        let target = arrgen::target_embedding(seed.wrapping_add(i as u64), dim);
        for ((me, field), (routed, met)) in fields.iter().zip(&mut landings) {
            let candidates: Vec<Candidate<'_>> = field
                .iter()
                .map(|(id, embedding, stake)| Candidate {
                    id: *id,
                    embedding,
                    stake: *stake,
                })
                .collect();
            let chosen = knn::select(&target, &candidates, k)?;
            if chosen.contains(me) {
                *routed += 1;
                for other in chosen.iter().filter(|id| *id != me) {
                    *met.entry(*other).or_default() += 1;
                }
            }
        }
    }
    let landings = scenarios
        .iter()
        .zip(landings)
        .map(|(s, (routed, met))| {
            let mut competitors: Vec<(String, usize)> =
                met.into_iter().map(|(id, n)| (id.to_hex(), n)).collect();
            competitors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            Landing {
                name: s.name.clone(),
                routed,
                share: routed as f64 / samples as f64,
                competitors,
            }
        })
        .collect();
    Ok(Placement {
        samples,
        seed,
        k,
        registry,
        scenarios,
        landings,
    })
}

/// The first two principal components' coordinates of `points` (rows), computed
/// from their Gram matrix by power iteration (deterministic start).
pub fn project(points: &[&[f32]]) -> Vec<(f64, f64)> {
    let n = points.len();
    let dim = points.first().map_or(0, |p| p.len());
    let mean: Vec<f64> = (0..dim)
        .map(|j| points.iter().map(|p| p[j] as f64).sum::<f64>() / n.max(1) as f64)
        .collect();
    let centred: Vec<Vec<f64>> = points
        .iter()
        .map(|p| p.iter().zip(&mean).map(|(x, m)| *x as f64 - m).collect())
        .collect();
    let mut gram: Vec<Vec<f64>> = (0..n)
        .map(|a| {
            (0..n)
                .map(|b| centred[a].iter().zip(&centred[b]).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect();
    let mut axes = Vec::new();
    for _ in 0..2 {
        let mut v: Vec<f64> = (0..n).map(|i| 1.0 + i as f64 / n as f64).collect();
        let mut value = 0.0;
        for _ in 0..500 {
            let w: Vec<f64> = gram
                .iter()
                .map(|row| row.iter().zip(&v).map(|(g, x)| g * x).sum())
                .collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm < 1e-12 {
                value = 0.0;
                break;
            }
            value = norm;
            v = w.into_iter().map(|x| x / norm).collect();
        }
        // Coordinates along this component: u · sqrt(λ).
        axes.push(v.iter().map(|x| x * value.sqrt()).collect::<Vec<f64>>());
        for a in 0..n {
            for b in 0..n {
                gram[a][b] -= value * v[a] * v[b];
            }
        }
    }
    (0..n).map(|i| (axes[0][i], axes[1][i])).collect()
}

/// Draws the registry (grey; mine red) and the placed scenarios (blue, named, with
/// their share) on the first two principal components of the embeddings'
/// directions, as a PNG at `path`.
pub fn plot(placement: &Placement, path: &Path) -> Result<()> {
    register_font();
    // Routing looks at directions only (cosine distance): project unit vectors.
    let unit = |e: &[f32]| -> Vec<f32> {
        let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-8);
        e.iter().map(|x| x / norm).collect()
    };
    let units: Vec<Vec<f32>> = placement
        .registry
        .iter()
        .map(|m| unit(&m.embedding))
        .chain(placement.scenarios.iter().map(|s| unit(&s.embedding)))
        .collect();
    let points: Vec<&[f32]> = units.iter().map(Vec::as_slice).collect();
    let xy = project(&points);
    let (lo_x, hi_x, lo_y, hi_y) = xy.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), (x, y)| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)),
    );
    let pad = |lo: f64, hi: f64| ((hi - lo) * 0.15).max(1e-3);
    let (px, py) = (pad(lo_x, hi_x), pad(lo_y, hi_y));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("map");
    let png = path.with_file_name(format!("{name}.tmp.png"));
    let draw = |e: &dyn std::fmt::Debug| anyhow!("drawing {}: {e:?}", path.display());
    {
        let root = BitMapBackend::new(&png, (800, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Embedding placement: {} models, {} sampled targets, k = {}",
                    placement.registry.len(),
                    placement.samples,
                    placement.k
                ),
                (FAMILY, 18),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(40)
            // Room on the right for the labels.
            .build_cartesian_2d((lo_x - px)..(hi_x + 3.0 * px), (lo_y - py)..(hi_y + py))
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_desc("PC 1")
            .y_desc("PC 2")
            .label_style((FAMILY, 12))
            .draw()
            .map_err(|e| draw(&e))?;
        let registry = placement.registry.iter().zip(&xy);
        chart
            .draw_series(registry.map(|(m, (x, y))| {
                let color = if m.mine { RED } else { RGBColor(120, 120, 120) };
                Circle::new((*x, *y), 5, color.filled())
            }))
            .map_err(|e| draw(&e))?;
        let placed = placement
            .scenarios
            .iter()
            .zip(&placement.landings)
            .zip(&xy[placement.registry.len()..]);
        for ((s, landing), (x, y)) in placed {
            let label = format!("{} ({:.1}%)", s.name, 100.0 * landing.share);
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((*x, *y))
                        + TriangleMarker::new((0, 0), 7, BLUE.filled())
                        + Text::new(label, (8, -6), (FAMILY, 13)),
                ))
                .map_err(|e| draw(&e))?;
        }
        root.present().map_err(|e| draw(&e))?;
    }
    std::fs::rename(&png, path)?;
    Ok(())
}

/// The Active models in ascending id order (as the chain routes over them), marked
/// mine when `owner` owns them, and the chain's models per target.
pub fn registry(
    net: &crate::network::Network,
    owner: Option<soma_flow_chain::SomaAddress>,
) -> Result<(Vec<Registered>, usize)> {
    let info = net.epoch()?;
    let mut models: Vec<_> = info
        .system
        .models
        .iter()
        .filter(|m| m.state == "active")
        .collect();
    models.sort_by_key(|m| m.id);
    let registry = models
        .into_iter()
        .map(|m| Registered {
            id: m.id.to_hex(),
            stake: m.stake,
            mine: Some(m.owner) == owner,
            embedding: m.embedding.clone(),
        })
        .collect();
    let k = usize::try_from(info.system.parameters.target_models_per_target).unwrap_or(usize::MAX);
    Ok((registry, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points along two orthogonal directions with different spreads: the first
    /// component follows the wider one.
    #[test]
    fn projection_finds_the_widest_direction_first() {
        let pts: Vec<Vec<f32>> = vec![
            vec![3.0, 0.0, 0.0],
            vec![-3.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, -1.0, 0.0],
        ];
        let refs: Vec<&[f32]> = pts.iter().map(Vec::as_slice).collect();
        let xy = project(&refs);
        assert!((xy[0].0.abs() - 3.0).abs() < 1e-6, "{xy:?}");
        assert!(xy[0].1.abs() < 1e-6, "{xy:?}");
        assert!((xy[2].1.abs() - 1.0).abs() < 1e-6, "{xy:?}");
    }
}
