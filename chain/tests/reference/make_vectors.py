#!/usr/bin/env python3
"""Writes vectors.json: golden values for soma-flow-chain from the official SDK.

Oracle: the PyPI wheel ``soma-sdk==0.1.15`` (the official Rust SDK compiled with
PyO3), run offline. Install it with ``python3 -m pip install soma-sdk==0.1.15`` and
run ``python3 chain/tests/reference/make_vectors.py`` from the repository root.

What the wheel produces directly (``source: wheel``):
  * addresses from secret keys (hex, Bech32 ``somaprivkey1...`` and BIP-39 mnemonic),
    and the secret key as hex (``Keypair.to_secret_key``);
  * the signed transaction (``Keypair.sign``), which BCS-decodes the given
    ``TransactionData`` as the real type, re-encodes it and signs it. The signed
    form holds the 97-byte signature (flag || sig || public key);
  * Blake2b-256 commitments as Base58 (``SomaClient.commitment``);
  * AES-256-CTR encryption and the Base58 key (``SomaClient.encrypt_weights``).

What the wheel cannot produce offline, so this script computes it with Python's
hashlib and cross-checks it against the worked examples of SOMA-RPC.md §3.8/§4
(which were themselves verified with this wheel):
  * the transaction bytes themselves: there is no offline transaction builder, so
    this script BCS-encodes them by hand; the wheel's acceptance (sign decodes them
    and re-encodes them to the identical bytes) is the check;
  * the transaction digest (Blake2b-256("TransactionData::" || tx), Base58);
  * the signing digest (Blake2b-256(00 00 01 || tx)); the wheel's signature is
    checked against it with the independent Ed25519 of ``cryptography``, if installed;
  * derive_id (model id = derive_id(create digest, 0));
  * the Bech32 form of a key (the wheel only parses it; that it parses to the right
    address is the check).
"""

import hashlib
import importlib.metadata
import json
import os
import struct
import sys

import soma_sdk

SDK_VERSION = "0.1.15"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")

if importlib.metadata.version("soma-sdk") != SDK_VERSION:
    sys.exit(f"need soma-sdk=={SDK_VERSION}, found {importlib.metadata.version('soma-sdk')}")

Keypair = soma_sdk.Keypair
Client = soma_sdk.SomaClient


# --- BCS by hand -------------------------------------------------------------

def uleb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def u64(n):
    return struct.pack("<Q", n)


def vec(items):
    return uleb(len(items)) + b"".join(items)


def byts(b):
    return uleb(len(b)) + b


def opt(x):
    return b"\x00" if x is None else b"\x01" + x


def digest(b32):
    assert len(b32) == 32
    return byts(b32)


def obj_ref(oid, version, dig):
    return oid + u64(version) + digest(dig)


def tensor(values):
    data = b"".join(struct.pack("<f", v) for v in values)
    return b"\x00" + byts(data) + vec([u64(len(values))])


def manifest(url, checksum, size):
    # Manifest::V1(ManifestV1{url, metadata: Metadata::V1(MetadataV1{checksum, size})})
    return b"\x00" + byts(url.encode()) + b"\x00" + digest(checksum) + u64(size)


def blake(*parts):
    h = hashlib.blake2b(digest_size=32)
    for p in parts:
        h.update(p)
    return h.digest()


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58(b):
    n = int.from_bytes(b, "big")
    s = ""
    while n:
        n, r = divmod(n, 58)
        s = B58[r] + s
    return "1" * (len(b) - len(b.lstrip(b"\x00"))) + s


# --- identity ----------------------------------------------------------------

SK = bytes(range(1, 33))
kp = Keypair.from_secret_key(SK)
ADDRESS = bytes.fromhex(kp.address())
# From SOMA-RPC.md §4; the wheel only parses Bech32 keys.
BECH32 = "somaprivkey1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0jqvt3src"
assert Keypair.from_secret_key(BECH32).address() == kp.address()
assert Keypair.from_secret_key("0x" + SK.hex()).address() == kp.address()
MNEMONIC = "abandon " * 11 + "about"
mk = Keypair.from_mnemonic(MNEMONIC)

# --- transactions ------------------------------------------------------------

GAS = obj_ref(b"\x11" * 32, 7, b"\x22" * 32)
MODEL = b"\x33" * 32
KEY = b"\x44" * 32
TARGET = b"\x55" * 32
COIN = obj_ref(b"\x66" * 32, 9, b"\x77" * 32)
EMBEDDING = [0.5, -1.25, 2.0, 0.0]
WEIGHTS_CIPHERTEXT = b"encrypted-weights-bytes"
WEIGHTS_URL = "https://example.com/models/1/w.safetensors.enc"
DATA = b"hello soma data"
DATA_URL = "https://example.com/data/1.bin"


