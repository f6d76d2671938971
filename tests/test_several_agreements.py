"""A node party to several agreements: each item travels under the one with its recipient,
each agreement's status comes from its own notes, and nothing is keyed by "the" partner.

Three real nodes: KOR is party to the 2016 agreement with JPN and to a KOR–USA agreement
written here (its terms are not what is under test: that each is applied on its own is).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gsomia.cli.demo import terms_only
from gsomia.core import records
from gsomia.core.errors import AgreementFileError, InvalidInput, NoteInvalid
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import Node
from gsomia.node.setup import partner
from gsomia.node.setup.provision import provision
from gsomia.store.db import open_node_database
from gsomia.store.files import load_private
from nodes import AGREEMENT, Pair, node_group

KR_US = """\
id = "kr-us-terms"
title = "A KOR-USA agreement on the protection of classified military information"
timezone = "Asia/Seoul"
parties = ["KOR", "USA"]
entry_into_force = 2010-01-01T00:00:00+09:00

[term]
initial_years = 1
renewal_years = 1
notice_days = 90

[protection]
suite = "classic"

[schemes]
KOR = ["대외비", "군사III급비밀", "군사II급비밀", "군사I급비밀"]
USA = ["CONFIDENTIAL", "SECRET", "TOP SECRET"]

[[levels]]
name = "CONFIDENTIAL"
KOR = ["군사III급비밀"]
USA = ["CONFIDENTIAL"]

