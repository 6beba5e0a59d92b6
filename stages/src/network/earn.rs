//! What a model owner earns: the targets whose rewards the signer can claim now,
//! the claims (one ClaimRewards each, sequenced so that no two race on a gas coin),
//! and the earnings per model read back from the chain.
//!
//! Every figure comes from the chain: which targets are claimable and whose
//! (ListTargets), what a claim pays ([`ClaimSplit`], the chain's rule), and what it
//! paid (the claim transaction's balance changes). The chain deletes a target when
//! it is claimed, so `earnings` keeps what it has seen of the owner's targets in the
//! store and counts a won target that is gone as claimed (by anyone) and paid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use soma_flow_chain::client::{ClaimSplit, ClientError, EpochInfo, ModelInfo, TargetInfo};
use soma_flow_chain::proto::ExecutionErrorKind;
use soma_flow_chain::{ObjectID, SecretKey, SomaAddress};

use super::Network;

/// Which roles the signer holds in a target.
fn roles(target: &TargetInfo, signer: &SomaAddress) -> Vec<&'static str> {
    let mut roles = Vec::new();
    if target.winning_model_owner.as_ref() == Some(signer) {
        roles.push("owner");
    }
    if target.submitter.as_ref() == Some(signer) {
        roles.push("submitter");
    }
    roles
}

/// The targets claimable now (filled with `current > fill_epoch + 1`, or expired)
/// in which the signer owns the winning model or submitted the data.
pub fn claimable(net: &Network, signer: &SomaAddress) -> Result<Vec<TargetInfo>> {
    Ok(net
        .targets(Some("claimable"), None)
        .with_context(|| format!("cannot list the claimable targets of {}", net.endpoint))?
        .into_iter()
        .filter(|t| !roles(t, signer).is_empty())
        .collect())
}

/// What happened to one target.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Claimed: the chain's own balance change of the signer (pay minus fee).
    Claimed {
        digest: String,
        fee: u64,
        change: i128,
    },
    /// Someone else claimed it first (or it is gone): nothing to do.
    Gone { why: String },
    /// Not sent: the fee exceeds what it would pay the signer (`--all` sends it).
    Skipped { why: String },
    /// Sent and refused, or not sent for another reason.
    Failed { why: String },
}

/// One claimable target and what became of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClaimLine {
    /// `0x` + 64 hex digits, as every id soma-flow prints.
    pub target: String,
    pub model: Option<String>,
    pub generation_epoch: u64,
    pub fill_epoch: Option<u64>,
    /// `owner` and/or `submitter`.
    pub roles: Vec<String>,
    /// The chain's split of the reward.
    pub split: ClaimSplit,
    /// What it pays the signer, before the fee.
    pub pays: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A `claim`'s result: every claimable target and the totals.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct ClaimReport {
    pub signer: String,
    pub epoch: u64,
    pub lines: Vec<ClaimLine>,
    /// Owner shares, incentives, submitter shares with bonds, and fees of the claims
    /// sent; `net` is the sum of the chain's balance changes.
    pub owner: u64,
    pub incentive: u64,
    pub submitter: u64,
    pub fees: u64,
    pub net: i128,
}

impl ClaimReport {
    pub fn claimed(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| matches!(l.outcome, Outcome::Claimed { .. }))
            .count()
    }

    pub fn failed(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| matches!(l.outcome, Outcome::Failed { .. }))
            .count()
    }

    /// The report as lines a person reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.lines.is_empty() {
            out.push_str(&format!(
                "nothing to claim for {} in epoch {}: no claimable target has a model of \
                 theirs as winner or their data\n",
                self.signer, self.epoch
            ));
            return out;
        }
        for line in &self.lines {
            let what = match &line.outcome {
                Outcome::Claimed { fee, change, .. } => {
                    let mut paid = Vec::new();
                    if line.roles.iter().any(|r| r == "owner") {
                        paid.push(format!("owner share {}", shown(line.split.owner)));
                    }
                    if line.roles.iter().any(|r| r == "submitter") {
                        paid.push(format!(
                            "submitter share and bond {}",
                            shown(line.split.submitter + line.split.bond)
                        ));
                    }
                    paid.push(format!("incentive {}", shown(line.split.incentive)));
                    format!(
                        "claimed: {}, fee {}; balance change {}",
                        paid.join(", "),
                        shown(*fee),
                        shown_signed(*change)
                    )
                }
                Outcome::Gone { why } => format!("not claimed: {why}"),
                Outcome::Skipped { why } => format!("skipped: {why}"),
                Outcome::Failed { why } => format!("FAILED: {why}"),
            };
            out.push_str(&format!(
                "target {} (epoch {}, {}): {what}\n",
                line.target,
                line.generation_epoch,
                line.roles.join(" and ")
            ));
        }
        out.push_str(&format!(
            "{} claimed of {}: owner shares {}, incentives {}, submitter shares and bonds {}, \
             fees {}; balance change {}\n",
            self.claimed(),
            self.lines.len(),
            shown(self.owner),
            shown(self.incentive),
            shown(self.submitter),
            shown(self.fees),
            shown_signed(self.net)
        ));
        out
    }
}

