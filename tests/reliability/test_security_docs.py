"""docs/security.md stays true: the metric families and routes it names exist."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _families(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }


def test_every_metric_family_named_in_the_security_page_is_exported(make_app):
    http = make_app().test_client()
    assert http.get("/ls/health").status_code == 200  # the plugin's counters appear after a request
    exported = _families(http.get("/metrics").get_data(as_text=True))
    exported |= _families(http.get("/ls/metrics").get_data(as_text=True))
    exported |= {name.removesuffix("_bucket") for name in exported}
    named = set(re.findall(r"`(sam_[a-z_]+)", DOC.read_text()))
    assert len(named) >= 8
    assert named <= exported, f"named in docs/security.md but not exported: {sorted(named - exported)}"


def test_every_route_named_in_the_security_page_is_served(make_app):
    app = make_app()
    served = {re.sub(r"<[^>]+>", "<id>", rule.rule) for rule in app.url_map.iter_rules()}
    named = {
        re.sub(r"<[^>]+>", "<id>", p)
        for p in re.findall(r"`(?:GET|POST) (/[a-z0-9/_.<>]*)`", DOC.read_text())
    }
    assert len(named) >= 9
    assert named <= served, f"named in docs/security.md but not served: {sorted(named - served)}"
