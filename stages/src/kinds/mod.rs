//! SOMA stage kinds, one file each. `register` adds them all to a registry.

use soma_flow_engine::Registry;

pub mod average;
pub mod claim;
pub mod commit;
pub mod distill;
pub mod embed;
pub mod fetch_competitors;
pub mod fetch_dataset;
pub mod gaps;
pub mod placement;
pub mod reveal;
pub mod score;
pub mod submit;
pub mod train;

/// Model stages share this resource class, so that two of them never compete for the
/// accelerator (or, on CPU, for the cores); `resources: { model: N }` raises it.
pub const MODEL_RESOURCE: &str = "model";

pub fn register(registry: &mut Registry) {
    registry.register(fetch_dataset::FetchDatasetKind);
    registry.register(fetch_competitors::FetchCompetitorsKind);
    registry.register(train::TRAIN);
    registry.register(distill::DISTILL);
    registry.register(average::AverageKind);
    registry.register(embed::EmbedKind);
    registry.register(score::ScoreKind);
    registry.register(gaps::GapsKind);
    registry.register(placement::PlacementKind);
    registry.register(submit::SubmitKind);
    registry.register(commit::CommitKind);
    registry.register(reveal::RevealKind);
    registry.register(claim::ClaimKind);
}
