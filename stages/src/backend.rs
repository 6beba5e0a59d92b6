//! Choosing a Burn backend at run time among those compiled in.
//!
//! Each backend sits behind a cargo feature of this crate (`ndarray`, `wgpu`, `cuda`,
//! `tch`), so generic code is handed to [`run_on`] as a [`BackendTask`] and is
//! monomorphised once per compiled-in backend. `wgpu` and `cuda` run the same CubeCL
//! kernels and differ only in their device type.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use soma_flow_engine::pipeline::BackendSetting;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BackendChoice {
    /// Pure-Rust CPU backend.
    NdArray,
    /// CubeCL through wgpu: any GPU with Vulkan, Metal or DX12, or lavapipe (Mesa's
    /// Vulkan device on the CPU).
    Wgpu,
    /// CubeCL CUDA backend (needs an NVIDIA driver at run time).
    Cuda,
    /// LibTorch on the CPU.
    TchCpu,
    /// LibTorch on the first CUDA device.
    TchCuda,
}

impl BackendChoice {
    pub const ALL: [BackendChoice; 5] = [
        BackendChoice::NdArray,
        BackendChoice::Wgpu,
        BackendChoice::Cuda,
        BackendChoice::TchCpu,
        BackendChoice::TchCuda,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::NdArray => "ndarray",
            BackendChoice::Wgpu => "wgpu",
            BackendChoice::Cuda => "cuda",
            BackendChoice::TchCpu => "tch-cpu",
            BackendChoice::TchCuda => "tch",
        }
    }

    /// The cargo feature of `soma-flow-stages` that compiles this backend in.
    pub fn cargo_feature(self) -> &'static str {
        match self {
            BackendChoice::NdArray => "ndarray",
            BackendChoice::Wgpu => "wgpu",
            BackendChoice::Cuda => "cuda",
            BackendChoice::TchCpu | BackendChoice::TchCuda => "tch",
        }
    }

    pub fn is_compiled(self) -> bool {
        match self {
            BackendChoice::NdArray => cfg!(feature = "ndarray"),
            BackendChoice::Wgpu => cfg!(feature = "wgpu"),
            BackendChoice::Cuda => cfg!(feature = "cuda"),
            BackendChoice::TchCpu | BackendChoice::TchCuda => cfg!(feature = "tch"),
        }
    }

    /// The backends this build can run.
    pub fn compiled() -> Vec<BackendChoice> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    pub fn ensure_compiled(self) -> Result<()> {
        if self.is_compiled() {
            return Ok(());
        }
        let available: Vec<_> = Self::compiled().iter().map(|b| b.name()).collect();
        bail!(
            "backend `{}` is not compiled into this build; rebuild with `--features {}` \
             (compiled in: {})",
            self.name(),
            self.cargo_feature(),
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        )
    }
}

impl FromStr for BackendChoice {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let name = s.trim().to_ascii_lowercase();
        let name = match name.as_str() {
            "tch-cuda" | "libtorch" => "tch",
            other => other,
        };
        Self::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|b| b.name()).collect();
                anyhow::anyhow!("unknown backend `{s}` (known: {})", names.join(", "))
            })
    }
}