/// Shannons with their SOMA value.
pub fn shown(shannons: u64) -> String {
    format!("{shannons} ({})", super::soma(shannons))
}

fn shown_signed(shannons: i128) -> String {
    let sign = if shannons < 0 { "−" } else { "" };
    format!(
        "{sign}{}",
        shown(shannons.unsigned_abs().min(u64::MAX as u128) as u64)
    )
}

/// Claims every target [`claimable`] names for the signer, one transaction at a
/// time (each awaited to finality, so the gas coin is never raced). A target whose
/// fee would exceed what it pays the signer is skipped unless `all`; one claimed
/// by someone else meanwhile is `Gone`, not an error. The store's observations
/// ([`earnings`]) are brought up to date first.
pub fn claim(
    net: &Network,
    key: &SecretKey,
    all: bool,
    store: &Path,
    progress: &dyn Fn(&str),
) -> Result<ClaimReport> {
    let signer = key.address();
    let info = net.epoch()?;
    let targets = all_targets(net)?;
    // Seen before they are claimed (and deleted), so that `earnings` counts them.
    tally(net, &info, &targets, &signer, store)?;
    let params = info.system.parameters;
    let targets: Vec<TargetInfo> = targets
        .into_iter()
        .filter(|t| t.status == "claimable" && !roles(t, &signer).is_empty())
        .collect();
    let mut report = ClaimReport {
        signer: format!("0x{signer}"),
        epoch: info.epoch,
        ..ClaimReport::default()
    };
    for (i, target) in targets.iter().enumerate() {
        let split = ClaimSplit::of(target, &params);
        let pays = split.paid_to(target, &signer);
        let roles = roles(target, &signer);
        progress(&format!(
            "claim {}/{}: target {}",
            i + 1,
            targets.len(),
            target.id
        ));
        let outcome = if !split.pays_for_itself(target, &signer) && !all {
            Outcome::Skipped {
                why: format!(
                    "its fee of {} exceeds the {} it pays you (--all claims it anyway)",
                    shown(split.fee),
                    shown(pays)
                ),
            }
        } else {
            match net.block_on(net.client.claim_rewards(key, &target.id, split.fee)) {
                Ok(done) => Outcome::Claimed {
                    digest: done.digest.to_base58(),
                    fee: done.fee(),
                    change: done.balance_change(&signer),
                },
                Err(e) if gone(&e) => Outcome::Gone {
                    why: format!("already claimed by someone else ({e})"),
                },
                Err(e) => Outcome::Failed {
                    why: format!("{e:#}"),
                },
            }
        };
        let line = ClaimLine {
            target: target.id.to_hex(),
            model: target.winning_model_id.map(|m| m.to_hex()),
            generation_epoch: target.generation_epoch,
            fill_epoch: target.fill_epoch,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            split,
            pays,
            outcome,
        };
        if let Outcome::Claimed { fee, change, .. } = &line.outcome {
            if roles.contains(&"owner") {
                report.owner += split.owner;
            }
            if roles.contains(&"submitter") {
                report.submitter += split.submitter + split.bond;
            }
            report.incentive += split.incentive;
            report.fees += fee;
            report.net += change;
        }
        report.lines.push(line);
    }
    Ok(report)
}

/// A claim refused because the target is no longer there to claim.
fn gone(error: &ClientError) -> bool {
    match error {
        ClientError::Failed { kind, .. } => matches!(
            kind,
            ExecutionErrorKind::TargetAlreadyClaimed | ExecutionErrorKind::TargetNotFound
        ),
        other => other.is_not_found(),
    }
}

/// A target of the owner's models as the store last saw it on the chain.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Seen {
    generation_epoch: u64,
    /// The owner's models among those the target was routed to.
    routed: Vec<String>,
    /// The winning model, when it is the owner's.
    won_by: Option<String>,
    /// The owner's share of its reward (0 unless won by the owner's model).
    owner_share: u64,
    /// Gone from the chain after it was filled: claimed (by anyone), and the owner
    /// share paid.
    claimed: bool,
}

