//! The placement simulation against an independent computation of the chain's
//! routing in numpy (`tests/reference/routing.py`), on a registry made up here.

use std::process::Command;

use soma_flow_chain::arrgen;
use soma_flow_stages::placement::{simulate, Registered, Scenario};

fn id(n: u8) -> String {
    format!("0x{}", hex::encode([n; 32]))
}

#[test]
fn routing_shares_equal_an_independent_numpy_computation() {
    const DIM: usize = 16;
    // Stakes from nothing to plenty, so that distance and stake both decide.
    let stakes = [0u64, 1, 4, 100, 2_500, 10_000, 1_000_000, 9];
    let registry: Vec<Registered> = stakes
        .iter()
        .enumerate()
        .map(|(i, &stake)| Registered {
            id: id(i as u8 * 17 + 3),
            stake,
            mine: i == 3,
            embedding: arrgen::normal_array(1000 + i as u64, DIM),
        })
        .collect();
    let scenarios = vec![
        Scenario {
            name: "mine now".into(),
            replaces: Some(registry[3].id.clone()),
            stake: registry[3].stake,
            embedding: registry[3].embedding.clone(),
        },
        Scenario {
            name: "moved".into(),
            replaces: Some(registry[3].id.clone()),
            stake: registry[3].stake,
            embedding: arrgen::normal_array(77, DIM),
        },
        Scenario {
            name: "new".into(),
            replaces: None,
            stake: 50,
            embedding: arrgen::normal_array(78, DIM),
        },
    ];
    let placement = simulate(registry, scenarios, 400, 5, 3).unwrap();
    // Not everyone reaches every target: the comparison means something.
    assert!(placement
        .landings
        .iter()
        .any(|l| l.routed > 0 && l.routed < 400));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("placement.json");
    std::fs::write(&path, serde_json::to_vec(&placement).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/reference/routing.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "routing.py failed (numpy and soma-arrgen come from tests/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let numpy: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for (landing, reference) in placement.landings.iter().zip(&numpy) {
        assert_eq!(reference["name"], landing.name.as_str());
        assert_eq!(reference["routed"], landing.routed, "{}", landing.name);
        let met: std::collections::BTreeMap<String, usize> =
            serde_json::from_value(reference["competitors"].clone()).unwrap();
        let ours: std::collections::BTreeMap<String, usize> =
            landing.competitors.iter().cloned().collect();
        assert_eq!(met, ours, "{}", landing.name);
    }
    assert_eq!(numpy.len(), placement.landings.len());
}
