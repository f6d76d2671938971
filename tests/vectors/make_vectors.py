"""Write the known-answer vectors for envelope format v1 and label encoding v1.

    .venv/bin/python tests/vectors/make_vectors.py [--out DIR] [--force]

- ``envelope-v1-classic.json``, ``envelope-v1-pq-hybrid.json``: fixed keys (derived
  from fixed seeds, stored as key-file JSON), a label and its canonical bytes, a
  payload, and an envelope sealed once with today's code (plus a batch of three
  sealed with ``seal_batch``). Sealing draws fresh data keys, nonces and HPKE
  encapsulations, so a re-run writes different (equally valid) envelopes: the
  checked-in files are the pinned ones, and ``tests/test_vectors.py`` opens them.
- ``label-v1.json``: label fields as a hand-written label might give them (NFD
  Hangul, unsorted parties, local offsets) and the exact canonical bytes.

Existing files are kept unless ``--force`` is given: regenerate only on purpose,
when the format version changes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

from gsomia.core import envelope
from gsomia.core.agreement import Agreement, parse
from gsomia.core.keys import PrivateKeys
from gsomia.core.label import Label

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
AGREEMENT_FILE = "agreements/jp-kr-gsomia-2016.toml"
SEGMENT_SIZE = 64


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _seed(suite: str, party: str, part: str, n: int) -> bytes:
    return hashlib.sha512(f"gsomia test vector v1/{suite}/{party}/{part}".encode()).digest()[:n]


def key_file(party: str, suite: str) -> dict[str, Any]:
    """A private key file with every key drawn from a fixed seed."""
    data: dict[str, Any] = {
        "kind": "gsomia-private-key",
        "v": 1,
        "party": party,
        "suite": suite,
        "x25519": _b64(_seed(suite, party, "x25519", 32)),
        "ed25519": _b64(_seed(suite, party, "ed25519", 32)),
    }
    if suite == "pq-hybrid":
        data["mlkem768"] = _b64(_seed(suite, party, "mlkem768", 64))
        data["mldsa65"] = _b64(_seed(suite, party, "mldsa65", 32))
    return data


def agreement_for(suite: str) -> Agreement:
    data = tomllib.loads((ROOT / AGREEMENT_FILE).read_text("utf-8"))
    data["protection"]["suite"] = suite
    return parse(data, AGREEMENT_FILE)


def _label(item_id: str, classification: str, **extra: Any) -> Label:
    return Label.from_dict(
        {
            "item_id": item_id,
            "agreement": "jp-kr-gsomia-2016",
            "originator": "KOR",
            "classification": classification,
            "releasable_to": ["JPN"],
            "created_at": "2019-11-22T18:00:00+09:00",
            **extra,
        }
    )


def envelope_vector(suite: str) -> dict[str, Any]:
    agreement = agreement_for(suite)
    files = {p: key_file(p, suite) for p in ("KOR", "JPN")}
    private = {p: PrivateKeys.from_bytes(json.dumps(f).encode()) for p, f in files.items()}
    public = {p: k.public() for p, k in private.items()}
    recipients = [public["JPN"], public["KOR"]]

    label = _label(
        "7b0c2f9e-4d1a-4c55-9a3e-2019112218a0",
        "군사II급비밀",
        purposes=["북한 탄도미사일 분석"],
        review_at="2029-11-22T00:00:00+09:00",
    )
    payload = (
        "北朝鮮弾道ミサイル発射 / 북한 탄도미사일 발사: 2019-11-28 16:59 KST, 함경남도 연포, 2발, 380 km, 고도 97 km. "
    ).encode()
    sealed = envelope.seal(payload, label, private["KOR"], recipients, agreement, SEGMENT_SIZE)

    batch_items = [
        (b"", _label("7b0c2f9e-4d1a-4c55-9a3e-2019112218b0", "군사III급비밀")),
        (b"\x00", _label("7b0c2f9e-4d1a-4c55-9a3e-2019112218b1", "군사II급비밀")),
        (bytes(range(130)), _label("7b0c2f9e-4d1a-4c55-9a3e-2019112218b2", "군사II급비밀", compartments=["TALENT"])),
    ]
    batch = envelope.Sealer(private["KOR"], agreement).seal_batch(batch_items, recipients, SEGMENT_SIZE)

    hybrid = suite == "pq-hybrid"
    return {
        "description": (
            f"gsomia envelope format v1, suite {suite}: "
            + (
                "HPKE ML-KEM-768+X25519 (RFC 9180) key wrap, AES-256-GCM segments, Ed25519 and ML-DSA-65 signatures. "
                if hybrid
                else "HPKE X25519 (RFC 9180) key wrap, AES-256-GCM segments, Ed25519 signature. "
            )
            + f"KOR seals a 군사II급비밀 item for JPN (and itself) under {AGREEMENT_FILE} "
            + (f"with [protection] suite = {suite!r}, " if hybrid else "")
            + f"in {SEGMENT_SIZE}-byte segments. Opening envelope_hex with keys.JPN.private and trusting "
            "keys.KOR.public must give exactly label_canonical and payload_hex; any other byte string "
            "must be refused. The batch is three items sealed with seal_batch under one signature."
        ),
        "format": {"magic": "GSOM", "version": envelope.VERSION},
        "suite": suite,
        "agreement": {"file": AGREEMENT_FILE, "id": agreement.id, "suite": suite},
        "keys": {
            p: {"private": files[p], "public": json.loads(public[p].to_bytes()), "kid": public[p].kid}
            for p in ("KOR", "JPN")
        },
        "originator": "KOR",
        "recipients": ["JPN", "KOR"],
        "segment_size": SEGMENT_SIZE,
        "label": label.as_dict(),
        "label_canonical_hex": label.to_bytes().hex(),
        "header_canonical": envelope.Header(suite, agreement.id, label.item_id, "KOR", public["KOR"].kid, SEGMENT_SIZE)
        .to_bytes()
        .decode(),
        "payload_hex": payload.hex(),
        "envelope_hex": sealed.hex(),
        "batch": [
            {"label_canonical_hex": lab.to_bytes().hex(), "payload_hex": data.hex(), "envelope_hex": env.hex()}
            for (data, lab), env in zip(batch_items, batch, strict=True)
        ],
    }


def label_cases() -> list[dict[str, Any]]:
    def nfd(text: str) -> str:  # Hangul decomposed into jamo
        return unicodedata.normalize("NFD", text)

    cases: list[tuple[str, dict[str, Any]]] = [
        (
            "KOR secret item, minimal fields, defaults filled in",
            {
                "item_id": "3f1e9a52-0c8d-4b7e-a1f2-9d3c5b7e0a11",
                "agreement": "jp-kr-gsomia-2016",
                "originator": "KOR",
                "classification": "군사II급비밀",
                "releasable_to": ["JPN"],
                "created_at": "2019-11-22T18:00:00+09:00",
            },
        ),
        (
            "Hangul given decomposed (NFD) is stored composed (NFC); parties sorted, de-duplicated",
            {
                "v": 1,
                "item_id": "3f1e9a52-0c8d-4b7e-a1f2-9d3c5b7e0a12",
                "agreement": "jp-kr-gsomia-2016",
                "originator": "KOR",
                "classification": nfd("군사III급비밀"),
                "releasable_to": ["JPN", "JPN"],
                "purposes": [nfd("북한 탄도미사일 분석"), "조기경보", nfd("조기경보")],
                "compartments": [],
                "originator_control": True,
                "route": "direct",
                "created_at": "2016-11-23T00:00:00.5+09:00",
                "review_at": "2026-11-23T00:00:00+09:00",
            },
        ),
        (
            "JPN item in kanji with compartments and purposes, instants in JST and UTC",
            {
                "item_id": "3f1e9a52-0c8d-4b7e-a1f2-9d3c5b7e0a13",
                "agreement": "jp-kr-gsomia-2016",
                "originator": "JPN",
                "classification": "極秘",
                "releasable_to": ["KOR"],
                "purposes": ["弾道ミサイル防衛", "警戒監視"],
                "compartments": ["特定秘密保護", "ＴＡＬＥＮＴ"],
                "created_at": "2017-08-29T05:58:00Z",
                "review_at": "2027-08-29T14:58:00.123456+09:00",
            },
        ),
        (
            "Trilateral route, no originator control, three parties unsorted",
            {
                "item_id": "3f1e9a52-0c8d-4b7e-a1f2-9d3c5b7e0a14",
                "agreement": "us-kr-jp-tisa-2014",
                "originator": "JPN",
                "classification": "秘",
                "releasable_to": ["USA", "KOR", "JPN"],
                "originator_control": False,
                "route": "trilateral",
                "created_at": "2014-12-29T00:00:00-05:00",
            },
        ),
    ]
    out = []
    for name, fields in cases:
        raw = Label.from_dict(fields).to_bytes()
        out.append({"name": name, "fields": fields, "canonical_text": raw.decode(), "canonical_hex": raw.hex()})
    return out


def label_vectors() -> dict[str, Any]:
    return {
        "description": (
            "gsomia label encoding v1 (STANAG 4774 shape): fields as given to Label.from_dict, and the one "
            "canonical byte string (UTF-8 JSON, keys sorted, no whitespace, NFC strings, lists sorted and "
            "de-duplicated, instants as YYYY-MM-DDTHH:MM:SS.ffffffZ) that Label.to_bytes must produce."
        ),
        "version": 1,
        "cases": label_cases(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write to (default: beside this script)")
    parser.add_argument("--force", action="store_true", help="replace existing vector files")
    args = parser.parse_args(argv)
    outputs = {
        "envelope-v1-classic.json": lambda: envelope_vector("classic"),
        "envelope-v1-pq-hybrid.json": lambda: envelope_vector("pq-hybrid"),
        "label-v1.json": label_vectors,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, build in outputs.items():
        path = args.out / name
        if path.exists() and not args.force:
            print(f"{path}: exists, kept (use --force to replace)")
            continue
        path.write_text(json.dumps(build(), ensure_ascii=False, indent=2) + "\n", "utf-8")
        print(f"{path}: written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
