"""The USA's bilateral agreements (USA–KOR 1987, USA–JPN 2007) and the trilateral arrangement's
route keys (R18): every shipped file loads and compiles, US markings translate to each national
scheme and back, each route key is refused when malformed (naming the key), and the scope, hop,
carrier and approval helpers give the route the arrangement describes."""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gsomia.core.agreement import Agreement, MarkingError, State, equivalent, level_of, lifecycle, load, parse, status
from gsomia.core.agreement.route import (
    RouteError,
    carrier,
    carrier_problems,
    hops,
    in_scope,
    needs_approval,
    scope_problem,
)
from gsomia.core.agreement.terms import Note, NoteType
from gsomia.core.errors import AgreementFileError, InvalidHistory
from gsomia.core.label import Label, new_item_id

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "agreements").glob("*.toml"))
TISA_PATH = ROOT / "agreements" / "us-kr-jp-tisa-2014.toml"
BILATERAL_PATH = ROOT / "agreements" / "jp-kr-gsomia-2016.toml"
KR_US = load(ROOT / "agreements" / "kr-us-gsomia-1987.toml")
JP_US = load(ROOT / "agreements" / "jp-us-gsomia-2007.toml")
TISA = load(TISA_PATH)
BILATERAL = load(BILATERAL_PATH)
LOADED = {a.id: a for a in (KR_US, JP_US, TISA, BILATERAL)}


def translate(agreement: Agreement, sender: str, marking: str, receiver: str) -> str:
    """``sender``'s ``marking`` as ``receiver`` marks it under ``agreement`` (R3, R4)."""
    return equivalent(agreement, level_of(agreement, sender, marking), receiver)


# --- every file loads and compiles ---------------------------------------------------------------


