//! `embed`: the embedding a model registers, from a sample of its training
//! data (genesis) or from the data it won (update). With `network`, an update takes
//! the won data from the network and is made only when due (the guide's cadence:
//! `every_wins` wins or `every` since the last update); until then the registered
//! embedding is kept.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use soma_flow_engine::{
    CachedOutputs, InputPort, Inputs, Outcome, Requirements, RunContext, StageKind, WithError,
};

use crate::data::{network_files, network_offer, TargetFilter, WonBy};
use crate::formats::embedding::{self, write, EmbeddingFile, Period};
use crate::network::with::NetworkWith;
use crate::network::{state_dir, Network};
use crate::training::documents::{open_documents, InMemory};
pub use crate::training::embedding::EmbedWith;
use crate::training::embedding::{embed_file, EmbedMode};

/// The guide's cadence: after 100 wins, or 7 days since the last update.
const EVERY_WINS: u64 = 100;
const EVERY: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct EmbedKind;

impl StageKind for EmbedKind {
    type With = EmbedWith;
    const NAME: &'static str = "embed";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Unit-norm model embedding: mean-pooled final representations over sampled or won data";

    /// With `network`, `data` serves only the first embedding (no model of mine yet).
    fn inputs(&self, with: &EmbedWith) -> Inputs {
        let data = match with.network {
            Some(_) => InputPort::optional("data"),
            None => InputPort::required("data"),
        };
        Inputs::Fixed(vec![InputPort::required("model"), data])
    }

    fn outputs(&self, _: &EmbedWith) -> Vec<String> {
        vec!["embedding".into()]
    }

    fn check(&self, with: &EmbedWith) -> Result<(), WithError> {
        with.check()
    }

    fn check_files(&self, with: &EmbedWith, dir: &std::path::Path) -> Result<(), WithError> {
        with.network.as_ref().map_or(Ok(()), |n| n.check_files(dir))
    }

    fn requirements(&self, _: &EmbedWith) -> Requirements {
        Requirements::backend_in(super::MODEL_RESOURCE)
    }

    fn irreproducible(&self, with: &EmbedWith, _: &str) -> Option<&'static str> {
        with.network
            .is_some()
            .then_some("reads the network's wins at run time")
    }

    /// An update from the network stands while the period holds the same wins.
    fn revalidate(&self, with: &EmbedWith, cached: &CachedOutputs<'_>) -> Result<()> {
        let Some(network) = &with.network else {
            return Ok(());
        };
        let file = embedding::read_file(cached.output("embedding")?)?;
        let net = network.open(cached.store)?;
        // A genesis embedding (no model of mine then) stands while I still have none.
        let now = match mine(&net, network, None, cached.store)? {
            Some(model) => Some(period(&net, cached.store, &model)?.period),
            None => None,
        };
        anyhow::ensure!(
            now.as_ref().map(|p| (&p.model, p.since_epoch, &p.wins))
                == file
                    .update
                    .as_ref()
                    .map(|p| (&p.model, p.since_epoch, &p.wins)),
            "the network shows other wins since the embedding was decided"
        );
        Ok(())
    }

    fn run(&self, with: &EmbedWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let model = ctx.input("model").expect("required input");
        let backend = crate::backend::resolve(ctx.backend)?;
        let computed = |settings: &EmbedWith, docs: &dyn crate::training::documents::Documents| {
            embed_file(model, docs, settings, backend, ctx.progress)
        };
        let file = match &with.network {
            None => {
                let docs = open_documents(ctx.input("data").expect("required input"))?;
                computed(with, docs.as_ref())?
            }
            Some(network) => update_from_network(with, network, ctx, &computed)?,
        };
        write(&ctx.output("embedding"), &file)?;
        ctx.note(format!(
            "{:?} embedding over {} sequences (dim {})",
            file.mode, file.sequences, file.dim
        ));
        Ok(Outcome::Done)
    }
}

/// The signer's Active model (the latest committed, if several).
fn mine(
    net: &Network,
    network: &NetworkWith,
    ctx: Option<&RunContext<'_>>,
    store: &std::path::Path,
) -> Result<Option<soma_flow_chain::client::ModelInfo>> {
    let key = match ctx {
        Some(ctx) => network.signer(net, ctx)?,
        None => {
            let key_file = network.key_file.as_deref();
            crate::network::signer::resolve(key_file, net.local_dir())?.0
        }
    };
    let owner = key.address();
    let models = net.epoch()?.system.models;
    let which =
        crate::network::models::selection(net, &models, &owner, network.model.as_deref(), store)?;
    Ok(models
        .into_iter()
        .filter(|m| m.owner == owner && m.state == "active")
        .filter(|m| which.admits(&m.id))
        .max_by_key(|m| (m.commit_epoch, m.id)))
}

/// What the store remembers of a model's last update.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LastUpdate {
    epoch: u64,
    /// Unix milliseconds.
    at_ms: u64,
    /// Targets whose data it used.
    used: Vec<String>,
}

