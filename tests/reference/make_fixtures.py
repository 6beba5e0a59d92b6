#!/usr/bin/env python3
"""Golden fixtures for soma-flow-stages, computed with the public SOMA packages.

The on-chain score is computed here from the specification (shared/SOMA-V1.md),
independently of the Rust code: soma-models' Flax model supplies the forward
pass and its tokenizer the data contract, soma-arrgen the noise. The score
itself is written out because soma-models' own `compute_loss` differs from the
chain (positions 0..L-1 instead of global offsets, cross-entropy divided by the
non-PAD count instead of by all B*L positions, random SIGReg noise).

One part of soma-models' forward pass is replaced: XLA on the CPU divides
`position / timescale` inexactly (about 30% of RoPE angles are 1 ulp off, up to
1e-3 rad at offsets near 16k), while the chain's Burn runtime divides in IEEE
f32. `ieee_apply_rope` is soma-models' `apply_rope` with that one division done
exactly (numpy); `--unpatched` writes the plain soma-models numbers instead.

Usage (in a venv with `pip install 'soma-models[flax]==0.1.7' soma-arrgen==0.1.0`):
  make_fixtures.py                 write tests/reference/fixtures/
  make_fixtures.py --trained       only the scores of the trained genesis models
                                   (trained_expected.json)
  make_fixtures.py --check-rust D  load weights written by the Rust code
                                   (`cargo run -p soma-flow-stages --example
                                   export_rust_weights -- D`) and compare the
                                   scores it reported with soma-models' scores
"""

import argparse
import importlib.metadata
import json
import sys
from pathlib import Path

import arrgen
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

import soma_models.v1.flax.modules.attention as soma_attention
from soma_models.v1.configs import ModelConfig, SIGRegConfig, V1_BATCH_SIZE, V1_PAD_TOKEN_ID
from soma_models.v1.flax import Model, SIGReg
from soma_models.v1.tokenizer import tokenize

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
SEED = 1234
# v1-tiny: 2 layers, dim 128, 4 heads, hidden 512.
TINY = dict(embedding_dim=128, num_layers=2, num_heads=4, pwff_hidden_dim=512)
NOISE_CASES = [(0, 2, 3), (42, 4, 8), (2**40 + 7, 3, 256)]


SOMA_APPLY_ROPE = soma_attention.apply_rope


