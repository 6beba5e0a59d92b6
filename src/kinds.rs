//! Every stage kind this binary offers: the engine's generic ones and SOMA's.

use soma_flow_engine::app::Env;
use soma_flow_engine::command::CommandKind;
use soma_flow_engine::Registry;

pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(CommandKind);
    soma_flow_stages::kinds::register(&mut r);
    r
}

pub fn env() -> Env {
    Env {
        registry: registry(),
        backend: soma_flow_stages::backend::SETTING,
        keys: soma_flow_stages::network::signer::REMOTE_KEYS,
    }
}