/// What the store has seen of one owner's targets on one chain, in
/// `state/network/earnings/<chain>-<owner>.json`. The chain deletes a target when it
/// is claimed, by anyone; a filled target that was seen and is gone was therefore
/// claimed and paid its owner share.
struct Observed {
    path: PathBuf,
    /// By target id (`0x` + 64 hex digits).
    targets: BTreeMap<String, Seen>,
}

impl Observed {
    fn open(store: &Path, chain: &str, owner: &SomaAddress) -> Result<Self> {
        let path = super::state_dir(store)
            .join("earnings")
            .join(format!("{chain}-{owner}.json"));
        let targets = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not an earnings record", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).context(format!("cannot read {}", path.display())),
        };
        Ok(Self { path, targets })
    }

    /// Written whole and moved into place: never half a record.
    fn save(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.targets)?;
        crate::private_file::write(&self.path, &json, crate::private_file::Existing::Replace)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// The figures of one epoch (by the targets' generation epoch).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochFigures {
    /// Targets routed to the model (it is among their `model_ids`).
    pub routed: u64,
    /// Targets the model won (filled with data it scored best).
    pub won: u64,
    /// Owner shares paid by claims, whoever sent them (shannons).
    pub earned: u64,
    /// Owner shares claimable now.
    pub claimable: u64,
}

impl EpochFigures {
    fn add(&mut self, other: &EpochFigures) {
        self.routed += other.routed;
        self.won += other.won;
        self.earned += other.earned;
        self.claimable += other.claimable;
    }
}

/// One model's earnings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelEarnings {
    pub model_id: String,
    pub state: String,
    /// Stake in its pool (shannons).
    pub stake: u64,
    pub commission_rate: u64,
    pub next_epoch_commission_rate: u64,
    /// Epochs since its first reveal, this one included (0 if never active).
    pub epochs_active: u64,
    #[serde(flatten)]
    pub total: EpochFigures,
    pub per_epoch: BTreeMap<u64, EpochFigures>,
}

/// Earnings of every model `owner` owns on `net`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Earnings {
    pub owner: String,
    pub epoch: u64,
    pub models: Vec<ModelEarnings>,
}

/// The earnings of `owner`'s models, from the chain's objects: the registry (stake,
/// commission, activation), the targets it holds (routed, won, claimable now), and
/// the targets seen earlier that the chain has since deleted (claimed by anyone: the
/// owner share was paid). Each call brings the store's observations up to date, so
/// run it (or `claim`, which does) at least once an epoch.
pub fn earnings(net: &Network, owner: &SomaAddress, store: &Path) -> Result<Earnings> {
    let info = net.epoch()?;
    let targets = all_targets(net)?;
    tally(net, &info, &targets, owner, store)
}

/// Every target the network holds.
fn all_targets(net: &Network) -> Result<Vec<TargetInfo>> {
    net.targets(None, None)
        .with_context(|| format!("cannot list the targets of {}", net.endpoint))
}

