//! Every stage kind this binary offers: the engine's generic ones and SOMA's.

use soma_flow_engine::app::Env;
use soma_flow_engine::command::CommandKind;
use soma_flow_engine::Registry;

pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(CommandKind);
    r
}

pub fn env() -> Env {
    Env {
        registry: registry(),
        check_backend,
    }
}

fn check_backend(name: &str) -> Result<(), String> {
    match name {
        "ndarray" => Ok(()),
        "cuda" | "tch" => Err(format!(
            "not compiled in; rebuild soma-flow with `--features {name}`"
        )),
        other => Err(format!(
            "unknown backend `{other}`; expected `ndarray`, `cuda` or `tch`"
        )),
    }
}
