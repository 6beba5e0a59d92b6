//! Backends through the binary: `--backend wgpu` scores as the CPU backend does, and a
//! machine without a device it can use gets an error naming what to install.

use std::path::PathBuf;

use crate::common::{Project, Run};

fn fixture(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/fixtures");
    dir.join(name).display().to_string()
}

fn score(p: &Project, backend: &str, no_device: bool) -> Run {
    let (model, data) = (
        fixture("tiny_soma_models.safetensors"),
        fixture("blob_exact.bin"),
    );
    let args = [
        "score",
        "--model",
        &model,
        "--data",
        &data,
        "--heads",
        "4",
        "--json",
        "--backend",
        backend,
    ];
    let mut cmd = p.cmd(&args);
    if no_device {
        // The Vulkan loader then finds no driver at all.
        cmd.env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .env("VK_DRIVER_FILES", "/nonexistent/icd.json");
    }
    Run(cmd.output().unwrap())
}

fn loss(run: &Run) -> f64 {
    assert_eq!(run.code(), 0, "{}", run.all());
    let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    json["models"][0]["loss"].as_f64().unwrap()
}

#[test]
fn wgpu_scores_as_the_cpu_does_and_without_a_device_says_what_to_install() {
    let p = Project::new();
    let (gpu, cpu) = (
        loss(&score(&p, "wgpu", false)),
        loss(&score(&p, "ndarray", false)),
    );
    assert!(
        (gpu - cpu).abs() <= 1e-4 * cpu.abs(),
        "{gpu} on wgpu, {cpu} on the CPU"
    );

    let none = score(&p, "wgpu", true);
    assert_eq!(none.code(), 1, "{}", none.all());
    assert!(
        none.stderr().contains("found no Vulkan device"),
        "{}",
        none.all()
    );
    assert!(
        none.stderr().contains("mesa-vulkan-drivers"),
        "{}",
        none.all()
    );
    assert!(!none.stderr().contains("panicked"), "{}", none.all());
}
