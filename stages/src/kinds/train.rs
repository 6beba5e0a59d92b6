//! `train`: trains a model (fresh or from `init`) on a dataset with the
//! on-chain objective, resuming from its last checkpoint after a kill.

use anyhow::Result;
use soma_flow_engine::{Outcome, RunContext};

use crate::training::objective::TaskLoss;
use crate::training::settings::{NoObjective, Settings};
use crate::training::stage::{run_training, Training, TrainingKind};

pub type TrainWith = Settings<NoObjective>;

pub struct Train;

/// The `train` kind.
pub const TRAIN: TrainingKind<Train> = TrainingKind(Train);

impl Training for Train {
    const NAME: &'static str = "train";
    // 2: the curve shows the held-out score.
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "Trains a model on a dataset with CE + 0.02 SIGReg (Adam, accumulation, checkpoints)";
    type Objective = NoObjective;

    fn run(&self, settings: &TrainWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        run_training(settings, &TaskLoss, "train: loss per step", ctx)
    }
}
