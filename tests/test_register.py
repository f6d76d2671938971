"""The register and inventory (R8, R9): copies, translations, destruction; reclassification (R6) reaches every copy on both nodes."""

from __future__ import annotations

from nodes import Pair


def test_copies_translations_destruction_and_reclassification(pair: Pair) -> None:
    [item] = pair.share("KOR", "JPN", "군사II급비밀", 1)
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery")
    jpn_analyst, jpn_sa, kor_sa = (
        pair.user("JPN", "analyst"),
        pair.user("JPN", "security_authority"),
        pair.user("KOR", "security_authority"),
    )

    copy = jpn_analyst.post(
        "/records", {"kind": "reproduction", "item_id": item, "location": "Ichigaya ops room safe 3"}
    )
    assert copy.status_code == 201, copy.text
    translation = jpn_analyst.post("/records", {"kind": "translation", "item_id": item, "language": "ja"})
    assert translation.status_code == 201, translation.text
    assert (
        pair.user("JPN", "auditor").post("/records", {"kind": "reproduction", "item_id": item}).status_code == 403
    )  # R7

    register = jpn_sa.get(f"/register/{item}").json()
    assert [c["kind"] for c in register["copies"]] == ["reproduction", "translation"]
    assert {c["marking"] for c in register["copies"]} == {"極秘"}

    # Only the originator reclassifies (R6); the change reaches the recipient and every copy there.
    assert (
        jpn_sa.post("/records", {"kind": "reclassification", "item_id": item, "classification": "秘"}).status_code
        == 403
    )
    down = kor_sa.post("/records", {"kind": "reclassification", "item_id": item, "classification": "군사III급비밀"})
    assert down.status_code == 201, down.text

    def reclassified() -> bool:
        return jpn_sa.get(f"/register/{item}").json()["classification"] == "군사III급비밀"

    pair.wait(reclassified, "the reclassification at the recipient")
    register = jpn_sa.get(f"/register/{item}").json()
    assert register["sealed_classification"] == "군사II급비밀"  # the sealed label is never rewritten
    assert register["marking"] == "秘"
    assert {c["marking"] for c in register["copies"]} == {"秘"}
    assert jpn_analyst.get(f"/items/{item}").json()["marking"] == "秘"
    assert kor_sa.get(f"/register/{item}").json()["classification"] == "군사III급비밀"

    # Destruction is the security authority's and is recorded; the originator learns of copies and destruction.
    copy_id = register["copies"][0]["copy_id"]
    assert jpn_analyst.post("/records", {"kind": "destruction", "item_id": item, "copy_id": copy_id}).status_code == 403
    gone = jpn_sa.post("/records", {"kind": "destruction", "item_id": item, "copy_id": copy_id})
    assert gone.status_code == 201, gone.text
    assert jpn_sa.post("/records", {"kind": "destruction", "item_id": item, "copy_id": copy_id}).status_code == 404
    pair.wait(
        lambda: any(c["destroyed_at"] for c in kor_sa.get(f"/register/{item}").json()["copies"]),
        "the destruction record at the originator",
    )
    assert jpn_sa.post("/records", {"kind": "destruction", "item_id": item}).status_code == 201
    assert jpn_analyst.get(f"/items/{item}").status_code == 404
    assert jpn_analyst.post("/records", {"kind": "reproduction", "item_id": item}).status_code == 403
    # JPN destroyed its holding; the originator's own copy stays (each party destroys what it holds).
    pair.wait(lambda: kor_sa.get(f"/register/{item}").json()["destroyed_by"] == ["JPN"], "JPN's destruction at KOR")
    assert kor_sa.get(f"/register/{item}").json()["item_destroyed"] is False
    assert pair.user("KOR", "analyst").get(f"/items/{item}", purpose="nk-missile").status_code == 200
