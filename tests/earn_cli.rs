//! The earn loop end to end, against `soma-flow localnet serve` as a separate process:
//! the official SDK (`soma-sdk` 0.1.15) fills targets routed to a model soma-flow
//! committed (the genesis model `genesis-code`, whose owner key the test holds), the
//! epochs pass the challenge window, the SDK claims one target with the owner's key
//! and `soma-flow claim` the other, and both give the same balance changes to the
//! shannon, which are the chain's split (§6.3): owner share plus incentive minus the
//! fee to the owner, submitter share plus bond to the submitter. The `claim` stage's
//! run then charts the earnings in its report; a second claim sends nothing;
//! `earnings --json` counts both claims, the SDK's too. `model` commands are refused before sending when
//! the chain would refuse them, and the SDK's own transactions of those kinds verify.
//!
//! Needs `python3` with `soma-sdk==0.1.15` (`scripts/test.sh` installs it); without
//! it the test fails, never skips.

use std::process::Command;

use serde_json::Value;
use soma_flow_stages::network::genesis::MODELS;

use crate::common::Project;
use crate::localnet_cli::{serve, Served, MISSING};

const SCRIPT: &str = r#"
import asyncio, json, os, sys
from soma_sdk import Keypair, SomaClient

def norm(x):
    x = x[2:] if x.startswith("0x") else x
    return "0x" + x.rjust(64, "0")

async def shannons(client, address):
    return round(await client.get_balance(address) * 1_000_000_000)

async def main(phase, rpc, faucet, admin, owner_hex, model_id, *rest):
    client = await SomaClient(rpc_url=rpc, faucet_url=faucet, admin_url=admin)
    owner = Keypair.from_secret_key(owner_hex)
    submitter = Keypair.from_secret_key("5b" * 32)
    out = {}
    if phase == "fill":
        await client.request_faucet(submitter.address())
        routed = []
        for _ in range(4):
            routed = [t for t in await client.get_targets(status="open")
                      if norm(model_id) in [norm(m) for m in t.model_ids]]
            if len(routed) >= 2:
                break
            await client.advance_epoch()
        for t in routed[:2]:
            await client.submit_data(submitter, t.id, b"soma-flow earns " * 4,
                                     "http://127.0.0.1:9/data.bin", model_id,
                                     list(t.embedding), 0.0, [1.0])
        out["targets"] = [norm(t.id) for t in routed[:2]]
        out["reward"] = routed[0].reward_pool
        await client.advance_epoch()
        await client.advance_epoch()
    elif phase == "sdk-claim":
        await client.claim_rewards(owner, rest[0])
    elif phase == "manage":
        # The SDK's own SetModelCommissionRate and DeactivateModel: the server rebuilds
        # their BCS from the proto and checks the SDK's signature over it.
        await client.set_model_commission_rate(owner, model_id, 300)
        await client.deactivate_model(owner, model_id)
    state = await client.get_latest_system_state()
    out["value_fee_bps"] = state.parameters.value_fee_bps
    out["owner"] = await shannons(client, owner.address())
    out["submitter"] = await shannons(client, submitter.address())
    out["claimable"] = [norm(t.id) for t in await client.get_targets(claimable=True)
                        if t.winning_model_id and norm(t.winning_model_id) == norm(model_id)]
    print(json.dumps(out))

asyncio.run(main(*sys.argv[1:]))
sys.stdout.flush()
# soma-sdk 0.1.15's runtime threads can abort the interpreter's shutdown when the
# server announces a checkpoint just then; the answers are printed.
os._exit(0)
"#;

