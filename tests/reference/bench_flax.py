#!/usr/bin/env python3
"""Forward + backward time of one training step with soma-models (Flax/JAX) on
the CPU: batch 2 x 1024, loss = cross-entropy (Burn 0.19 normalisation) +
0.02 SIGReg, for v1-tiny and v1-small. Compare with
`cargo bench -p soma-flow-stages --bench train_step`.

Then one distillation step as the `distill` kind takes it by default (two frozen
teachers' mean-pooled representations, alpha 0.5: half the loss above, half the
squared gap between the student's pooled representation and the teachers' mean),
in tokens/s. Compare with `cargo bench -p soma-flow-stages --bench train_tokens`.
"""

import importlib.metadata
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from soma_models.v1.configs import ModelConfig, SIGRegConfig, V1_PAD_TOKEN_ID
from soma_models.v1.flax import Model, SIGReg

BATCH, SEQ_LEN, STEPS = 2, 1024, 3
PRESETS = {
    "v1-tiny": dict(embedding_dim=128, num_layers=2, num_heads=4, pwff_hidden_dim=512),
    "v1-small": dict(embedding_dim=256, num_layers=4, num_heads=4, pwff_hidden_dim=1024),
}


def task_loss(model, sig_reg, tokens, targets, positions, noise):
    """CE + 0.02 SIGReg, and the representation it was computed from."""
    rep = model.encode(tokens, positions)
    logits = model.predict(rep)
    log_probs = jax.nn.log_softmax(logits.reshape(-1, logits.shape[-1]), axis=-1)
    flat = targets.reshape(-1)
    picked = jnp.take_along_axis(log_probs, flat[:, None], axis=1)[:, 0]
    ce = -jnp.mean(jnp.where(flat == V1_PAD_TOKEN_ID, 0.0, picked))
    return ce + sig_reg.compute(rep, noise), rep


def loss_fn(model, sig_reg, tokens, targets, positions, noise):
    return task_loss(model, sig_reg, tokens, targets, positions, noise)[0]


def distill_loss(model, sig_reg, tokens, targets, positions, noise, target):
    task, rep = task_loss(model, sig_reg, tokens, targets, positions, noise)
    gap = jnp.mean(rep, axis=1) - target
    return 0.5 * task + 0.5 * jnp.mean(gap * gap)


def timed(run, noise_of):
    """Mean and best seconds of STEPS calls after a warm-up (which compiles)."""
    jax.block_until_ready(run(noise_of(0)))
    times = []
    for i in range(STEPS):
        noise = noise_of(i + 1)
        start = time.perf_counter()
        jax.block_until_ready(run(noise))
        times.append(time.perf_counter() - start)
    return sum(times) / STEPS, min(times)


def main():
    print("versions:", {n: importlib.metadata.version(n) for n in ["soma-models", "jax", "jaxlib", "flax"]})
    print("devices:", jax.devices())
    data = (np.arange(BATCH * SEQ_LEN) * 31 % 251).astype(np.int32).reshape(BATCH, SEQ_LEN)
    tokens = jnp.asarray(data)
    targets = jnp.concatenate([tokens[:, 1:], jnp.full((BATCH, 1), V1_PAD_TOKEN_ID)], axis=1)
    positions = jnp.broadcast_to(jnp.arange(SEQ_LEN), (BATCH, SEQ_LEN)) + jnp.arange(BATCH)[:, None] * SEQ_LEN
    for name, shape in PRESETS.items():
        model = Model(ModelConfig(dropout_rate=0.0, **shape), rngs=nnx.Rngs(0))
        sig_reg = SIGReg(SIGRegConfig(), rngs=nnx.Rngs(1))

        @nnx.jit
        def step(model, sig_reg, noise):
            return nnx.value_and_grad(loss_fn)(model, sig_reg, tokens, targets, positions, noise)

        def noise_of(i):
            return jax.random.normal(jax.random.key(i), (shape["embedding_dim"], 256))

        mean, best = timed(lambda noise: step(model, sig_reg, noise), noise_of)
        print(
            f"{name}: forward+backward, batch {BATCH}x{SEQ_LEN}, Flax/JAX CPU (jit): "
            f"mean {1e3 * mean:.0f} ms, best {1e3 * best:.0f} ms over {STEPS} steps"
        )

        teachers = [Model(ModelConfig(dropout_rate=0.0, **shape), rngs=nnx.Rngs(seed)) for seed in (2, 3)]

        @nnx.jit
        def distill_step(model, teachers, sig_reg, noise):
            pooled = [jnp.mean(t.encode(tokens, positions), axis=1) for t in teachers]
            target = jax.lax.stop_gradient(sum(pooled) / len(pooled))
            return nnx.value_and_grad(distill_loss)(model, sig_reg, tokens, targets, positions, noise, target)

        mean, best = timed(lambda noise: distill_step(model, teachers, sig_reg, noise), noise_of)
        print(
            f"{name} distill (2 teachers): step, batch {BATCH}x{SEQ_LEN}, Flax/JAX CPU (jit): "
            f"mean {BATCH * SEQ_LEN / mean:.0f} tokens/s, best {BATCH * SEQ_LEN / best:.0f} tokens/s over {STEPS} steps"
        )


if __name__ == "__main__":
    main()
