"""Benchmark: sealed envelopes, large and small.

(a) Throughput and memory on one large payload (default 256 MiB, 1 MiB segments).
    ``seal_stream`` and ``open_stream`` run file to file in a temporary directory, on
    tmpfs where available (real files, not ``io.BytesIO``: the payload is never held
    in memory, and tmpfs keeps disk writeback out of the timings), against a
    raw baseline measured in the same run: ``AESGCM`` encrypt and decrypt of the same
    file in 1 MiB chunks, read into one reused buffer and written the same way. Targets: seal and open at
    >= 60% of the raw MiB/s; peak RSS growth < 64 MiB during each. Each phase runs
    in a fresh Python process that reports ``ru_maxrss`` just before and just after
    its work, so the growth is that phase's alone (imports and keys excluded). Best
    of 3 for the rates, the largest of 3 for the RSS growth.
(b) 1 KiB items per second, for each suite: one at a time with a ``Sealer`` and an
    ``Opener``, and with ``seal_batch`` (batches of 256, opened by one ``Opener``).
    Each rate is compared with a bare Ed25519 sign rate (1 KiB messages) measured in
    the same run, paired: 5 rounds of (sign pass, item pass), median of the ratios.
    The target for the classic suite is a ratio >= 0.5. The pq-hybrid suite runs a
    quarter as many items a pass (ML-DSA-65 signing dominates it).

Run: ``.venv/bin/python bench/envelope.py`` (``--size-mib 64`` for a quicker run,
``--json`` for machine-readable output). One recipient key per envelope.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gsomia.core import envelope, keys
from gsomia.core.agreement import Agreement, parse
from gsomia.core.agreement.terms import Suite
from gsomia.core.keys import PrivateKeys, PublicKeys
from gsomia.core.label import Label

ROOT = Path(__file__).resolve().parents[1]
AGREEMENT_FILE = ROOT / "agreements" / "jp-kr-gsomia-2016.toml"
CHUNK = 1 << 20
MiB = 1 << 20
THROUGHPUT_TARGET = 0.60
RSS_TARGET_MIB = 64
RATE_TARGET = 0.5  # classic suite, items/s relative to bare Ed25519 signing
BATCH = 256
RUNS = 5
LARGE_RUNS = 3


def agreement(suite: str) -> Agreement:
    data = tomllib.loads(AGREEMENT_FILE.read_text("utf-8"))
    data["protection"]["suite"] = suite
    return parse(data, str(AGREEMENT_FILE))


def label(n: int = 0) -> Label:
    return Label(
        item_id=f"00000000-0000-4000-8000-{n:012d}",
        agreement="jp-kr-gsomia-2016",
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=("JPN",),
        created_at=datetime(2024, 1, 15, tzinfo=UTC),
        purposes=("북한 탄도미사일 분석",),
    )


def maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


# --- (a) phases, each run in its own process -----------------------------------------------------


def phase(name: str, work: Path) -> dict[str, Any]:
    """One measured phase in this (fresh) process: seconds and peak-RSS growth."""
    suite = "classic"
    kor = PrivateKeys.from_bytes((work / "KOR.key").read_bytes())
    jpn = PrivateKeys.from_bytes((work / "JPN.key").read_bytes())
    ag = agreement(suite)
    key = (work / "raw.key").read_bytes()
    src, dst = {
        "raw-encrypt": ("payload", "raw.ct"),
        "raw-decrypt": ("raw.ct", "raw.pt"),
        "seal": ("payload", "payload.gsom"),
        "open": ("payload.gsom", "payload.out"),
    }[name]
    with (work / src).open("rb") as fin, (work / dst).open("wb") as fout:
        before = maxrss_kib()
        start = time.perf_counter()
        if name == "raw-encrypt":
            raw_encrypt(fin, fout, key)
        elif name == "raw-decrypt":
            raw_decrypt(fin, fout, key)
        elif name == "seal":
            envelope.seal_stream(fin, fout, label(), kor, [jpn.public()], ag, envelope.DEFAULT_SEGMENT)
        else:
            envelope.open_stream(fin, fout, jpn, [kor.public()], ag)
        fout.flush()
        seconds = time.perf_counter() - start
        after = maxrss_kib()
    return {"phase": name, "seconds": seconds, "rss_before_kib": before, "rss_growth_kib": after - before}


def raw_encrypt(fin: io.BufferedReader, fout: io.BufferedWriter, key: bytes) -> None:
    """The baseline: read into one reused 1 MiB buffer, encrypt, write (as seal_stream does)."""
    aead = AESGCM(key)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    index = 0
    while n := fin.readinto(buf):
        fout.write(aead.encrypt(index.to_bytes(12, "big"), view[:n], None))
        index += 1


def raw_decrypt(fin: io.BufferedReader, fout: io.BufferedWriter, key: bytes) -> None:
    aead = AESGCM(key)
    buf = bytearray(CHUNK + 16)
    view = memoryview(buf)
    index = 0
    while n := fin.readinto(buf):
        fout.write(aead.decrypt(index.to_bytes(12, "big"), view[:n], None))
        index += 1


def run_phase(name: str, work: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--work", str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.digest()


def large(size_mib: int) -> dict[str, Any]:
    # tmpfs when there is one: no disk writeback of one phase's output slowing the next.
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="gsomia-bench-", dir=base) as tmp:
        work = Path(tmp)
        kor, jpn = keys.generate("KOR", "classic"), keys.generate("JPN", "classic")
        (work / "KOR.key").write_bytes(kor.to_bytes())
        (work / "JPN.key").write_bytes(jpn.to_bytes())
        (work / "raw.key").write_bytes(AESGCM.generate_key(bit_length=256))
        with (work / "payload").open("wb") as f:  # written 1 MiB at a time: never whole in memory
            for _ in range(size_mib):
                f.write(os.urandom(CHUNK))
        want = file_digest(work / "payload")
        names = ("raw-encrypt", "seal", "raw-decrypt", "open")  # each next to its baseline
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for _ in range(LARGE_RUNS):
            for name in names:
                runs[name].append(run_phase(name, work))
            assert file_digest(work / "raw.pt") == want, "raw baseline round trip failed"
            assert file_digest(work / "payload.out") == want, "envelope round trip failed"
        overhead = (work / "payload.gsom").stat().st_size - size_mib * MiB
    mib_s = {name: size_mib / min(r["seconds"] for r in rs) for name, rs in runs.items()}
    return {
        "size_mib": size_mib,
        "io": f"files in {'tmpfs (/dev/shm)' if base else 'a temporary directory'}, each phase a fresh process, "
        f"best of {LARGE_RUNS}",
        "mib_per_s": mib_s,
        "seal_ratio": mib_s["seal"] / mib_s["raw-encrypt"],
        "open_ratio": mib_s["open"] / mib_s["raw-decrypt"],
        "rss_growth_mib": {name: max(r["rss_growth_kib"] for r in rs) / 1024 for name, rs in runs.items()},
        "envelope_overhead_bytes": overhead,
    }


# --- (b) small items ------------------------------------------------------------------------------


def timed(count: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


class Ed25519Baseline:
    """Bare Ed25519 over 1 KiB messages: the rate every small-item rate is compared with."""

    def __init__(self, count: int) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.messages = [os.urandom(1024) for _ in range(count)]
        self.signatures = [self.key.sign(m) for m in self.messages]

    def sign(self) -> float:
        return timed(len(self.messages), lambda: [self.key.sign(m) for m in self.messages])

    def verify(self) -> float:
        public = self.key.public_key()
        pairs = list(zip(self.signatures, self.messages, strict=True))
        return timed(len(pairs), lambda: [public.verify(sig, m) for sig, m in pairs])


def paired(count: int, fn: Callable[[], object], baseline: Ed25519Baseline) -> dict[str, float]:
    """RUNS rounds of (sign rate, item rate) back to back: the ratio of each pair, then medians.

    Pairing keeps the ratio honest on a shared machine whose load changes during the run."""
    signs, rates = [], []
    for _ in range(RUNS):
        signs.append(baseline.sign())
        rates.append(timed(count, fn))
    return {
        "rate": statistics.median(rates),
        "ratio": statistics.median(r / s for r, s in zip(rates, signs, strict=True)),
        "sign": statistics.median(signs),
    }


def small(suite: Suite, count: int, baseline: Ed25519Baseline) -> dict[str, Any]:
    ag = agreement(suite)
    kor, jpn = keys.generate("KOR", suite), keys.generate("JPN", suite)
    recipients: list[PublicKeys] = [jpn.public()]
    payloads = [os.urandom(1024) for _ in range(count)]
    items = [(p, label(i)) for i, p in enumerate(payloads)]
    sealed: list[bytes] = []
    batched: list[bytes] = []

    def seal_each() -> None:
        sealer = envelope.Sealer(kor, ag)
        sealed[:] = [sealer.seal(p, lab, recipients) for p, lab in items]

    def open_each() -> None:
        opener = envelope.Opener(jpn, [kor.public()], ag)
        for env in sealed:
            opener.open(env)

    def seal_batches() -> None:
        sealer = envelope.Sealer(kor, ag)
        batched[:] = [
            env for i in range(0, count, BATCH) for env in sealer.seal_batch(items[i : i + BATCH], recipients)
        ]

    def open_batches() -> None:
        opener = envelope.Opener(jpn, [kor.public()], ag)
        for env in batched:
            opener.open(env)

    result: dict[str, Any] = {"items": count}
    for name, fn in (
        ("seal", seal_each),
        ("open", open_each),
        ("seal_batch", seal_batches),
        ("open_batch", open_batches),
    ):
        result[name] = paired(count, fn, baseline)
    check = envelope.Opener(jpn, [kor.public()], ag)
    assert check.open(sealed[-1])[1] == payloads[-1]
    assert check.open(batched[-1])[1] == payloads[-1]
    return result


# --- report ----------------------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "ok" if ok else "BELOW TARGET"


def report(result: dict[str, Any]) -> None:
    print(
        f"gsomia envelope benchmark: {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    big = result.get("large")
    if big:
        r, m = big["mib_per_s"], big["rss_growth_mib"]
        print(f"\n(a) {big['size_mib']} MiB payload, 1 MiB segments; {big['io']}")
        print(f"    raw AES-GCM encrypt   {r['raw-encrypt']:8.1f} MiB/s   peak RSS growth {m['raw-encrypt']:6.1f} MiB")
        print(f"    seal_stream           {r['seal']:8.1f} MiB/s   peak RSS growth {m['seal']:6.1f} MiB")
        print(f"    raw AES-GCM decrypt   {r['raw-decrypt']:8.1f} MiB/s   peak RSS growth {m['raw-decrypt']:6.1f} MiB")
        print(f"    open_stream           {r['open']:8.1f} MiB/s   peak RSS growth {m['open']:6.1f} MiB")
        print(
            f"    seal / raw = {big['seal_ratio']:.2f}  [{mark(big['seal_ratio'] >= THROUGHPUT_TARGET)}: >= "
            f"{THROUGHPUT_TARGET:.2f}]   open / raw = {big['open_ratio']:.2f}  "
            f"[{mark(big['open_ratio'] >= THROUGHPUT_TARGET)}]"
        )
        print(
            f"    RSS growth seal {m['seal']:.1f} MiB, open {m['open']:.1f} MiB  "
            f"[{mark(max(m['seal'], m['open']) < RSS_TARGET_MIB)}: < {RSS_TARGET_MIB} MiB]; "
            f"envelope overhead {big['envelope_overhead_bytes']} bytes"
        )
    ed = result["ed25519"]
    print(
        f"\n(b) 1 KiB items, one recipient; medians of {RUNS} rounds, each round an Ed25519 sign pass then the "
        f"item pass.\n    Bare Ed25519 (1 KiB messages): sign {ed['sign']:,.0f}/s, verify {ed['verify']:,.0f}/s "
        f"(verify/sign {ed['verify'] / ed['sign']:.2f}: opening one item needs one verify)"
    )
    names = {
        "seal": "Sealer, one at a time",
        "open": "Opener, one at a time",
        "seal_batch": f"seal_batch ({BATCH})",
        "open_batch": f"open of batched ({BATCH})",
    }
    for suite, rates in result["small"].items():
        print(f"    {suite} ({rates['items']} items a pass)")
        for name, text in names.items():
            r = rates[name]
            target = f"  [{mark(r['ratio'] >= RATE_TARGET)}: >= {RATE_TARGET}]" if suite == "classic" else ""
            print(f"      {text:28s} {r['rate']:10,.0f} items/s   {r['ratio']:6.2f} x Ed25519 sign{target}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark sealed envelopes (see the module docstring).")
    parser.add_argument("--size-mib", type=int, default=256, help="large payload size (default 256)")
    parser.add_argument("--items", type=int, default=2048, help="small items per measurement (default 2048)")
    parser.add_argument("--skip-large", action="store_true", help="only the small-item rates")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.work)))
        return 0
    result: dict[str, Any] = {}
    if not args.skip_large:
        result["large"] = large(args.size_mib)
    baseline = Ed25519Baseline(args.items)
    result["ed25519"] = {
        "sign": statistics.median(baseline.sign() for _ in range(RUNS)),
        "verify": statistics.median(baseline.verify() for _ in range(RUNS)),
    }
    result["small"] = {
        "classic": small("classic", args.items, baseline),
        "pq-hybrid": small("pq-hybrid", max(BATCH, args.items // 4), baseline),  # ML-DSA signing is slow
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
