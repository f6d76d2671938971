"""Coverage-guided fuzzing of ``envelope.open`` with atheris (optional; pytest does not collect this).

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz_envelope.py -max_total_time=60 [CORPUS_DIR ...]

The stored known-answer envelopes (``tests/vectors``) seed the corpus, so libFuzzer
starts from valid envelopes of both suites and mutates its way into every region.
Each input is opened with the classic and the pq-hybrid recipient. The property is
the one ``tests/test_envelope.py`` checks with hypothesis: only ``EnvelopeError`` or
``LabelInvalid`` may be raised, and an input opens only if it is byte for byte one
of the stored envelopes. Anything else is a crash libFuzzer reports and saves.
"""

from __future__ import annotations

import json
import sys
import tempfile
import tomllib
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from gsomia.core.agreement import parse
    from gsomia.core.envelope import EnvelopeError, Opener
    from gsomia.core.keys import PrivateKeys, PublicKeys
    from gsomia.core.label import LabelInvalid

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _load(suite: str) -> tuple[Opener, set[bytes]]:
    v = json.loads((HERE / "vectors" / f"envelope-v1-{suite}.json").read_text("utf-8"))
    data = tomllib.loads((ROOT / v["agreement"]["file"]).read_text("utf-8"))
    data["protection"]["suite"] = suite
    recipient = PrivateKeys.from_bytes(json.dumps(v["keys"]["JPN"]["private"]).encode())
    originator = PublicKeys.from_bytes(json.dumps(v["keys"]["KOR"]["public"]).encode())
    envelopes = {bytes.fromhex(v["envelope_hex"])} | {bytes.fromhex(b["envelope_hex"]) for b in v["batch"]}
    return Opener(recipient, [originator], parse(data)), envelopes


OPENERS = {suite: _load(suite) for suite in ("classic", "pq-hybrid")}


def test_one_input(data: bytes) -> None:
    for opener, originals in OPENERS.values():
        try:
            opener.open(data)
        except (EnvelopeError, LabelInvalid):
            continue
        if data not in originals:
            raise AssertionError(f"a modified envelope of {len(data)} bytes opened")


def main() -> None:
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):  # no corpus given: seed a temporary one
        corpus = Path(tempfile.mkdtemp(prefix="gsomia-fuzz-"))
        for _, originals in OPENERS.values():
            for i, env in enumerate(sorted(originals)):
                (corpus / f"seed-{len(env)}-{i}").write_bytes(env)
        args.append(str(corpus))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