def test_the_us_agreements_are_shipped() -> None:
    assert {p.name for p in FILES} >= {"kr-us-gsomia-1987.toml", "jp-us-gsomia-2007.toml", "us-kr-jp-tisa-2014.toml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_agreement_file_loads_and_compiles(path: Path) -> None:
    agreement = load(path)
    assert agreement.id == path.stem  # carried_by names files by their ids
    assert lifecycle.validate(agreement) == []
    lifecycle.compile_history(agreement)
    assert status(agreement, agreement.entry_into_force).in_force
    assert not status(agreement, agreement.entry_into_force - timedelta(seconds=1)).in_force


@pytest.mark.parametrize(
    ("agreement", "parties", "entry"),
    [
        (KR_US, ("KOR", "USA"), datetime(1987, 9, 24, 4, 0, tzinfo=UTC)),  # 00:00 in Washington (EDT)
        (JP_US, ("JPN", "USA"), datetime(2007, 8, 9, 15, 0, tzinfo=UTC)),  # 00:00 JST in Tokyo
    ],
    ids=["kr-us", "jp-us"],
)
def test_the_bilaterals_are_in_force_from_signature_with_no_term(
    agreement: Agreement, parties: tuple[str, ...], entry: datetime
) -> None:
    """No term clause could be established: in force from signature, with no end and no notes."""
    assert set(agreement.parties) == set(parties)
    assert agreement.entry_into_force == entry
    assert agreement.term is None
    assert agreement.notes == ()
    assert agreement.binding
    assert agreement.suite == "classic"
    assert agreement.hub is None
    assert agreement.carried_by == ()
    assert agreement.scope_tags == ()
    later = status(agreement, datetime(2026, 1, 1, tzinfo=UTC))
    assert later.state is State.IN_FORCE
    assert later.term_end is None
    assert status(agreement, entry - timedelta(seconds=1)).state is State.NOT_IN_FORCE_YET


# --- US markings against each national scheme, both ways ---------------------------------------


@pytest.mark.parametrize(
    ("agreement", "party", "confidential", "secret"),
    [
        (KR_US, "KOR", "군사III급비밀", "군사II급비밀"),
        (JP_US, "JPN", "秘", "極秘"),
        (TISA, "KOR", "군사III급비밀", "군사II급비밀"),
        (TISA, "JPN", "秘", "極秘"),
    ],
    ids=["kr-us KOR", "jp-us JPN", "tisa KOR", "tisa JPN"],
)
def test_us_secret_and_confidential_map_to_the_national_markings_and_back(
    agreement: Agreement, party: str, confidential: str, secret: str
) -> None:
    assert translate(agreement, "USA", "CONFIDENTIAL", party) == confidential
    assert translate(agreement, "USA", "SECRET", party) == secret
    assert translate(agreement, party, confidential, "USA") == "CONFIDENTIAL"
    assert translate(agreement, party, secret, "USA") == "SECRET"


@pytest.mark.parametrize("agreement", [JP_US, TISA], ids=["jp-us", "tisa"])
def test_specially_designated_secrets_travel_as_us_secret_and_come_back_as_gokuhi(agreement: Agreement) -> None:
    assert translate(agreement, "JPN", "特定秘密", "USA") == "SECRET"
    assert translate(agreement, "USA", "SECRET", "JPN") == "極秘"  # receive_as, never 特定秘密


@pytest.mark.parametrize(
    ("agreement", "party", "marking"),
    [
        (KR_US, "USA", "TOP SECRET"),
        (KR_US, "KOR", "군사I급비밀"),
        (KR_US, "KOR", "대외비"),
        (JP_US, "USA", "TOP SECRET"),
        (JP_US, "JPN", "注意"),
        (TISA, "USA", "TOP SECRET"),
    ],
)
def test_markings_outside_the_levels_are_refused_not_guessed(agreement: Agreement, party: str, marking: str) -> None:
    with pytest.raises(MarkingError, match="outside"):
        level_of(agreement, party, marking)


@pytest.mark.parametrize(("marking", "expected"), [("군사III급비밀", "秘"), ("군사II급비밀", "極秘")])
def test_the_two_hops_through_the_hub_give_the_arrangements_own_equivalence(marking: str, expected: str) -> None:
    """KOR → USA under the 1987 agreement, then USA → JPN under the 2007 one, marks the item as
    the arrangement itself says JPN marks a KOR item (and back)."""
    us = translate(KR_US, "KOR", marking, "USA")
    assert translate(JP_US, "USA", us, "JPN") == expected == translate(TISA, "KOR", marking, "JPN")
    back = translate(JP_US, "JPN", expected, "USA")
    assert translate(KR_US, "USA", back, "KOR") == marking == translate(TISA, "JPN", expected, "KOR")


# --- the arrangement's route keys, as shipped --------------------------------------------------


def test_the_arrangement_names_its_hub_scope_forwarding_and_carriers() -> None:
    assert TISA.binding is False
    assert TISA.hub == "USA"
    assert TISA.scope_tags == ("nk-nuclear", "nk-missile")
    assert TISA.forwarding is not None
    assert TISA.forwarding.approval == "originator"
    assert TISA.carried_by == ("kr-us-gsomia-1987", "jp-us-gsomia-2007")
    assert carrier_problems(TISA, LOADED) == []


def test_the_route_keys_survive_a_new_note_history() -> None:
    again = TISA.with_notes(())
    assert (again.hub, again.forwarding, again.carried_by, again.scope_tags) == (
        TISA.hub,
        TISA.forwarding,
        TISA.carried_by,
        TISA.scope_tags,
    )


# --- each route key refused when malformed, naming the key --------------------------------------


def tisa_data() -> dict[str, Any]:
    return tomllib.loads(TISA_PATH.read_text("utf-8"))


def bilateral_data() -> dict[str, Any]:
    return tomllib.loads(BILATERAL_PATH.read_text("utf-8"))


def without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for key in keys:
        del out[key]
    return out


def with_(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    out.update(changes)
    return out


MALFORMED: list[tuple[str, dict[str, Any], str, str]] = [
    ("hub not a party", with_(tisa_data(), hub="CHN"), "hub", "unknown party 'CHN'"),
    ("hub not a code", with_(tisa_data(), hub="usa"), "hub", "not an ISO 3166-1 alpha-3 code"),
    ("hub not text", with_(tisa_data(), hub=["USA"]), "hub", "must be text"),
    ("hub without carriers", without(tisa_data(), "carried_by"), "hub", "needs carried_by"),
    ("hub between two", with_(bilateral_data(), hub="KOR"), "hub", "more than two parties"),
    (
        "forwarding between two",
        with_(bilateral_data(), forwarding={"approval": "originator"}),
        "forwarding",
        "more than two",
    ),
    ("carriers between two", with_(bilateral_data(), carried_by=["kr-us-gsomia-1987"]), "carried_by", "more than two"),
    ("carriers without hub", without(tisa_data(), "hub"), "carried_by", "needs hub"),
    ("forwarding without hub", without(tisa_data(), "hub", "carried_by"), "forwarding", "needs hub"),
    ("forwarding not a table", with_(tisa_data(), forwarding="originator"), "forwarding", "must be a table"),
    ("approval unknown", with_(tisa_data(), forwarding={"approval": "anyone"}), "forwarding.approval", "'anyone'"),
    ("approval missing", with_(tisa_data(), forwarding={}), "forwarding.approval", "missing"),
    ("approval not text", with_(tisa_data(), forwarding={"approval": True}), "forwarding.approval", "must be text"),
    (
        "forwarding unknown key",
        with_(tisa_data(), forwarding={"approval": "originator", "by": "USA"}),
        "forwarding.by",
        "unknown key",
    ),
    ("carriers not a list", with_(tisa_data(), carried_by="kr-us-gsomia-1987"), "carried_by", "must be a list"),
    ("carriers empty", with_(tisa_data(), carried_by=[]), "carried_by", "at least one"),
    ("carrier not text", with_(tisa_data(), carried_by=["kr-us-gsomia-1987", 2007]), "carried_by[1]", "non-empty text"),
    ("carrier not an id", with_(tisa_data(), carried_by=["KR US 1987"]), "carried_by[0]", "not an agreement id"),
    ("carried by itself", with_(tisa_data(), carried_by=["us-kr-jp-tisa-2014"]), "carried_by[0]", "by itself"),
    (
        "carrier twice",
        with_(tisa_data(), carried_by=["kr-us-gsomia-1987", "kr-us-gsomia-1987"]),
        "carried_by",
        "listed twice",
    ),
    ("more carriers than partners", with_(tisa_data(), carried_by=["a-1", "b-2", "c-3"]), "carried_by", "only 2"),
    ("tags not a list", with_(tisa_data(), scope_tags="nk-missile"), "scope_tags", "must be a list"),
    ("tags empty", with_(tisa_data(), scope_tags=[]), "scope_tags", "at least one"),
    ("tag not a tag", with_(tisa_data(), scope_tags=["NK missile"]), "scope_tags[0]", "not a tag"),
    ("tag empty", with_(tisa_data(), scope_tags=["nk-missile", ""]), "scope_tags[1]", "non-empty text"),
    ("tag twice", with_(tisa_data(), scope_tags=["nk-missile", "nk-missile"]), "scope_tags", "listed twice"),
    ("tags without scope", without(tisa_data(), "scope"), "scope_tags", "needs scope"),
    ("misspelt key", with_(tisa_data(), hubs="USA"), "hubs", "unknown key"),
    ("hub without scope tags", without(tisa_data(), "scope_tags"), "hub", "needs scope_tags"),
    ("hub without forwarding", without(tisa_data(), "forwarding"), "hub", "needs [forwarding]"),
]


@pytest.mark.parametrize(("data", "key", "problem"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_route_key_is_refused_naming_the_key(data: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(AgreementFileError) as caught:
        parse(data, "tisa.toml")
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"tisa.toml: {key}: ")


def test_the_unknown_key_message_lists_the_route_keys() -> None:
    with pytest.raises(AgreementFileError) as caught:
        parse(with_(tisa_data(), hubs="USA"), "tisa.toml")
    for key in ("carried_by", "forwarding", "hub", "scope_tags"):
        assert key in caught.value.problem


def test_scope_tags_are_allowed_on_a_bilateral_agreement() -> None:
    agreement = parse(with_(bilateral_data(), scope="North Korea", scope_tags=["nk-missile"]), "b.toml")
    assert agreement.scope_tags == ("nk-missile",)
    assert agreement.hub is None


# --- scope --------------------------------------------------------------------------------------


def label(*purposes: str, agreement: Agreement = TISA, originator: str = "KOR") -> Label:
    return Label(
        new_item_id(),
        agreement.id,
        originator,
        "군사II급비밀",
        ("USA",),
        datetime(2020, 1, 1, tzinfo=UTC),
        purposes=purposes,
        route="trilateral",
    )


@pytest.mark.parametrize("purposes", [("nk-missile",), ("nk-nuclear",), ("nk-missile", "nk-nuclear")])
def test_an_item_whose_purposes_are_all_scope_tags_is_in_scope(purposes: tuple[str, ...]) -> None:
    assert in_scope(TISA, label(*purposes))
    assert scope_problem(TISA, label(*purposes)) is None


@pytest.mark.parametrize(
    ("purposes", "why"),
    [
        ((), "names no purpose"),
        (("maritime-security",), "maritime-security is outside"),
        (("nk-missile", "maritime-security"), "maritime-security is outside"),
        (("NK-MISSILE",), "NK-MISSILE is outside"),
    ],
)
def test_an_item_with_no_purpose_or_one_outside_the_tags_is_out_of_scope(purposes: tuple[str, ...], why: str) -> None:
    assert not in_scope(TISA, label(*purposes))
    problem = scope_problem(TISA, label(*purposes))
    assert problem is not None
    assert why in problem
    assert "nk-nuclear, nk-missile" in problem


def test_an_agreement_without_scope_tags_judges_no_scope() -> None:
    assert in_scope(BILATERAL, label(agreement=BILATERAL))
    assert in_scope(KR_US, label("anything", agreement=KR_US))


def test_compartments_do_not_bring_an_item_into_scope() -> None:
    item = Label(
        new_item_id(),
        TISA.id,
        "KOR",
        "군사II급비밀",
        ("USA",),
        datetime(2020, 1, 1, tzinfo=UTC),
        compartments=("nk-missile",),
        route="trilateral",
    )
    assert not in_scope(TISA, item)


# --- hops, approval, carriers -------------------------------------------------------------------


def test_an_item_between_kor_and_jpn_goes_through_the_hub() -> None:
    assert hops(TISA, "KOR", "JPN") == (("KOR", "USA"), ("USA", "JPN"))
    assert hops(TISA, "JPN", "KOR") == (("JPN", "USA"), ("USA", "KOR"))


def test_an_item_to_or_from_the_hub_is_one_hop() -> None:
    assert hops(TISA, "KOR", "USA") == (("KOR", "USA"),)
    assert hops(TISA, "USA", "JPN") == (("USA", "JPN"),)
    assert hops(BILATERAL, "KOR", "JPN") == (("KOR", "JPN"),)


@pytest.mark.parametrize(
    ("originator", "recipient", "why"),
    [("CHN", "JPN", "originator CHN"), ("KOR", "CHN", "recipient CHN"), ("KOR", "KOR", "itself")],
)
def test_hops_refuse_strangers_and_sending_to_oneself(originator: str, recipient: str, why: str) -> None:
    with pytest.raises(RouteError, match=why) as caught:
        hops(TISA, originator, recipient)
    assert caught.value.rule == "R18"


def test_the_hub_forwarding_anothers_item_needs_the_originators_approval() -> None:
    first, second = hops(TISA, "KOR", "JPN")
    assert not needs_approval(TISA, "KOR", first)  # KOR giving its own item to the USA
    assert needs_approval(TISA, "KOR", second)  # the USA passing KOR's item to JPN
    assert not needs_approval(TISA, "USA", ("USA", "JPN"))  # the USA's own item
    assert not needs_approval(TISA, "KOR", ("USA", "KOR"))  # back to its originator
    assert not needs_approval(BILATERAL, "KOR", ("KOR", "JPN"))


def test_the_hub_needs_the_originators_approval_to_pass_on_and_for_nothing_else() -> None:
    assert needs_approval(TISA, "KOR", ("USA", "JPN"))
    assert not needs_approval(TISA, "KOR", ("KOR", "USA"))  # the originator's own hop
    assert not needs_approval(TISA, "USA", ("USA", "JPN"))  # the hub's own item


def test_each_hop_is_carried_by_the_hubs_bilateral_agreement_with_that_party() -> None:
    first, second = hops(TISA, "KOR", "JPN")
    assert carrier(TISA, first, LOADED) is KR_US
    assert carrier(TISA, second, LOADED) is JP_US
    assert carrier(TISA, ("USA", "KOR"), LOADED) is KR_US


def test_a_hop_no_loaded_carrier_covers_is_refused() -> None:
    with pytest.raises(RouteError, match=r"carries USA–JPN \(jp-us-gsomia-2007 not loaded\)"):
        carrier(TISA, ("USA", "JPN"), {KR_US.id: KR_US})
    with pytest.raises(RouteError, match="no hub"):
        carrier(BILATERAL, ("KOR", "JPN"), LOADED)


def test_carrier_problems_name_each_unusable_carrier() -> None:
    assert carrier_problems(BILATERAL, LOADED) == []
    assert carrier_problems(TISA, {KR_US.id: KR_US}) == [
        "carried_by[1]: jp-us-gsomia-2007 is not loaded",
        "carried_by: no agreement carries USA–JPN",
    ]
    kr_us_data = tomllib.loads((ROOT / "agreements" / "kr-us-gsomia-1987.toml").read_text("utf-8"))
    cn_us = parse(with_(kr_us_data, id="cn-us-1999", parties=["CHN", "USA"], schemes={}, levels=[]), "cn.toml")
    odd = parse(with_(tisa_data(), carried_by=["jp-kr-gsomia-2016", "us-kr-jp-tisa-2015"]), "odd.toml")
    other = parse(with_(tisa_data(), id="us-kr-jp-tisa-2015", carried_by=["kr-us-gsomia-1987"]), "other.toml")
    assert carrier_problems(odd, {**LOADED, other.id: other}) == [
        "carried_by[0]: jp-kr-gsomia-2016 is between KOR and JPN, without the hub USA",
        "carried_by[1]: us-kr-jp-tisa-2015 has 3 parties; a hop is carried by a bilateral agreement",
        "carried_by: no agreement carries USA–KOR",
        "carried_by: no agreement carries USA–JPN",
    ]
    stranger = parse(with_(tisa_data(), carried_by=["kr-us-gsomia-1987", "cn-us-1999"]), "stranger.toml")
    assert carrier_problems(stranger, {**LOADED, cn_us.id: cn_us}) == [
        "carried_by[1]: cn-us-1999 joins USA with CHN, not a party to us-kr-jp-tisa-2014",
        "carried_by: no agreement carries USA–JPN",
    ]
    twice = parse(with_(tisa_data(), carried_by=["kr-us-gsomia-1987", "kr-us-gsomia-1987-bis"]), "twice.toml")
    bis = parse(with_(kr_us_data, id="kr-us-gsomia-1987-bis"), "bis.toml")
    assert carrier_problems(twice, {**LOADED, bis.id: bis}) == [
        "carried_by[1]: kr-us-gsomia-1987-bis and kr-us-gsomia-1987 both carry USA–KOR",
        "carried_by: no agreement carries USA–JPN",
    ]


def test_a_termination_notice_on_an_agreement_without_a_term_is_refused_as_history() -> None:
    kr_us = load(ROOT / "agreements" / "kr-us-gsomia-1987.toml")
    note = Note(datetime(2020, 1, 1, tzinfo=UTC), "KOR", NoteType.TERMINATION, 0)
    with pytest.raises(InvalidHistory, match="has no term: it records no termination notice"):
        lifecycle.compile_history(kr_us.with_notes((note,)))
