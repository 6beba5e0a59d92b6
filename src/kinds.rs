//! Every stage kind this binary offers: the engine's generic ones and SOMA's.

use soma_flow_engine::app::Env;
use soma_flow_engine::command::CommandKind;
use soma_flow_engine::Registry;
use soma_flow_stages::BackendChoice;

pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(CommandKind);
    soma_flow_stages::kinds::register(&mut r);
    r
}

pub fn env() -> Env {
    Env {
        registry: registry(),
        check_backend,
    }
}

fn check_backend(name: &str) -> Result<(), String> {
    name.parse::<BackendChoice>()
        .and_then(|b| b.ensure_compiled())
        .map_err(|e| e.to_string())
}
