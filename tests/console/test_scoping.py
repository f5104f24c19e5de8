"""An ``ewarong`` user sees and touches its own e-warong's data only: another
e-warong's transaction, complaint or stock, by URL or by form, is refused like any
forbidden act (403, nothing changed, ``console.denied``).  Both engines."""

from __future__ import annotations

import json

from tests.console.helpers import ConsoleWorld, audit_tail, fingerprint, last_seq, token_of


def _refused(cw: ConsoleWorld, method: str, path: str, data: dict[str, str] | None = None,
             ) -> None:
    client = cw.client("ewarong")
    if data is not None:
        data = {**data, "csrf": token_of(client, "/")}
    before, seq = fingerprint(cw.world), last_seq(cw.world)
    answer = client.request(method, path, data=data, follow_redirects=False)
    assert answer.status_code == 403, (path, answer.status_code, answer.text[:300])
    assert fingerprint(cw.world) == before
    [denied] = audit_tail(cw.world, seq)
    assert denied.action == "console.denied" and denied.actor == "console:ewarong"
    detail = json.loads(denied.detail)
    assert detail["reason"] == "another e-warong's data" and detail["path"] == path


def test_lists_hold_only_its_own(console: ConsoleWorld) -> None:
    client = console.client("ewarong")
    listing = client.get("/transactions").text
    assert console.own_rrn in listing and console.other_rrn not in listing
    complaints = client.get("/complaints").text
    assert f'/complaints/{console.complaint_own}"' in complaints
    assert f'/complaints/{console.complaint_other}"' not in complaints
    stock = client.get("/stock").text
    assert console.own_mid in stock and console.other_mid not in stock
    assert client.get(f"/transactions/{console.own_rrn}").status_code == 200


def test_another_ewarongs_transaction_is_refused(console: ConsoleWorld) -> None:
    _refused(console, "GET", f"/transactions/{console.other_rrn}")


def test_another_ewarongs_delivery_is_refused(console: ConsoleWorld) -> None:
    _refused(console, "POST", f"/transactions/{console.other_rrn}/deliver", {})


def test_another_ewarongs_complaint_is_refused(console: ConsoleWorld) -> None:
    _refused(console, "GET", f"/complaints/{console.complaint_other}")


def test_a_complaint_about_another_ewarong_is_refused(console: ConsoleWorld) -> None:
    _refused(console, "POST", "/complaints/new", {"mid": console.other_mid, "subject": "x"})
    _refused(console, "POST", "/complaints/new", {"rrn": console.other_rrn, "subject": "x"})


def test_its_own_delivery_and_complaint_go_through(console: ConsoleWorld) -> None:
    client = console.client("ewarong")
    seq = last_seq(console.world)
    answer = client.post(f"/transactions/{console.own_rrn}/deliver",
                         data={"csrf": token_of(client)}, follow_redirects=True)
    assert answer.status_code == 200 and "confirmed" in answer.text
    answer = client.post("/complaints/new", data={"csrf": token_of(client),
                                                  "rrn": console.own_rrn, "subject": "late"},
                         follow_redirects=True)
    assert answer.status_code == 200 and "late" in answer.text
    actions = [(r.actor, r.action) for r in audit_tail(console.world, seq)]
    assert actions == [("console:ewarong", "delivery.confirm"),
                       ("console:ewarong", "complaint.open")]