def kind(index, fields=b""):
    return uleb(index) + fields


KINDS = [
    # (name, BCS of the kind) in TransactionKind declaration order (§3.3).
    ("Genesis", kind(0, vec([
        # ObjectInner: ObjectData{Coin, version 1, id ‖ balance}, AddressOwner, prev tx
        b"\x01" + u64(1) + byts(b"\x88" * 32 + u64(42)) + b"\x00" + ADDRESS + digest(b"\x99" * 32),
    ]))),
    # SOMA-RPC.md §3.3 gives no fields for this system-only variant. The layout
    # below was found by probing the wheel (it decodes and re-encodes it
    # identically): epoch u64, round u64, sub_dag_index Option<u64>,
    # commit_timestamp_ms u64, two digests. The field names are Sui's.
    ("ConsensusCommitPrologueV1", kind(1, u64(3) + u64(9) + opt(u64(5)) + u64(1_700_000_000_000)
        + digest(b"\xcc" * 32) + digest(b"\xdd" * 32))),
    ("ChangeEpoch", kind(2, u64(3) + u64(1_700_000_000_000) + u64(5) + u64(12345) + byts(b"\xab\xcd"))),
    ("AddValidator", kind(3, b"".join(byts(bytes([i]) * (i + 1)) for i in range(8)))),
    ("RemoveValidator", kind(4, byts(b"\x01\x02\x03"))),
    ("ReportValidator", kind(5, b"\xa1" * 32)),
    ("UndoReportValidator", kind(6, b"\xa2" * 32)),
    ("UpdateValidatorMetadata", kind(7, b"".join(
        opt(byts(bytes([i]) * 3)) if i % 2 == 0 else opt(None) for i in range(8)))),
    ("SetCommissionRate", kind(8, u64(250))),
    ("TransferCoin", kind(9, COIN + opt(u64(7)) + b"\xa3" * 32)),
    ("PayCoins", kind(10, vec([COIN, GAS]) + opt(vec([u64(1), u64(2)])) + vec([b"\xa4" * 32, b"\xa5" * 32]))),
    ("TransferObjects", kind(11, vec([COIN]) + b"\xa6" * 32)),
    ("AddStake", kind(12, b"\xa7" * 32 + COIN + opt(None))),
    ("WithdrawStake", kind(13, COIN)),
    ("CreateModel", kind(14, u64(1_000_000_000) + u64(1000) + u64(1))),
    ("CommitModel", kind(15, MODEL
        + manifest(WEIGHTS_URL, blake(WEIGHTS_CIPHERTEXT), len(WEIGHTS_CIPHERTEXT))
        + digest(blake(WEIGHTS_CIPHERTEXT))
        + digest(blake(tensor(EMBEDDING)))
        + digest(blake(KEY)))),
    ("RevealModel", kind(16, MODEL + digest(KEY) + tensor(EMBEDDING))),
    ("AddStakeToModel", kind(17, MODEL + COIN + opt(u64(5_000_000_000)))),
    ("AddStakeToModelWholeCoin", kind(17, MODEL + COIN + opt(None))),
    ("SetModelCommissionRate", kind(18, MODEL + u64(500))),
    ("DeactivateModel", kind(19, MODEL)),
    ("ReportModel", kind(20, MODEL)),
    ("UndoReportModel", kind(21, MODEL)),
    ("SubmitData", kind(22, TARGET + manifest(DATA_URL, blake(DATA), len(DATA)) + MODEL
        + tensor(EMBEDDING) + tensor([0.25]) + tensor([1.5]) + COIN)),
    ("ClaimRewards", kind(23, TARGET)),
    ("ReportSubmission", kind(24, TARGET)),
    ("UndoReportSubmission", kind(25, TARGET)),
]

# Expected tx digests from SOMA-RPC.md §3.8 (second source for what the wheel
# cannot compute offline).
DOC_DIGESTS = {
    "CreateModel": "GvxQgXQjpGyuJBrTpMbsuy9N2f5HpENYxWAN9o53dxHN",
    "CommitModel": "CuXF1mnsjHBrrKC9o9JxNysYYdKwNmENHTKL87QRYJ1h",
    "RevealModel": "BvWuPQ4XZwAwjs8cFrwFYXWDhoxVWKsLksTDoo85WU5c",
    "AddStakeToModel": "9AuVSjqNqjmoUq3ip961SJmUMvUxq3138z6jo4vCz23t",
    "SubmitData": "7cTzN4m5x4invPMafa1piZqYTxy6BQ1ZgpofDZTF7FoM",
    "ClaimRewards": "C4j1tgFsz5dedpGqKTEWzDziavNsvP5vzE1CPhLavCNZ",
}

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # the independent check is optional
    Ed25519PublicKey = None

