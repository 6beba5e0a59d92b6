"""An independent computation of SOMA's target routing, to check soma-flow's
`placement` simulation: reads a `placement` output (the registry, the placed
embeddings, the seeds and k) and prints, for each placed embedding, how many of
the drawn targets route to it and which models are routed alongside it.

The chain's rule (SOMA-RPC.md §7.2-7.3), written here from the specification with
numpy: targets are `arrgen.normal_array(seed, [dim], 0, 1)`; each Active model's
voting power is sqrt(stake) / sum of sqrt(stakes) (f64, then f32; 1/n when every
stake is 0); its score is the f32 cosine distance to the target divided by
(power + 1e-10); the k lowest scores are routed, candidates in ascending id order.

Usage: python3 routing.py placement.json  → JSON on stdout.
"""

import json
import sys

import numpy as np
from arrgen import normal_array

NEW_MODEL = "0x" + "ff" * 32


def voting_power(stakes):
    roots = np.sqrt(np.asarray(stakes, dtype=np.float64))
    total = float(sum(roots))
    if total == 0.0:
        return np.full(len(stakes), np.float32(1.0) / np.float32(len(stakes)), dtype=np.float32)
    return (roots / total).astype(np.float32)


def route(target, ids, embeddings, stakes, k):
    t = target.astype(np.float32)
    e = embeddings.astype(np.float32)
    dots = (e * t).sum(axis=1, dtype=np.float32)
    tn = np.float32(max(np.sqrt(np.float32((t * t).sum(dtype=np.float32))), np.float32(1e-8)))
    en = np.maximum(np.sqrt((e * e).sum(axis=1, dtype=np.float32)), np.float32(1e-8))
    cos = dots / (tn * en)
    scores = (np.float32(1.0) - cos) / (voting_power(stakes) + np.float32(1e-10))
    order = np.argsort(scores, kind="stable")
    return [ids[i] for i in order[: min(k, len(ids))]]


def main(path):
    with open(path) as f:
        p = json.load(f)
    results = []
    for s in p["scenarios"]:
        me = s.get("replaces") or NEW_MODEL
        field = [
            (m["id"], m["embedding"], m["stake"])
            for m in p["registry"]
            if m["id"] != s.get("replaces")
        ]
        field.append((me, s["embedding"], s["stake"]))
        field.sort(key=lambda m: m[0])
        ids = [m[0] for m in field]
        embeddings = np.asarray([m[1] for m in field], dtype=np.float32)
        stakes = [m[2] for m in field]
        routed, met = 0, {}
        for i in range(p["samples"]):
            target = np.asarray(
                normal_array(p["seed"] + i, [embeddings.shape[1]], 0.0, 1.0), dtype=np.float32
            )
            chosen = route(target, ids, embeddings, stakes, p["k"])
            if me in chosen:
                routed += 1
                for other in chosen:
                    if other != me:
                        met[other] = met.get(other, 0) + 1
        results.append({"name": s["name"], "routed": routed, "competitors": met})
    json.dump(results, sys.stdout, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
