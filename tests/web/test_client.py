"""alignkit.web.client over real HTTP on loopback: a script works exactly as a person does."""

from __future__ import annotations

import pytest

from alignkit.web.client import AnnotationClient, ApiError
from tests.web.conftest import PASSWORD


def test_client_login_annotate_and_admin(live):
    url = live["url"]
    with AnnotationClient.login(url, "lead", PASSWORD) as lead:
        token = lead.invite("p", status="active")
        with AnnotationClient.join(url, token, "scripted", PASSWORD) as me:
            assert me.me()["projects"] == {"p": "annotator"}
            n = 0
            while (t := me.next_task("p")) is not None:
                me.save_draft("p", t["id"], {"overall": "A"})
                assert me.open_tasks("p")[0]["draft"] == {"overall": "A"}
                first = me.submit("p", t["id"], {"overall": "A"}, key=f"k{t['id']}")
                assert me.submit("p", t["id"], {"overall": "A"}, key=f"k{t['id']}") == first  # a retry: same answer
                n += 1
            assert n == 6 and me.progress("p")["submitted"] == 6  # admitted, gold_rate 0: the 6 regular tasks
            with pytest.raises(ApiError) as err:
                me.annotators("p")
            assert err.value.status == 403
            api_token = me.new_api_token()
        with AnnotationClient(url, token=api_token) as script:
            assert script.me()["name"] == "scripted"
        rows = {r["annotator"]: r for r in lead.annotators("p")}
        assert rows["scripted"]["n_judgments"] == 6 and rows["scripted"]["n_gold"] == 0
        assert lead.aggregate("p", "cmp", "majority")["tasks"] == 6
        assert len(lead.export("p", "pairs", method="majority")) == 6
