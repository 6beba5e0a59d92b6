//! README's test command on a stock Debian or Ubuntu, whose system Python refuses
//! `pip install` (PEP 668): its Python set-up (`scripts/python-env.sh`) run against
//! that externally managed interpreter makes a project-local virtual environment with
//! the test requirements, touches nothing of the system's, and reuses the environment
//! on the next run.

use std::path::Path;
use std::process::Command;

/// Debian's and Ubuntu's system interpreter.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn python_env(python: &str, venv: &Path) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("scripts/python-env.sh"))
        .env("PYTHON", python)
        .env("SOMA_FLOW_VENV", venv)
        .output()
        .expect("scripts/python-env.sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the set-up failed:\n{stderr}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_python_set_up_works_with_an_externally_managed_system_python() {
    let stdlib = Command::new(SYSTEM_PYTHON)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('stdlib'))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("this test needs the system Python {SYSTEM_PYTHON}: {e}"));
    let stdlib = String::from_utf8(stdlib.stdout).unwrap();
    let marker = Path::new(stdlib.trim()).join("EXTERNALLY-MANAGED");
    assert!(
        marker.exists(),
        "{SYSTEM_PYTHON} is not externally managed ({} is missing): this test needs the \
         system Python of Debian 12 or Ubuntu 23.04+",
        marker.display()
    );
    // The case itself: the system interpreter refuses a plain install.
    let refused = Command::new(SYSTEM_PYTHON)
        .args(["-m", "pip", "install", "--dry-run", "--no-index", "moto"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("externally-managed-environment"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let bin = python_env(SYSTEM_PYTHON, &venv);
    assert_eq!(Path::new(&bin), venv.join("bin"));
    let imports = Command::new(venv.join("bin/python3"))
        .args([
            "-c",
            "import soma_sdk, moto, numpy, jsonschema, yaml, arrgen",
        ])
        .output()
        .unwrap();
    assert!(
        imports.status.success(),
        "{}",
        String::from_utf8_lossy(&imports.stderr)
    );
    assert!(
        venv.join("bin/moto_server").exists(),
        "moto's server is in the environment"
    );

    // The next run reuses the environment rather than making it anew.
    let kept = venv.join("kept");
    std::fs::write(&kept, "").unwrap();
    assert_eq!(python_env(SYSTEM_PYTHON, &venv), bin);
    assert!(kept.exists(), "the environment was reused");
}