/// [`earnings`] from the epoch and the targets already read.
fn tally(
    net: &Network,
    info: &EpochInfo,
    targets: &[TargetInfo],
    owner: &SomaAddress,
    store: &Path,
) -> Result<Earnings> {
    let params = &info.system.parameters;
    let mine: Vec<&ModelInfo> = info
        .system
        .models
        .iter()
        .filter(|m| m.owner == *owner)
        .collect();
    let mut observed = Observed::open(store, &net.chain_id()?, owner)?;
    let mut listed = std::collections::BTreeSet::new();
    let mut claimable = BTreeMap::new();
    for t in targets {
        listed.insert(t.id.to_hex());
        let routed: Vec<String> = mine
            .iter()
            .filter(|m| t.model_ids.contains(&m.id))
            .map(|m| m.id.to_hex())
            .collect();
        let won_by = t
            .winning_model_id
            .filter(|id| t.winning_model_owner == Some(*owner) && mine.iter().any(|m| m.id == *id))
            .map(|id| id.to_hex());
        if routed.is_empty() && won_by.is_none() {
            continue;
        }
        let owner_share = won_by
            .as_ref()
            .map_or(0, |_| ClaimSplit::of(t, params).owner);
        if t.status == "claimable" {
            claimable.insert(t.id.to_hex(), owner_share);
        }
        observed.targets.insert(
            t.id.to_hex(),
            Seen {
                generation_epoch: t.generation_epoch,
                routed,
                won_by,
                owner_share,
                claimed: false,
            },
        );
    }
    for (id, seen) in observed.targets.iter_mut() {
        if seen.claimed || seen.won_by.is_none() || listed.contains(id) {
            continue;
        }
        let target: ObjectID = id
            .parse()
            .with_context(|| format!("{id} is not a target id"))?;
        match net.block_on(net.client.target(&target)) {
            Err(e) if e.is_not_found() => seen.claimed = true,
            Err(e) => return Err(e).context(format!("cannot read target {id}")),
            Ok(_) => {}
        }
    }
    observed.save()?;
    let models = mine
        .iter()
        .map(|model| {
            let mut per_epoch: BTreeMap<u64, EpochFigures> = BTreeMap::new();
            let model_id = model.id.to_hex();
            for (id, seen) in &observed.targets {
                let won = seen.won_by.as_ref() == Some(&model_id);
                if !won && !seen.routed.contains(&model_id) {
                    continue;
                }
                let figures = per_epoch.entry(seen.generation_epoch).or_default();
                figures.routed += 1;
                if won {
                    figures.won += 1;
                    if seen.claimed {
                        figures.earned += seen.owner_share;
                    }
                    figures.claimable += claimable.get(id).copied().unwrap_or(0);
                }
            }
            let mut total = EpochFigures::default();
            per_epoch.values().for_each(|f| total.add(f));
            ModelEarnings {
                model_id,
                state: model.state.clone(),
                stake: model.stake,
                commission_rate: model.commission_rate,
                next_epoch_commission_rate: model.next_epoch_commission_rate,
                epochs_active: model
                    .activation_epoch
                    .map_or(0, |a| info.epoch.saturating_sub(a) + 1),
                total,
                per_epoch,
            }
        })
        .collect();
    Ok(Earnings {
        owner: format!("0x{owner}"),
        epoch: info.epoch,
        models,
    })
}

impl Earnings {
    /// One figure per epoch, summed over the models, in SOMA.
    pub fn per_epoch(&self, figure: fn(&EpochFigures) -> u64) -> Vec<(f64, f64)> {
        let mut sums = BTreeMap::<u64, u64>::new();
        for model in &self.models {
            for (epoch, figures) in &model.per_epoch {
                *sums.entry(*epoch).or_default() += figure(figures);
            }
        }
        sums.into_iter()
            .map(|(e, v)| {
                (
                    e as f64,
                    v as f64 / soma_flow_chain::SHANNONS_PER_SOMA as f64,
                )
            })
            .collect()
    }

    /// A table per model, then its epochs.
    pub fn render(&self) -> String {
        let mut out = format!("models of {} in epoch {}\n", self.owner, self.epoch);
        if self.models.is_empty() {
            out.push_str("no models: commit one (`soma-flow run pipelines/distill.yaml`)\n");
        }
        for m in &self.models {
            let next = if m.next_epoch_commission_rate != m.commission_rate {
                format!(" ({} bps from next epoch)", m.next_epoch_commission_rate)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "\nmodel {}  {}  stake {}  commission {} bps{next}  active {} epochs\n",
                m.model_id,
                m.state,
                shown(m.stake),
                m.commission_rate,
                m.epochs_active
            ));
            out.push_str(&format!(
                "  {:>6}  {:>7}  {:>5}  {:>30}  {:>30}\n",
                "epoch", "routed", "won", "earned", "claimable"
            ));
            let rows = m.per_epoch.iter().map(|(e, f)| (e.to_string(), f));
            for (epoch, f) in rows.chain(std::iter::once(("total".to_owned(), &m.total))) {
                out.push_str(&format!(
                    "  {:>6}  {:>7}  {:>5}  {:>30}  {:>30}\n",
                    epoch,
                    f.routed,
                    f.won,
                    shown(f.earned),
                    shown(f.claimable)
                ));
            }
        }
        out
    }
}

/// A model management transaction (`soma-flow model …`), checked before it is
/// sent as the chain would check it, so a refusal costs no fee and says why.
#[derive(Clone, Copy, Debug)]
pub enum Manage {
    /// AddStakeToModel: `amount` shannons from one of the signer's coins.
    Stake { amount: u64 },
    /// SetModelCommissionRate: from the next epoch boundary.
    Commission { bps: u64 },
    /// DeactivateModel: the model leaves the network at once.
    Deactivate,
}