transactions = []
public_key = None
for name, kind_bytes in KINDS:
    tx = b"\x00" + kind_bytes + ADDRESS + vec([GAS])
    signed = kp.sign(tx)
    # SenderSignedData: 01 ‖ intent 000001 ‖ tx ‖ 01 ‖ 61 ‖ 97-byte signature.
    assert signed[:4] == b"\x01\x00\x00\x01", name
    assert signed[4:4 + len(tx)] == tx, f"{name}: the wheel re-encoded the tx differently"
    assert signed[4 + len(tx):6 + len(tx)] == b"\x01\x61", name
    signature = signed[6 + len(tx):]
    assert len(signature) == 97 and signature[0] == 0, name
    public_key = signature[65:]
    signing_digest = blake(b"\x00\x00\x01", tx)
    if Ed25519PublicKey is not None:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature[1:65], signing_digest)
    tx_digest = blake(b"TransactionData::", tx)
    if name in DOC_DIGESTS:
        assert b58(tx_digest) == DOC_DIGESTS[name], name
    transactions.append({
        "name": name,
        "variant_index": kind_bytes[0],
        "tx_bcs": tx.hex(),
        "signed_transaction": signed.hex(),
        "signature": signature.hex(),
        "signing_digest": signing_digest.hex(),
        "digest": b58(tx_digest),
        "digest_hex": tx_digest.hex(),
    })

assert blake(b"\x00", public_key) == ADDRESS

# TransactionKind has exactly 26 variants: the wheel rejects index 26.
try:
    kp.sign(b"\x00" + uleb(26) + ADDRESS + vec([GAS]))
    sys.exit("the wheel accepted TransactionKind variant 26")
except ValueError as e:
    assert "0 <= i < 26" in str(e), e

create_digest = bytes.fromhex(next(t["digest_hex"] for t in transactions if t["name"] == "CreateModel"))
derived = [blake(create_digest, u64(n)).hex() for n in range(3)]
assert derived[0] == "27cdbc9fb78625cd05b059170ad2c1dc2dbbb5b1e95126c4684fae9a8fdc1718"

# --- commitments and encryption -------------------------------------------------

ciphertext, key_b58 = Client.encrypt_weights(b"hello world", KEY)
zeros_ct, _ = Client.encrypt_weights(bytes(40), KEY)
# A multi-chunk sample whose length is not a multiple of the AES block size.
LARGE_LEN = 3 * 65536 + 13
large = bytes(i % 251 for i in range(LARGE_LEN))
large_ct, _ = Client.encrypt_weights(large, KEY)
assert Client.decrypt_weights(large_ct, key_b58) == large

vectors = {
    "sdk": f"soma-sdk=={SDK_VERSION}",
    "identity": {
        "secret_hex": SK.hex(),
        "secret_hex_from_wheel": kp.to_secret_key(),
        "bech32": BECH32,
        "bech32_source": "SOMA-RPC.md §4; the wheel parses it to the same address",
        "public_key": public_key.hex(),
        "address": kp.address(),
        "mnemonic": MNEMONIC,
        "mnemonic_secret_hex": mk.to_secret_key(),
        "mnemonic_address": mk.address(),
    },
    "gas": {"id": "11" * 32, "version": 7, "digest": "22" * 32},
    "transactions": transactions,
    "derive_id": {
        "tx_digest_hex": create_digest.hex(),
        "ids": derived,
        "source": "hashlib; model id checked against SOMA-RPC.md §3.8",
    },
    "commitments": {
        "weights_ciphertext_utf8": WEIGHTS_CIPHERTEXT.decode(),
        "weights": Client.commitment(WEIGHTS_CIPHERTEXT),
        "embedding": EMBEDDING,
        "embedding_tensor_bcs": tensor(EMBEDDING).hex(),
        "embedding_commitment": Client.commitment(tensor(EMBEDDING)),
        "decryption_key_hex": KEY.hex(),
        "decryption_key_commitment": Client.commitment(KEY),
        "hello": Client.commitment(b"hello"),
    },
    "encryption": {
        "key_hex": KEY.hex(),
        "key_base58": key_b58,
        "plaintext_utf8": "hello world",
        "ciphertext_hex": ciphertext.hex(),
        "zeros40_ciphertext_hex": zeros_ct.hex(),
        "large_len": LARGE_LEN,
        "large_pattern": "byte i = i % 251",
        "large_ciphertext_commitment": Client.commitment(large_ct),
    },
}

with open(OUT, "w") as f:
    json.dump(vectors, f, indent=1)
    f.write("\n")
print(f"wrote {OUT}: {len(transactions)} transactions")