fn record_path(store: &Path, model: &str) -> std::path::PathBuf {
    state_dir(store)
        .join("embedding-updates")
        .join(format!("{model}.json"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The period since a model's last update (or, without a record, its last commit).
struct Window {
    /// Its wins.
    period: Period,
    /// How long it has lasted.
    elapsed: Duration,
    /// What the network offers of its wins.
    offer: crate::data::Offer,
    /// Targets earlier updates used.
    used_before: Vec<String>,
}

fn period(
    net: &Network,
    store: &Path,
    model: &soma_flow_chain::client::ModelInfo,
) -> Result<Window> {
    let id = model.id.to_hex();
    let last: Option<LastUpdate> = std::fs::read(record_path(store, &id))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let info = net.epoch()?;
    let (since_epoch, elapsed) = match &last {
        Some(l) => (
            l.epoch,
            Duration::from_millis(now_ms().saturating_sub(l.at_ms)),
        ),
        None => {
            let since = model.commit_epoch.unwrap_or(0);
            let epochs = info.epoch.saturating_sub(since);
            let epoch_ms = info.system.parameters.epoch_duration_ms;
            (
                since,
                Duration::from_millis(epochs.saturating_mul(epoch_ms)),
            )
        }
    };
    let filter = TargetFilter {
        status: Vec::new(),
        from_epoch: Some(since_epoch),
        to_epoch: None,
        won_by: WonBy::Model(model.id),
        limit: None,
    };
    let mut offer = network_offer(net, &filter, None)?;
    let used_before = last.map(|l| l.used).unwrap_or_default();
    offer.targets.retain(|t| !used_before.contains(&t.target));
    let period = Period {
        model: id,
        since_epoch,
        wins: offer.targets.iter().map(|t| t.target.clone()).collect(),
        updated: false,
    };
    Ok(Window {
        period,
        elapsed,
        offer,
        used_before,
    })
}

/// `mode: update` with `network`: the genesis embedding of `data` while I have no
/// Active model; then the update from the period's wins when due, else the
/// registered embedding.
fn update_from_network(
    with: &EmbedWith,
    network: &NetworkWith,
    ctx: &RunContext<'_>,
    computed: &dyn Fn(
        &EmbedWith,
        &dyn crate::training::documents::Documents,
    ) -> Result<EmbeddingFile>,
) -> Result<EmbeddingFile> {
    let net = network.open_for(ctx)?;
    let Some(model) = mine(&net, network, Some(ctx), ctx.store)? else {
        let data = ctx.input("data").context(
            "no Active model of mine to update, and no `data` input for a first (genesis) embedding",
        )?;
        ctx.note("no Active model of mine yet: the genesis embedding of `data`");
        let docs = open_documents(data)?;
        let genesis = EmbedWith {
            mode: EmbedMode::Genesis,
            ..with.clone()
        };
        return computed(&genesis, docs.as_ref());
    };
    let Window {
        mut period,
        elapsed,
        offer,
        used_before,
    } = period(&net, ctx.store, &model)?;
    let every_wins = with.every_wins.unwrap_or(EVERY_WINS);
    let every = with.every.as_ref().map_or(EVERY, |d| d.get());
    let wins = period.wins.len() as u64;
    let due = wins >= every_wins || (wins > 0 && elapsed >= every);
    let days = |d: Duration| d.as_secs_f64() / 86400.0;
    let file = if due {
        let note = |text: String| ctx.note(text);
        let cache = ctx.shared_state("data")?.join("network");
        let files = network_files(&net, &offer, &cache, false, &note, ctx.progress)?;
        let docs = InMemory(
            files
                .iter()
                .map(|f| std::fs::read(&f.path))
                .collect::<Result<_, _>>()?,
        );
        ctx.note(format!(
            "update due ({wins} wins since epoch {}, {:.1} days): embedding the won data",
            period.since_epoch,
            days(elapsed)
        ));
        let mut file = computed(with, &docs)?;
        period.updated = true;
        let mut used = used_before;
        used.extend(period.wins.iter().cloned());
        let record = LastUpdate {
            epoch: net.epoch()?.epoch,
            at_ms: now_ms(),
            used,
        };
        let path = record_path(ctx.store, &period.model);
        std::fs::create_dir_all(path.parent().expect("a folder"))?;
        std::fs::write(&path, serde_json::to_vec_pretty(&record)?)?;
        file.update = Some(period);
        file
    } else {
        ctx.note(format!(
            "update not due: {wins} of {every_wins} wins, {:.1} of {:.1} days since epoch {}; \
             keeping the registered embedding",
            days(elapsed),
            days(every),
            period.since_epoch
        ));
        let model_hash = crate::crypto::hash_file(ctx.input("model").expect("required input"))?
            .input
            .to_hex();
        EmbeddingFile {
            dim: model.embedding.len(),
            embedding: model.embedding.clone(),
            mode: EmbedMode::Update,
            seed: with.seed,
            seq_len: with.seq_len,
            sequences: 0,
            model_hash,
            update: Some(period),
        }
    };
    Ok(file)
}