/// Checks `action` on `model_id` against the chain's rules and the signer's
/// balance, then sends it; returns what it did in words.
pub fn manage(
    net: &Network,
    key: &SecretKey,
    model_id: &ObjectID,
    action: Manage,
) -> Result<String> {
    let signer = key.address();
    let info = net.epoch()?;
    let params = &info.system.parameters;
    let model = info.system.model(model_id).with_context(|| {
        format!(
            "{} has no model {model_id} (`soma-flow earnings` lists yours)",
            net.endpoint
        )
    })?;
    let owned = || -> Result<()> {
        anyhow::ensure!(
            model.owner == signer,
            "model {model_id} is owned by 0x{}, not by the signer 0x{signer}: only its owner \
             may change it",
            model.owner
        );
        anyhow::ensure!(
            model.state == "active",
            "model {model_id} is {}: only an active model (revealed) can be changed this way",
            model.state
        );
        Ok(())
    };
    let (fee, done) = match action {
        Manage::Stake { amount } => {
            anyhow::ensure!(amount > 0, "a stake must be more than 0 shannons");
            anyhow::ensure!(
                model.state != "inactive",
                "model {model_id} is inactive: stake cannot be added to it"
            );
            let fee = params.base_fee + 2 * params.write_object_fee + params.value_fee(amount);
            (
                amount.saturating_add(fee),
                format!("staked {} on model {model_id}", shown(amount)),
            )
        }
        Manage::Commission { bps } => {
            anyhow::ensure!(
                bps <= 10_000,
                "a commission rate is at most 10000 bps (100%); {bps} was given"
            );
            owned()?;
            let fee = params.base_fee + 2 * params.write_object_fee;
            (
                fee,
                format!(
                    "model {model_id}: commission {} bps from epoch {} (now {} bps)",
                    bps,
                    info.epoch + 1,
                    model.commission_rate
                ),
            )
        }
        Manage::Deactivate => {
            owned()?;
            let fee = params.base_fee + 2 * params.write_object_fee;
            (
                fee,
                format!("model {model_id} is inactive from now on; targets no longer route to it"),
            )
        }
    };
    let coins = net.block_on(net.client.coins(&signer))?;
    let richest = coins.first().map_or(0, |c| c.1);
    anyhow::ensure!(
        richest >= fee,
        "this needs one coin of at least {} (amount and fees), but 0x{signer}'s richest coin \
         holds {} on {}",
        shown(fee),
        shown(richest),
        net.endpoint
    );
    let executed = match action {
        Manage::Stake { amount } => {
            net.block_on(net.client.add_stake_to_model(key, model_id, amount))
        }
        Manage::Commission { bps } => {
            net.block_on(net.client.set_model_commission_rate(key, model_id, bps))
        }
        Manage::Deactivate => net.block_on(net.client.deactivate_model(key, model_id)),
    }
    .with_context(|| format!("{} refused it", net.endpoint))?;
    Ok(format!(
        "{done} (transaction {}, fee {})",
        executed.digest.to_base58(),
        shown(executed.fee())
    ))
}

/// Earnings per epoch as a PNG at `path` (any extension; stage outputs have none):
/// the owner shares earned and those claimable now, summed over the owner's models,
/// by the targets' generation epoch.
pub fn plot(earnings: &Earnings, path: &Path) -> Result<()> {
    use crate::training::curve::{register_font, FAMILY};
    use plotters::prelude::*;
    let earned = earnings.per_epoch(|f| f.earned);
    let claimable = earnings.per_epoch(|f| f.claimable);
    let first = earned.first().map_or(0.0, |p| p.0);
    let last = earned.last().map_or(1.0, |p| p.0).max(first + 1.0);
    let high = earned
        .iter()
        .chain(&claimable)
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.4;
    register_font();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("chart");
    let png = path.with_file_name(format!("{name}.tmp.png"));
    let draw = |e: &dyn std::fmt::Debug| anyhow::anyhow!("drawing {}: {e:?}", png.display());
    {
        let root = BitMapBackend::new(&png, (800, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("earnings of {}", earnings.owner), (FAMILY, 18))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((first - 0.5)..(last + 0.5), 0f64..high)
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_desc("epoch (targets generated)")
            .y_desc("SOMA")
            .label_style((FAMILY, 14))
            .draw()
            .map_err(|e| draw(&e))?;
        for (label, points, colour) in [
            ("earned (claimed owner shares)", earned, BLUE),
            ("claimable now", claimable, RED),
        ] {
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 4, colour.filled())))
                .map_err(|e| draw(&e))?;
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(|e| draw(&e))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| draw(&e))?;
        root.present().map_err(|e| draw(&e))?;
    }
    std::fs::rename(&png, path)?;
    Ok(())
}