impl TryFrom<String> for BackendChoice {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<BackendChoice> for String {
    fn from(b: BackendChoice) -> String {
        b.name().to_string()
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Generic work to run on whichever backend is chosen at run time. It gets an
/// autodiff backend; inference uses `B::InnerBackend` (same device type).
pub trait BackendTask {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

#[cfg(feature = "ndarray")]
pub type NdArrayBackend = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Autodiff<burn::backend::Wgpu<f32, i32>>;
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<burn::backend::Cuda<f32, i32>>;
#[cfg(feature = "tch")]
pub type TchBackend = burn::backend::Autodiff<burn::backend::LibTorch<f32>>;

/// Runs `task` on `choice`, or explains which cargo feature is missing.
pub fn run_on<T: BackendTask>(choice: BackendChoice, task: T) -> Result<T::Output> {
    choice.ensure_compiled()?;
    #[allow(unreachable_patterns)]
    let output = match choice {
        #[cfg(feature = "ndarray")]
        BackendChoice::NdArray => task.run::<NdArrayBackend>(Default::default()),
        #[cfg(feature = "wgpu")]
        BackendChoice::Wgpu => task.run::<WgpuBackend>(wgpu_device()?),
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda => task.run::<CudaBackend>(Default::default()),
        #[cfg(feature = "tch")]
        BackendChoice::TchCpu => {
            task.run::<TchBackend>(burn::backend::libtorch::LibTorchDevice::Cpu)
        }
        #[cfg(feature = "tch")]
        BackendChoice::TchCuda => {
            task.run::<TchBackend>(burn::backend::libtorch::LibTorchDevice::Cuda(0))
        }
        _ => unreachable!("ensure_compiled rejected {choice}"),
    };
    Ok(output)
}

/// The most elements one intermediate tensor of a pass on a device (not the host's
/// CPU) holds: 64 MiB of `f32`. Devices bind at most so much per buffer (lavapipe, and
/// some GPUs, 128 MiB), and the chain's scoring batch (16 × 1024) would otherwise make
/// attention scores and SIGReg products of 256–285 MiB. Passes cut larger work into
/// independent parts (batch rows, positions); on the host nothing is cut, so the CPU
/// backend's values stay bit for bit as they were.
pub const DEVICE_ELEMENTS: usize = 1 << 24;

/// The passes over `total` independent parts, each making intermediates of `per_part`
/// elements, that work on `device` is cut into: one over all of them on the host, else
/// as many parts per pass as [`DEVICE_ELEMENTS`] holds (at least one).
pub fn passes<B: burn::tensor::backend::Backend>(
    device: &B::Device,
    total: usize,
    per_part: usize,
) -> Vec<std::ops::Range<usize>> {
    let per_pass = match on_host::<B>(device) {
        true => total,
        false => DEVICE_ELEMENTS / per_part.max(1),
    }
    .clamp(1, total.max(1));
    (0..total)
        .step_by(per_pass)
        .map(|start| start..(start + per_pass).min(total))
        .collect()
}

/// The wgpu device Burn will use: the best adapter of the platform's graphics API
/// (Vulkan on Linux), or an error naming what to install when there is none (Burn
/// itself would panic). The adapters are looked for once per process.
#[cfg(feature = "wgpu")]
pub fn wgpu_device() -> Result<burn::backend::wgpu::WgpuDevice> {
    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
    static FOUND: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let api = AutoGraphicsApi::backend();
        let instance = wgpu::Instance::new(&wgpu::InstanceDescriptor {
            backends: api.into(),
            ..Default::default()
        });
        match instance.enumerate_adapters(api.into()).is_empty() {
            false => Ok(()),
            true => Err(format!(
                "backend `wgpu` found no {api:?} device on this machine: install your GPU's \
                 {api:?} driver, or, to run on the CPU through {api:?} (slowly, as CI does), \
                 Mesa's lavapipe (Debian and Ubuntu: `apt install mesa-vulkan-drivers`); or \
                 pick another backend (`--backend ndarray`)"
            )),
        }
    });
    match found {
        Ok(()) => Ok(burn::backend::wgpu::WgpuDevice::DefaultDevice),
        Err(why) => bail!("{why}"),
    }
}

/// How the costly parts of a model's step (SIGReg, attention, linear layers, GELU)
/// are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The chain's values: its tensor operations, exactly as its scoring runs them.
    /// Scores and embeddings use it. On the CPU inference backend (burn-ndarray
    /// without autodiff) host kernels compute them, in parallel and without the large
    /// intermediate tensors, giving the same values bit for bit (tests compare each
    /// kernel, and a whole loss, with Burn's operations).
    Device,
    /// Host kernels where they exist, for training on a CPU backend: SIGReg in one
    /// fused pass in f64, value and gradient together (`sigreg::sigreg_on_host`), and
    /// the causal attention, linear layers and GELU with backwards of their own
    /// (`model::attention`, `model::linear`, `model::gelu`; burn-ndarray only). The
    /// same values up to rounding.
    Host,
}

impl Pass {
    /// [`Pass::Host`] where `device` computes on the host CPU, else [`Pass::Device`].
    pub fn for_training<B: burn::tensor::backend::Backend>(device: &B::Device) -> Pass {
        if on_host::<B>(device) {
            Pass::Host
        } else {
            Pass::Device
        }
    }
}

/// Whether `device` of backend `B` computes on the host CPU (burn-ndarray, or LibTorch
/// on its CPU device), where work done on the host costs no transfer.
pub fn on_host<B: burn::tensor::backend::Backend>(device: &B::Device) -> bool {
    #[allow(unused_imports)] // `Any` serves the `tch` arm
    use std::any::{Any, TypeId};
    let _ = device; // read by the `tch` arm only
    #[cfg(feature = "ndarray")]
    {
        let ndarray = TypeId::of::<burn::backend::NdArray<f32>>();
        if [ndarray, TypeId::of::<NdArrayBackend>()].contains(&TypeId::of::<B>()) {
            return true;
        }
    }
    #[cfg(feature = "tch")]
    {
        use burn::backend::libtorch::LibTorchDevice;
        if let Some(device) = (device as &dyn Any).downcast_ref::<LibTorchDevice>() {
            return *device == LibTorchDevice::Cpu;
        }
    }
    false
}

/// The backend a model stage runs on, from the pipeline's resolved backend name.
pub fn resolve(name: &str) -> anyhow::Result<BackendChoice> {
    let choice: BackendChoice = name.parse()?;
    choice.ensure_compiled()?;
    Ok(choice)
}

/// The engine's backend setting, as soma-flow offers it: the CPU backend by default,
/// any compiled-in backend by name.
pub const SETTING: BackendSetting = BackendSetting {
    default: "ndarray",
    check: |name| resolve(name).map(drop).map_err(|e| e.to_string()),
};

/// `mi_option_purge_delay` of mimalloc 3, the version libmimalloc-sys builds (its
/// `include/mimalloc.h`; the crate names only some options): how long freed memory
/// stays mapped before it is returned to the kernel, in ms; -1 is never. Its default
/// is 1000.
const MIMALLOC_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets up the process for CPU training; call it first thing in `main`, before any
/// other thread starts.
///
/// - Keeps the memory mimalloc frees mapped for reuse instead of returning it to the
///   kernel (for programs whose global allocator is mimalloc, as `soma-flow`'s is). A
///   CPU training step frees and allocates tensor buffers of tens of MB by the
///   hundred, and with mimalloc's default each was unmapped and faulted in again,
///   zeroed by the kernel: 50,000 page faults and 15-20% of the CPU time of a
///   v1-small step. The process then keeps its peak memory until it exits.
/// - Gives matrixmultiply (burn-ndarray's matrix products) one thread per product,
///   unless `MATMUL_NUM_THREADS` is set. Its products run inside rayon's tasks (the
///   host kernels' blocks, Burn's batch rows), so its own threads (up to 4) only
///   competed with rayon's for the same cores, spinning in `sched_yield` for 13% of a
///   forward pass on 2 cores.
pub fn prepare_process() {
    // SAFETY: sets one integer option; mimalloc reads options at any time.
    unsafe { libmimalloc_sys::mi_option_set(MIMALLOC_PURGE_DELAY, -1) }
    if std::env::var_os(MATMUL_THREADS).is_none() {
        // Before any other thread runs (see above), and read by matrixmultiply once,
        // at its first product.
        std::env::set_var(MATMUL_THREADS, "1");
    }
}

/// matrixmultiply's thread count (its `threading.rs`).
const MATMUL_THREADS: &str = "MATMUL_NUM_THREADS";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_mimalloc_documents() {
        // Read only: this test binary does not allocate with mimalloc, but links it.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MIMALLOC_PURGE_DELAY) };
        assert_eq!(delay, 1000, "mimalloc's purge delay defaults to 1000 ms");
    }

