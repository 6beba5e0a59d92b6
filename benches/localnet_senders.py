"""Coin transfers through the official SDK (soma-sdk 0.1.15) against a served
local network: SENDERS senders at once, each with its own client (calls on one
SomaClient wait for each other, as separate programs' would not) and its own
faucet coin, each sending TRANSFERS transfers one after another (each waits for
its checkpoint, as the SDK does). Prints one JSON line: senders, transactions,
seconds, tx/s.

Usage: python localnet_senders.py RPC FAUCET ADMIN SENDERS TRANSFERS [SEED] [--acks]
With --acks it prints each acknowledged transfer's digest as it comes and sends
until killed (the durability test reads them). SEED picks fresh sender keys.
"""

import asyncio, json, os, sys, time

from soma_sdk import Keypair, SomaClient


async def sender(client, key, recipient, transfers, acks):
    done = 0
    while acks or done < transfers:
        result = await client.transfer_coin(key, recipient, 0.000001)
        done += 1
        if acks:
            print(getattr(result, "V1", result).transaction_digest, flush=True)
    return done


async def main():
    acks = "--acks" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--acks"]
    rpc, faucet, admin = args[:3]
    senders, transfers = int(args[3]), int(args[4])
    seed = int(args[5]) if len(args) > 5 else 1
    clients = [
        await SomaClient(rpc_url=rpc, faucet_url=faucet, admin_url=admin)
        for _ in range(senders)
    ]
    keys = [Keypair.from_secret_key(f"{seed:02x}{i:02x}" * 16) for i in range(senders)]
    recipient = Keypair.from_secret_key("ee" * 32).address()
    for key in keys:
        await clients[0].request_faucet(key.address())
    start = time.perf_counter()
    counts = await asyncio.gather(
        *(sender(c, k, recipient, transfers, acks) for c, k in zip(clients, keys))
    )
    seconds = time.perf_counter() - start
    total = sum(counts)
    print(json.dumps({
        "senders": senders,
        "transactions": total,
        "seconds": round(seconds, 3),
        "tx_per_s": round(total / seconds, 1),
    }), flush=True)


asyncio.run(main())
sys.stdout.flush()
# soma-sdk 0.1.15's runtime threads can abort the interpreter's shutdown.
os._exit(0)
