"""The protection commands as a security officer runs them: the installed console script.

``keys generate``, ``seal``, ``open`` and ``policy explain`` in subprocesses. Every
refusal is exit 2 with one line on stderr (never a traceback), and a refused
``open`` or ``seal`` leaves neither its output nor a temporary file behind.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from gsomia.core import keys
from gsomia.core.keys import PrivateKeys, PublicKeys

GSOMIA = Path(sys.executable).parent / "gsomia"
ROOT = Path(__file__).resolve().parents[1]
AGREEMENT = ROOT / "agreements" / "jp-kr-gsomia-2016.toml"
AT = "2024-01-15T09:00:00+09:00"  # in force: the 2019 notice was withdrawn in 2023


@dataclass
class Run:
    code: int
    out: str
    err: str


def gsomia(*args: str | Path, cwd: Path | None = None) -> Run:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    done = subprocess.run(
        [str(GSOMIA), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr)


def one_line_error(run: Run, *needles: str) -> str:
    """Exit 2, exactly one line on stderr, no traceback; returns the line."""
    assert run.code == 2, (run.code, run.out, run.err)
    assert "Traceback" not in run.err + run.out
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def listing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


@dataclass
class World:
    root: Path
    keys: Path  # KOR.key/.pub and JPN.key/.pub
    stranger: Path  # another JPN key pair, to which nothing is sealed
    payload: bytes
    envelope: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("cli")
    keys, stranger = root / "keys", root / "stranger"
    jobs = [("KOR", keys), ("JPN", keys), ("JPN", stranger)]
    with ThreadPoolExecutor(len(jobs)) as pool:  # three processes at once: this is the slow part
        runs = list(pool.map(lambda job: gsomia("keys", "generate", "--party", job[0], "--out", job[1]), jobs))
    assert all(run.code == 0 for run in runs), [run.err for run in runs]
    payload = "북한 탄도미사일 발사 보고 / 北朝鮮弾道ミサイル発射 ".encode() * 20
    (root / "report.txt").write_bytes(payload)
    envelope = root / "report.gsom"
    run = gsomia(
        "seal",
        root / "report.txt",
        "-o",
        envelope,
        "--agreement",
        AGREEMENT,
        "--key",
        keys / "KOR.key",
        "--to",
        keys / "JPN.pub",
        "--classification",
        "군사II급비밀",
        "--purpose",
        "북한 탄도미사일 분석",
        "--segment-size",
        "256",
        "--at",
        AT,
    )
    assert run.code == 0, run.err
    return World(root, keys, stranger, payload, envelope)


def open_args(world: World, envelope: Path, output: Path, **override: Path) -> list[str | Path]:
    key = override.get("key", world.keys / "JPN.key")
    trust = override.get("trust", world.keys / "KOR.pub")
    agreement = override.get("agreement", AGREEMENT)
    return ["open", envelope, "-o", output, "--agreement", agreement, "--key", key, "--trust", trust]


# --- keys generate ----------------------------------------------------------------------------


def test_keys_generate_writes_a_private_file_0600_and_a_public_file(world: World) -> None:
    key, pub = world.keys / "KOR.key", world.keys / "KOR.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    private = PrivateKeys.from_bytes(key.read_bytes())
    public = PublicKeys.from_bytes(pub.read_bytes())
    assert (private.party, private.suite) == ("KOR", "classic")
    assert private.public().to_bytes() == public.to_bytes()
    assert b"private" not in pub.read_bytes()


def test_keys_generate_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert gsomia("keys", "generate", "--party", "KOR", "--out", tmp_path).code == 0
    before = {name: (tmp_path / name).read_bytes() for name in ("KOR.key", "KOR.pub")}
    one_line_error(gsomia("keys", "generate", "--party", "KOR", "--out", tmp_path), "already exists", "--force")
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert not [n for n in listing(tmp_path) if n.endswith(".partial")]

    assert gsomia("keys", "generate", "--party", "KOR", "--out", tmp_path, "--force").code == 0
    assert (tmp_path / "KOR.key").read_bytes() != before["KOR.key"]
    assert stat.S_IMODE((tmp_path / "KOR.key").stat().st_mode) == 0o600


def test_keys_generate_tls_only_replaces_the_certificate_for_the_hosts_named(tmp_path: Path) -> None:
    from cryptography import x509

    assert gsomia("keys", "generate", "--party", "KOR", "--out", tmp_path).code == 0
    node_key, old_cert = (tmp_path / "KOR.key").read_bytes(), (tmp_path / "KOR.crt").read_bytes()
    run = gsomia(
        "keys", "generate", "--party", "KOR", "--out", tmp_path, "--tls-only", "--force",
        "--host", "kor-node.example", "--host", "192.0.2.7",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert (tmp_path / "KOR.key").read_bytes() == node_key  # the node key is untouched
    cert = x509.load_pem_x509_certificate((tmp_path / "KOR.crt").read_bytes())
    assert cert.public_bytes(serialization.Encoding.PEM) != old_cert
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["kor-node.example"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]
    one_line_error(
        gsomia("keys", "generate", "--party", "KOR", "--out", tmp_path, "--tls-only", "--force", "--host", "a b"),
        "--host",
    )


def test_keys_generate_refuses_a_party_that_is_not_alpha_3(tmp_path: Path) -> None:
    one_line_error(gsomia("keys", "generate", "--party", "kor", "--out", tmp_path / "k"), "--party", "alpha-3")
    assert not (tmp_path / "k" / "kor.key").exists()


# --- seal and open ------------------------------------------------------------------------------


def test_seal_then_open_shows_the_recipients_marking(world: World, tmp_path: Path) -> None:
    output = tmp_path / "report.txt"
    run = gsomia(*open_args(world, world.envelope, output), "--json")
    assert run.code == 0, run.err
    shown: dict[str, Any] = json.loads(run.out)
    assert shown["marking"] == "極秘"  # JPN's own marking for SECRET (R3, R4)
    assert shown["classification"] == "군사II급비밀"
    assert shown["originator"] == "KOR"
    assert shown["releasable_to"] == ["JPN"]
    assert shown["purposes"] == ["북한 탄도미사일 분석"]
    assert "KOR" in shown["display"]
    assert "군사II급비밀" in shown["display"]
    assert shown["signed_by"] == PublicKeys.from_bytes((world.keys / "KOR.pub").read_bytes()).kid
    assert shown["size"] == len(world.payload)
    assert shown["created_at"] == "2024-01-15T00:00:00.000000Z"
    assert output.read_bytes() == world.payload
    assert listing(tmp_path) == {"report.txt"}


def test_sealing_a_marking_outside_the_agreement_is_refused(world: World, tmp_path: Path) -> None:
    (tmp_path / "top.txt").write_bytes(b"top secret")
    before = listing(tmp_path)
    run = gsomia(
        "seal",
        tmp_path / "top.txt",
        "-o",
        tmp_path / "top.gsom",
        "--agreement",
        AGREEMENT,
        "--key",
        world.keys / "KOR.key",
        "--to",
        world.keys / "JPN.pub",
        "--classification",
        "군사I급비밀",
        "--at",
        AT,
    )
    one_line_error(run, "R3", "군사I급비밀")
    assert not (tmp_path / "top.gsom").exists()
    assert listing(tmp_path) == before


def test_sealing_while_the_agreement_is_not_in_force_is_refused(world: World, tmp_path: Path) -> None:
    (tmp_path / "early.txt").write_bytes(b"x")
    run = gsomia(
        "seal",
        tmp_path / "early.txt",
        "-o",
        tmp_path / "early.gsom",
        "--agreement",
        AGREEMENT,
        "--key",
        world.keys / "KOR.key",
        "--to",
        world.keys / "JPN.pub",
        "--classification",
        "군사II급비밀",
        "--at",
        "2016-11-22T23:59:59+09:00",
    )
    one_line_error(run, "R13")
    assert not (tmp_path / "early.gsom").exists()


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(-1, id="trailer"),  # every segment was decrypted and written first
        pytest.param(-1500, id="early-segment"),
    ],
)
def test_open_of_a_tampered_envelope_leaves_nothing(world: World, tmp_path: Path, where: int) -> None:
    """A late flip means plaintext was already streamed to the temporary file: it must go too."""
    data = bytearray(world.envelope.read_bytes())
    data[where] ^= 0x01
    bad = tmp_path / "bad.gsom"
    bad.write_bytes(bytes(data))
    output = tmp_path / "out.txt"
    line = one_line_error(gsomia(*open_args(world, bad, output)), "refused", str(bad))
    assert "(Tampered)" in line or "(LabelInvalid)" in line
    assert not output.exists(), line
    assert listing(tmp_path) == {"bad.gsom"}  # no .partial file


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ({"key": "stranger/JPN.key"}, ("NotARecipient",)),
        ({"trust": "keys/JPN.pub"}, ("UnknownSigner",)),
        ({"key": "keys/JPN.pub"}, ("private key file",)),  # a public key where the private one belongs
        ({"key": "missing/JPN.key"}, ("no such",)),
        ({"agreement": "missing.toml"}, ("missing.toml",)),
        ({"key": "huge.key"}, ("not a gsomia key file",)),
    ],
)
def test_open_refusals_are_one_line(
    world: World, tmp_path: Path, override: dict[str, str], needles: tuple[str, ...]
) -> None:
    (world.root / "huge.key").write_bytes(b"1" * 5000)  # json.loads raises a plain ValueError on this
    output = tmp_path / "out.txt"
    paths = {k: world.root / v for k, v in override.items()}
    one_line_error(gsomia(*open_args(world, world.envelope, output, **paths)), *needles)
    assert listing(tmp_path) == set()


def test_open_of_a_missing_envelope_is_one_line(world: World, tmp_path: Path) -> None:
    one_line_error(gsomia(*open_args(world, tmp_path / "nope.gsom", tmp_path / "out")), "no such envelope")
    assert listing(tmp_path) == set()


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--key", "keys/KOR.key", "--to", "odd/JPN-pq.pub"], ("requires the classic suite", "pq-hybrid")),
        (["--key", "keys/KOR.key", "--to", "odd/USA.pub", "--releasable-to", "JPN"], ("not releasable to USA", "R5")),
        (["--key", "keys/KOR.key", "--to", "missing.pub"], ("no such",)),
        (["--key", "huge.key", "--to", "keys/JPN.pub"], ("not a gsomia key file",)),
    ],
)
def test_seal_refusals_are_one_line(world: World, tmp_path: Path, extra: list[str], needles: tuple[str, ...]) -> None:
    odd = world.root / "odd"
    if not odd.exists():
        odd.mkdir()
        (odd / "JPN-pq.pub").write_bytes(keys.generate("JPN", "pq-hybrid").public().to_bytes())
        (odd / "USA.pub").write_bytes(keys.generate("USA", "classic").public().to_bytes())
    (world.root / "huge.key").write_bytes(b"1" * 5000)
    (tmp_path / "p.txt").write_bytes(b"x")
    args = [world.root / a if flag in ("--key", "--to") else a for flag, a in zip(["", *extra], extra, strict=False)]
    common = ["--agreement", AGREEMENT, "--classification", "군사II급비밀", "--at", AT]
    one_line_error(gsomia("seal", tmp_path / "p.txt", "-o", tmp_path / "p.gsom", *common, *args), *needles)
    assert listing(tmp_path) == {"p.txt"}


def test_seal_of_a_missing_payload_is_one_line(world: World, tmp_path: Path) -> None:
    run = gsomia(
        "seal",
        tmp_path / "nope.txt",
        "-o",
        tmp_path / "p.gsom",
        "--agreement",
        AGREEMENT,
        "--key",
        world.keys / "KOR.key",
        "--to",
        world.keys / "JPN.pub",
        "--classification",
        "군사II급비밀",
        "--at",
        AT,
    )
    one_line_error(run, "no such payload file")
    assert listing(tmp_path) == set()


# --- policy explain ---------------------------------------------------------------------------------

LABEL = {
    "item_id": "6f1f3d2a-1b7c-4e0e-9a57-8a3c2b1d0e9f",
    "agreement": "jp-kr-gsomia-2016",
    "originator": "KOR",
    "classification": "군사II급비밀",
    "releasable_to": ["JPN"],
    "purposes": ["북한 탄도미사일 분석"],
    "created_at": "2024-01-10T00:00:00+09:00",
}


def explain(tmp_path: Path, subject: dict[str, Any] | str, *extra: str) -> Run:
    (tmp_path / "label.json").write_text(json.dumps(LABEL, ensure_ascii=False), "utf-8")
    text = subject if isinstance(subject, str) else json.dumps(subject, ensure_ascii=False)
    (tmp_path / "subject.json").write_text(text, "utf-8")
    return gsomia(
        "policy",
        "explain",
        "--agreement",
        AGREEMENT,
        "--subject",
        tmp_path / "subject.json",
        "--label",
        tmp_path / "label.json",
        "--action",
        "read",
        "--at",
        AT,
        *extra,
    )


ANALYST = {
    "id": "jpn-analyst-7",
    "party": "JPN",
    "role": "analyst",
    "clearance": "極秘",
    "need_to_know": ["북한 탄도미사일 분석"],
}


def test_policy_explain_permit(tmp_path: Path) -> None:
    run = explain(tmp_path, ANALYST)
    assert run.code == 0, run.err
    assert run.out.startswith("permit read by jpn-analyst-7 (JPN, analyst)")
    assert "R7 (Art. 7): cleared (極秘) with need-to-know" in run.out
    assert "then: record access (R8)" in run.out


def test_policy_explain_deny_cites_the_rules(tmp_path: Path) -> None:
    run = explain(tmp_path, {**ANALYST, "clearance": "秘", "need_to_know": []}, "--json")
    assert run.code == 1, run.err
    decision = json.loads(run.out)
    assert decision["decision"] == "deny"
    reasons = [(r["rule"], r["text"]) for r in decision["reasons"]]
    assert ("R7", "clearance 秘 is below 極秘, the equivalent level of this item") in reasons
    assert ("R7", "no need-to-know for any permitted purpose (북한 탄도미사일 분석)") in reasons
    assert all(r["cite"] == f"{r['rule']} (Art. 7)" for r in decision["reasons"])


@pytest.mark.parametrize(
    ("subject", "needle"),
    [
        ('{"id": "x", "party": "JPN",', "not valid JSON"),
        ({"id": "x", "party": "JPN"}, "role"),
    ],
)
def test_policy_explain_bad_subject_is_exit_2(tmp_path: Path, subject: Any, needle: str) -> None:
    text = subject if isinstance(subject, str) else json.dumps(subject)
    one_line_error(explain(tmp_path, text), needle)