[[levels]]
name = "SECRET"
KOR = ["군사II급비밀"]
USA = ["SECRET"]
"""


def agreement_files(tmp: Path) -> list[Path]:
    kr_us = tmp / "kr-us-terms.toml"
    kr_us.write_text(KR_US, encoding="utf-8")
    return [terms_only(AGREEMENT, tmp / "jp-kr-terms.toml"), kr_us]


@pytest.fixture
def three(tmp_path: Path, backend: str) -> Iterator[Pair]:
    """KOR with two partners (JPN, USA); JPN and USA each with KOR alone. Demo clocks."""
    with node_group(tmp_path, backend, agreement_files(tmp_path), ("KOR", "JPN", "USA"), demo=True) as group:
        yield group


def test_provisioning_gives_each_node_a_peer_for_each_bilateral_agreement(three: Pair) -> None:
    peers = {p: sorted(node_config.load(n.config).peers) for p, n in three.nodes.items()}
    assert peers == {"KOR": ["JPN", "USA"], "JPN": ["KOR"], "USA": ["KOR"]}
    status = three.user("KOR", "analyst").get("/status").json()
    assert {code: s["agreement"] for code, s in status.items()} == {"JPN": "jp-kr-gsomia-2016", "USA": "kr-us-terms"}


def test_each_item_travels_under_the_agreement_with_its_recipient(three: Pair) -> None:
    to_jpn = three.share("KOR", "JPN", "군사II급비밀", 3)
    to_usa = three.share("KOR", "USA", "군사II급비밀", 2)
    three.wait(lambda: len(three.received("JPN")) == 3 and len(three.received("USA")) == 2, "both deliveries")
    jpn, usa = three.received("JPN"), three.received("USA")
    assert {r["item_id"] for r in jpn} == set(to_jpn)
    assert {r["item_id"] for r in usa} == set(to_usa)
    assert {r["agreement"] for r in jpn} == {"jp-kr-gsomia-2016"}
    assert {r["agreement"] for r in usa} == {"kr-us-terms"}
    assert {r["marking"] for r in jpn} == {"極秘"}  # each in the recipient's scheme under its agreement
    assert {r["marking"] for r in usa} == {"SECRET"}
    reader = three.user("USA", "analyst")
    assert reader.get(f"/items/{to_usa[0]}").status_code == 200
    assert reader.get(f"/items/{to_jpn[0]}").status_code == 404  # never sent there: unknown


def test_each_agreement_ends_on_its_own_notes(three: Pair) -> None:
    three.set_clock("2020-08-01T00:00:00+09:00")
    authority = three.user("KOR", "security_authority")
    r = authority.post("/notes", {"to": "JPN", "type": "termination_notice", "conditions": [], "ref": None})
    assert r.status_code == 201, r.text
    three.wait(lambda: three.user("JPN", "analyst").get("/status").json()["KOR"]["termination"], "the note")
    three.set_clock("2020-11-24T00:00:00+09:00")  # past the anniversary the notice was given for
    status = three.user("KOR", "analyst").get("/status").json()
    assert status["JPN"]["state"] == "terminated"
    assert status["USA"]["state"] == "in_force"
    assert three.user("USA", "analyst").get("/status").json()["KOR"]["termination"] is None  # not USA's agreement
    refused = three.user("KOR", "analyst").post(
        "/items", {"items": [{"to": "JPN", "classification": "군사II급비밀", "text": "x", "purposes": ["nk-missile"]}]}
    )
    assert refused.status_code == 403
    assert refused.json()["reasons"][0]["rule"] == "R14"
    three.share("KOR", "USA", "군사II급비밀", 1)  # the other agreement is untouched


def test_a_partner_file_names_the_agreement_with_the_partner_it_is_for(three: Pair) -> None:
    cfg = node_config.load(three.nodes["KOR"].config)
    assert partner.export(cfg, partner="USA").agreement == "kr-us-terms"
    assert partner.export(cfg, partner="JPN").agreement == "jp-kr-gsomia-2016"
    with pytest.raises(InvalidInput, match="JPN, USA; name the partner"):
        partner.export(cfg)
    with pytest.raises(InvalidInput, match="no bilateral agreement with 'CHN'"):
        partner.export(cfg, partner="CHN")
    single = node_config.load(three.nodes["USA"].config)
    assert partner.export(single).agreement == "kr-us-terms"  # one partner: no need to name it


def test_a_partner_note_on_an_agreement_it_is_not_party_to_is_refused(three: Pair) -> None:
    cfg = node_config.load(three.nodes["KOR"].config)
    node = Node(cfg, open_node_database(cfg), SystemClock())
    try:
        body = {
            "note_id": str(uuid.uuid4()),
            "agreement": "jp-kr-gsomia-2016",
            "at": datetime(2020, 8, 1, tzinfo=UTC).isoformat(),
            "by": "USA",
            "type": "termination_notice",
            "conditions": [],
            "ref": None,
        }
        with pytest.raises(NoteInvalid, match="an agreement USA is party to"):
            node.receive_note("USA", body)
        assert node.status("JPN").in_force
        assert node.agreement("JPN").notes == ()
    finally:
        node.dispose()


def test_a_node_given_an_arrangement_without_its_carriers_refuses_to_load(tmp_path: Path) -> None:
    tisa = Path(AGREEMENT).parent / "us-kr-jp-tisa-2014.toml"
    kr_us = Path(AGREEMENT).parent / "kr-us-gsomia-1987.toml"
    kor = provision(tmp_path / "kor", [terms_only(AGREEMENT, tmp_path / "jp-kr.toml"), kr_us, tisa], ("KOR",))
    assert {a.id for a in node_config.load(kor["KOR"].config).agreements} == {
        "jp-kr-gsomia-2016",
        "kr-us-gsomia-1987",
        "us-kr-jp-tisa-2014",
    }  # KOR's hop to the hub is carried; the USA–JPN hop is not KOR's to carry
    with pytest.raises(AgreementFileError, match="no agreement in carried_by carries USA–JPN"):
        provision(tmp_path / "usa", [kr_us, tisa], ("USA",))  # the hub needs both of its agreements


def test_a_record_from_a_partner_about_an_item_it_has_no_part_in_is_refused(three: Pair) -> None:
    [item] = three.share("KOR", "JPN", "군사II급비밀", 1)
    usa_key = load_private(three.nodes["USA"].root / "keys" / "USA.key")
    record = records.make(usa_key, "destruction", "USA", "usa.authority", item, datetime.now(UTC), method="shredded")
    cfg = node_config.load(three.nodes["KOR"].config)
    node = Node(cfg, open_node_database(cfg), SystemClock())
    try:
        with pytest.raises(records.RecordInvalid, match=f"USA has no part in item {item}"):
            node.receive_record("USA", record.as_dict())
    finally:
        node.dispose()


def test_a_node_refuses_two_bilateral_agreements_with_one_partner(tmp_path: Path) -> None:
    first = terms_only(AGREEMENT, tmp_path / "jp-kr.toml")
    second = tmp_path / "jp-kr-again.toml"
    second.write_text(first.read_text("utf-8").replace('id = "jp-kr-gsomia-2016"', 'id = "jp-kr-again"'), "utf-8")
    with pytest.raises(AgreementFileError, match="jp-kr-gsomia-2016 and jp-kr-again are both between JPN and KOR"):
        provision(tmp_path / "nodes", [first, second], ("KOR",))