    #[test]
    fn parses_names_and_aliases() {
        assert_eq!(
            "ndarray".parse::<BackendChoice>().unwrap(),
            BackendChoice::NdArray
        );
        assert_eq!(
            "CUDA".parse::<BackendChoice>().unwrap(),
            BackendChoice::Cuda
        );
        assert_eq!(
            "tch-cuda".parse::<BackendChoice>().unwrap(),
            BackendChoice::TchCuda
        );
        assert!("metal"
            .parse::<BackendChoice>()
            .unwrap_err()
            .to_string()
            .contains("known: ndarray"));
        let json = serde_json::to_string(&BackendChoice::TchCpu).unwrap();
        assert_eq!(
            serde_json::from_str::<BackendChoice>(&json).unwrap(),
            BackendChoice::TchCpu
        );
    }

    #[test]
    fn missing_backends_name_their_feature() {
        for choice in BackendChoice::ALL.into_iter().filter(|b| !b.is_compiled()) {
            let message = choice.ensure_compiled().unwrap_err().to_string();
            assert!(
                message.contains(&format!("--features {}", choice.cargo_feature())),
                "{message}"
            );
        }
        assert!(
            BackendChoice::compiled().contains(&BackendChoice::NdArray)
                == cfg!(feature = "ndarray")
        );
    }
}