def ieee_apply_rope(inputs, positions, head_dim, max_wavelength=10_000, scale_factor=1.0):
    """soma-models' apply_rope with the angle divided exactly, as in the spec."""
    fraction = 2 * jnp.arange(0, head_dim // 2) / head_dim
    timescale = np.asarray(max_wavelength**fraction, dtype=np.float32)
    angle = np.asarray(positions, dtype=np.float32)[..., None] / timescale[None, None, :]
    angle = (angle / np.float32(scale_factor))[..., None, :]
    sin, cos = jnp.sin(angle), jnp.cos(angle)
    first_half, second_half = jnp.split(inputs, 2, axis=-1)
    out = jnp.concatenate([first_half * cos - second_half * sin, second_half * cos + first_half * sin], axis=-1)
    return out.astype(inputs.dtype)


def versions():
    names = ["soma-models", "soma-arrgen", "jax", "jaxlib", "flax", "numpy", "safetensors"]
    return {n: importlib.metadata.version(n) for n in names}


def tiny_config():
    return ModelConfig(dropout_rate=0.0, **TINY)


def load_model(path):
    return Model.load(str(path), tiny_config(), rngs=nnx.Rngs(0))


def chain_score(model, data, seed):
    """Loss and embedding exactly as the chain computes them (spec, 'on-chain score')."""
    sig_reg = SIGReg(SIGRegConfig(), rngs=nnx.Rngs(0))  # compute() takes explicit noise
    sequences = tokenize(data)
    loss = np.float32(0.0)
    embedding = None
    for b, start in enumerate(range(0, len(sequences), V1_BATCH_SIZE)):
        chunk = sequences[start : start + V1_BATCH_SIZE]
        tokens = jnp.array([s.token_ids for s in chunk], dtype=jnp.int32)
        targets = jnp.array([s.targets for s in chunk], dtype=jnp.int32)
        positions = jnp.array([s.pos_ids for s in chunk], dtype=jnp.int32)

        rep = model.encode(tokens, positions)
        logits = model.predict(rep)

        # Burn 0.19 cross-entropy: PAD targets contribute 0, divide by all B*L.
        log_probs = jax.nn.log_softmax(logits.reshape(-1, logits.shape[-1]), axis=-1)
        flat_targets = targets.reshape(-1)
        picked = jnp.take_along_axis(log_probs, flat_targets[:, None], axis=1)[:, 0]
        picked = jnp.where(flat_targets == V1_PAD_TOKEN_ID, 0.0, picked)
        ce = -jnp.mean(picked)

        noise = jnp.asarray(arrgen.normal_array(seed + b, [rep.shape[-1], 256], 0.0, 1.0), dtype=jnp.float32)
        sig = sig_reg.compute(rep, noise)  # already multiplied by 0.02
        batch_loss = np.float32(ce + sig)
        batch_embedding = np.asarray(rep.mean(axis=1).mean(axis=0), dtype=np.float32)

        n = np.float32(b + 1)
        loss = np.float32(loss + (batch_loss - loss) / n)
        if embedding is None:
            embedding = np.zeros_like(batch_embedding)
        embedding = (embedding + (batch_embedding - embedding) / n).astype(np.float32)
    return float(loss), [float(x) for x in embedding]


def make_blobs():
    rng = np.random.default_rng(SEED)
    text = (
        b"def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n"
        b"# SOMA scores models on bytes; every byte is a token.\n"
    )

    def blob(n):
        base = (text * (n // len(text) + 1))[:n]
        noise = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        # Mostly text with some random bytes so every byte value can occur.
        return bytes(a if i % 7 else b for i, (a, b) in enumerate(zip(base, noise)))

    return {
        "partial": blob(300),  # one chunk with EOS and PAD
        "two_batches": blob(16 * 1024 + 500),  # 17 chunks: batches of 16 and 1
        "exact": blob(2 * 1024),  # two full chunks: no EOS at all
    }


def perturbed_model():
    """A v1-tiny model with every parameter (biases, norms too) made non-trivial."""
    model = Model(tiny_config(), rngs=nnx.Rngs(SEED))
    state = nnx.state(model, nnx.Param)
    keys = iter(jax.random.split(jax.random.key(SEED), 1000))
    state = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(next(keys), p.shape, p.dtype), state)
    nnx.update(model, state)
    return model


def write_fixtures():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    weights = FIXTURES / "tiny_soma_models.safetensors"
    perturbed_model().save(str(weights))
    model = load_model(weights)  # score what was saved, as a reader of the file would

    cases = []
    for name, data in make_blobs().items():
        (FIXTURES / f"blob_{name}.bin").write_bytes(data)
        loss, embedding = chain_score(model, data, SEED)
        cases.append(dict(blob=f"blob_{name}.bin", bytes=len(data), loss=loss, embedding=embedding))
        print(f"{name}: {len(data)} bytes, loss {loss:.6f}")

    noise = [
        dict(seed=s, shape=[r, c], values=[float(x) for x in np.asarray(arrgen.normal_array(s, [r, c], 0.0, 1.0)).ravel()])
        for s, r, c in NOISE_CASES
    ]
    expected = dict(
        versions=versions(),
        config=dict(preset="v1-tiny", **TINY),
        weights=weights.name,
        rope_division="soma-models (XLA)" if soma_attention.apply_rope is SOMA_APPLY_ROPE else "IEEE f32 (patched)",
        seed=SEED,
        cases=cases,
        noise=noise,
    )
    (FIXTURES / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print("versions:", expected["versions"])


def resaves_identically(path, model, scratch):
    """soma-models writes back exactly the tensors it read."""
    model.save(str(scratch))
    original, again = load_file(str(path)), load_file(str(scratch))
    return original.keys() == again.keys() and all(np.array_equal(original[k], again[k]) for k in original)


def write_trained():
    """Scores, by soma-models, of models trained by soma-flow's `train` stage.

    The devnet's genesis models (stages/assets/genesis/, made by its genesis.yaml)
    are such models: the Rust tests check that soma-flow scores them as soma-models
    does, which shows trained weights load in soma-models and score the same there.
    """
    genesis = HERE.parent.parent / "stages" / "assets" / "genesis"
    blobs = sorted(FIXTURES.glob("blob_*.bin"))
    models = []
    for weights in sorted(genesis.glob("genesis-*.safetensors")):
        model = load_model(weights)
        same = resaves_identically(weights, model, FIXTURES / "resaved.tmp.safetensors")
        (FIXTURES / "resaved.tmp.safetensors").unlink()
        cases = []
        for blob in blobs:
            loss, embedding = chain_score(model, blob.read_bytes(), SEED)
            cases.append(dict(blob=blob.name, loss=loss, embedding=embedding))
            print(f"{weights.name} {blob.name}: loss {loss:.6f}")
        models.append(dict(weights=weights.name, resaved_identically=same, cases=cases))
    expected = dict(versions=versions(), seed=SEED, models=models)
    (FIXTURES / "trained_expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def close(a, b, scale, rel=1e-5):
    """Same bound as the Rust tests: 1e-5 relative to max(|b|, scale)."""
    return abs(a - b) <= rel * max(abs(b), scale)


def rms(values):
    return float(np.sqrt(np.mean(np.square(np.asarray(values, dtype=np.float64)))))


def check_rust(directory):
    """Weights saved by Rust must load in soma-models and give the scores Rust reported."""
    directory = Path(directory)
    report = json.loads((directory / "rust_scores.json").read_text())
    ok = True
    for entry in report["weights"]:
        path = directory / entry["file"]
        model = load_model(path)
        # Same bytes in and out: re-saving through soma-models reproduces every tensor.
        same = resaves_identically(path, model, directory / ("resaved_" + entry["file"]))
        print(f"{entry['file']}: soma-models re-save bit-identical: {same}")
        ok &= same
        for case in entry["cases"]:
            data = (FIXTURES / case["blob"]).read_bytes()
            loss, embedding = chain_score(model, data, report["seed"])
            scale = rms(embedding)
            worst = max(abs(a - b) / max(abs(b), scale) for a, b in zip(case["embedding"], embedding))
            good = close(case["loss"], loss, 0.0) and all(close(a, b, scale) for a, b in zip(case["embedding"], embedding))
            print(f"  {case['blob']}: rust loss {case['loss']:.7f} soma-models {loss:.7f}; embedding ok: {good} (worst relative gap {worst:.2e})")
            ok &= good
    print("versions:", versions())
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-rust", metavar="DIR")
    parser.add_argument("--unpatched", action="store_true", help="keep soma-models' own RoPE division")
    parser.add_argument("--trained", action="store_true", help="only write trained_expected.json")
    args = parser.parse_args()
    soma_attention.apply_rope = SOMA_APPLY_ROPE if args.unpatched else ieee_apply_rope
    if args.check_rust:
        sys.exit(0 if check_rust(args.check_rust) else 1)
    if not args.trained:
        write_fixtures()
    write_trained()


if __name__ == "__main__":
    main()