fn sdk(served: &Served, owner_hex: &str, model: &str, phase: &str, extra: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(phase)
        .args(&served.urls)
        .args([owner_hex, model])
        .args(extra)
        .output()
        .expect(MISSING);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("No module named"), "{MISSING}\n{stderr}");
    assert!(out.status.success(), "the SDK's {phase} failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

fn int(v: &Value) -> i128 {
    v.as_i64()
        .map(i128::from)
        .unwrap_or_else(|| panic!("{v} is not an integer"))
}

#[test]
fn claim_collects_what_the_model_won_as_the_sdk_does_and_earnings_count_it() {
    let p = Project::new();
    // A relative folder: its blobs are still served by absolute file:// URLs.
    let served = serve(&p, &["--dir", "net"]);
    let models = p.run(&["localnet", "models", "--json", "--network", &served.urls[0]]);
    assert_eq!(models.code(), 0, "{}", models.all());
    let models: Value = serde_json::from_str(&models.stdout()).unwrap();
    let owner_key = MODELS[0].owner();
    let owner = owner_key.address().to_string();
    let model = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["owner"].as_str().map(|o| o.trim_start_matches("0x")) == Some(owner.as_str()))
        .expect("the genesis model of genesis-code's owner")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let owner_hex = owner_key.expose_hex().to_string();
    p.write("owner.key", &owner_hex);
    let network = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--network",
            &served.urls[0],
            "--faucet",
            &served.urls[1],
            "--admin",
            &served.urls[2],
        ]);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: &[&str]| {
        let args = network(args);
        p.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let filled = sdk(&served, &owner_hex, &model, "fill", &[]);
    let targets: Vec<String> = filled["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(targets.len(), 2, "{filled}");
    let mut claimable: Vec<String> = serde_json::from_value(filled["claimable"].clone()).unwrap();
    claimable.sort();
    let mut expected = targets.clone();
    expected.sort();
    assert_eq!(claimable, expected, "both filled targets are claimable");

    // Thresholds print as people read them (f32 1.05, not 1.0499999523162842).
    let listed = run(&["localnet", "targets", "--json", "--epoch", "2"]);
    assert!(
        listed.stdout().contains("\"distance_threshold\": 1.05"),
        "{}",
        listed.all()
    );

    // The chain's split (§6.3) at this epoch's value fee.
    let reward = int(&filled["reward"]);
    let owner_share = reward * 4975 / 10_000;
    let incentive = reward * 50 / 10_000;
    let fee = 1000 + 6 * 300 + reward * (int(&filled["value_fee_bps"]) / 2) / 10_000;
    let bond = 64 * 65;

    // Seen while claimable, so that a claim by anyone counts as earned.
    let seen = run(&["earnings", "--key-file", "owner.key", "--json"]);
    assert_eq!(seen.code(), 0, "{}", seen.all());

    // The SDK claims the first target with the owner's key...
    let by_sdk = sdk(&served, &owner_hex, &model, "sdk-claim", &[&targets[0]]);
    let sdk_owner = int(&by_sdk["owner"]) - int(&filled["owner"]);
    let sdk_submitter = int(&by_sdk["submitter"]) - int(&filled["submitter"]);
    assert_eq!(sdk_owner, owner_share + incentive - fee);
    assert_eq!(sdk_submitter, reward - owner_share - incentive + bond);

    // ...and `soma-flow claim` the other: the same balance changes, to the shannon.
    let claim = run(&["claim", "--key-file", "owner.key", "--json"]);
    assert_eq!(claim.code(), 0, "{}", claim.all());
    let report: Value = serde_json::from_str(&claim.stdout()).unwrap();
    let lines = report["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{report}");
    assert_eq!(lines[0]["target"].as_str(), Some(targets[1].as_str()));
    assert_eq!(lines[0]["outcome"], "claimed");
    assert_eq!(int(&lines[0]["change"]), owner_share + incentive - fee);
    assert_eq!(int(&lines[0]["fee"]), fee);
    let after = sdk(&served, &owner_hex, &model, "balances", &[]);
    assert_eq!(int(&after["owner"]) - int(&by_sdk["owner"]), sdk_owner);
    assert_eq!(
        int(&after["submitter"]) - int(&by_sdk["submitter"]),
        sdk_submitter
    );
    assert_eq!(
        after["claimable"],
        serde_json::json!([]),
        "the SDK sees both claimed"
    );

    // The `claim` stage: nothing left to claim, but the earnings per epoch (both
    // claims) as a chart that the run's report shows; cached while nothing is claimable.
    let pipeline = p.write(
        "earn.yaml",
        &format!(
            "name: earn\nstages:\n  claim:\n    kind: claim\n    with:\n      network: \
             {{ rpc: \"{}\", key_file: owner.key }}\n",
            served.urls[0]
        ),
    );
    let pipeline = pipeline.to_str().unwrap();
    let staged = p.run(&["run", pipeline]);
    assert_eq!(staged.code(), 0, "{}", staged.all());
    assert!(
        staged.stdout().contains("nothing to claim"),
        "{}",
        staged.all()
    );
    let earned = &p.output_json(pipeline, "claim.claims")["earnings"]["models"];
    let earned: i128 = earned
        .as_array()
        .unwrap()
        .iter()
        .map(|m| int(&m["earned"]))
        .sum();
    assert_eq!(earned, 2 * owner_share);
    let id = p.last_record()["id"].as_str().unwrap().to_owned();
    let out = p.run(&["report", &id, "--out", "report"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let page = std::fs::read_to_string(p.path().join("report/index.html")).unwrap();
    assert!(page.contains("claim.chart"), "the chart is on the page");
    let cached = p.run(&["run", pipeline]);
    assert_eq!(cached.code(), 0, "{}", cached.all());
    assert_eq!(p.last_record()["stages"]["claim"]["status"], "hit");

    // A second claim right after sends nothing and succeeds.
    let again = run(&["claim", "--key-file", "owner.key", "--json"]);
    assert_eq!(again.code(), 0, "{}", again.all());
    let again: Value = serde_json::from_str(&again.stdout()).unwrap();
    assert_eq!(again["lines"], serde_json::json!([]));
    let still = sdk(&served, &owner_hex, &model, "balances", &[]);
    assert_eq!(still["owner"], after["owner"]);

    // Earnings count both claims: the SDK's and soma-flow's.
    let earnings = || {
        let out = run(&["earnings", "--key-file", "owner.key", "--json"]);
        assert_eq!(out.code(), 0, "{}", out.all());
        let all: Value = serde_json::from_str(&out.stdout()).unwrap();
        all["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model_id"].as_str() == Some(model.as_str()))
            .unwrap_or_else(|| panic!("{all}"))
            .clone()
    };
    let mine = earnings();
    assert_eq!(int(&mine["earned"]), 2 * owner_share, "{mine}");
    assert_eq!(int(&mine["won"]), 2, "{mine}");
    assert_eq!(int(&mine["claimable"]), 0, "{mine}");
    assert_eq!(mine["state"], "active");
    let text = run(&["earnings", "--key-file", "owner.key"]);
    let lines = text.stdout();
    assert!(
        lines.contains(&model) && lines.contains("active"),
        "{}",
        text.all()
    );
    let nothing = run(&["claim", "--key-file", "owner.key"]);
    assert!(
        nothing.stdout().contains("nothing to claim"),
        "{}",
        nothing.all()
    );
    assert!(text.stdout().contains(&model), "{}", text.all());

    // A pipeline whose `arch` the network does not demand stops before any training.
    let wrong = p.write(
        "arch.yaml",
        &format!(
            "name: arch\nstages:\n  last:\n    kind: fetch-competitors\n    with:\n      \
             network: {{ rpc: \"{}\", arch: v1-small }}\n",
            served.urls[0]
        ),
    );
    let out = p.run(&["run", wrong.to_str().unwrap()]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(
        out.all().contains(
            "demands models of embedding dimension 128 (v1-tiny), but `network.arch` is v1-small"
        ),
        "{}",
        out.all()
    );

    // Model management: refused before sending when the chain would refuse.
    let other = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .find(|id| *id != model)
        .unwrap();
    let before = sdk(&served, &owner_hex, &model, "balances", &[]);
    for (args, says) in [
        (
            vec!["model", "commission", other.as_str(), "100"],
            "not by the signer",
        ),
        (
            vec!["model", "commission", model.as_str(), "10001"],
            "at most 10000 bps",
        ),
        (vec!["model", "stake", model.as_str(), "0"], "more than 0"),
        (
            vec!["model", "stake", model.as_str(), "1000000"],
            "richest coin",
        ),
    ] {
        let mut args = args;
        args.extend(["--key-file", "owner.key"]);
        let out = run(&args);
        assert_eq!(out.code(), 1, "{args:?}: {}", out.all());
        assert!(out.stderr().contains(says), "{args:?}: {}", out.all());
    }
    let unchanged = sdk(&served, &owner_hex, &model, "balances", &[]);
    assert_eq!(unchanged["owner"], before["owner"], "nothing was sent");

    // Accepted: commission from the next epoch, stake, then deactivation.
    let set = run(&[
        "model",
        "commission",
        &model,
        "250",
        "--key-file",
        "owner.key",
    ]);
    assert_eq!(set.code(), 0, "{}", set.all());
    let stake = run(&["model", "stake", &model, "0.5", "--key-file", "owner.key"]);
    assert_eq!(stake.code(), 0, "{}", stake.all());
    let mine = earnings();
    assert_eq!(mine["commission_rate"], 0);
    assert_eq!(mine["next_epoch_commission_rate"], 250);
    let off = run(&["model", "deactivate", &model, "--key-file", "owner.key"]);
    assert_eq!(off.code(), 0, "{}", off.all());

    // The SDK's transactions of the same kinds: what soma-flow signs for them is the
    // chain's BCS, or the server would have refused the SDK's signatures.
    let prose = MODELS[1].owner();
    sdk(&served, &prose.expose_hex(), &other, "manage", &[]);
    let models = run(&["localnet", "models", "--json"]);
    let models: Value = serde_json::from_str(&models.stdout()).unwrap();
    let states: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["inactive", "inactive"], "{models}");
    let theirs = run(&[
        "earnings",
        "--address",
        &prose.address().to_string(),
        "--json",
    ]);
    let theirs: Value = serde_json::from_str(&theirs.stdout()).unwrap();
    assert_eq!(
        theirs["models"][0]["next_epoch_commission_rate"], 300,
        "{theirs}"
    );
}
