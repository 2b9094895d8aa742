"""The CISO dashboard in real headless Chromium (Debian's chromium and chromedriver, over
WebDriver with Selenium): sign-in, the overview's numbers against the ledger's exact
counts, no console errors, sign-out; and, without a browser, what the routes refuse."""

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import Server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parents[2] / "target" / "dashboard-shots"

GRANTED = 7
DENIED = 3


def seed(d) -> None:
    """Known numbers of granted and denied model accesses; names that hold markup."""
    for i in range(GRANTED):
        d.warden("log", "append", "--kind", "model.access", "--event",
                 json.dumps({"user": f"<script>alert({i})</script>", "model": '"><img src=x onerror=alert(1)>'}))
    for i in range(DENIED):
        d.warden("log", "append", "--kind", "model.denied", "--event", json.dumps({"user": f"mallory-{i}"}))


def kinds(d):
    out = d.warden("log", "show", "--json").stdout
    counts = {}
    for e in map(json.loads, out.splitlines()):
        counts[e["kind"]] = counts.get(e["kind"], 0) + 1
    return counts


@pytest.fixture
def dash(ddir):
    seed(ddir)
    ddir.warden("principal", "add", "ciso", "--role", "auditor", "--as", "admin")
    server = Server(ddir)
    try:
        out = ddir.warden("token", "create", "--principal", "ciso", "--scopes", "audit:read",
                          "--expires", "1h", "--as", "admin").stdout
        audit, audit_id = out.strip().splitlines()[-1], out.split()[1]
        other = server.token("ciso", scopes="model:read")
        yield ddir, server, (audit, audit_id), other
    finally:
        server.stop()


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromedriver are needed: run scripts/install-browser (scripts/test does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1280,1800"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def wait_for(drv, cond, what, limit=10.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; page: {drv.current_url}\n{drv.page_source[:2000]}")


def console_errors(drv):
    return [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]


def sign_in(drv, url, token):
    from selenium.webdriver.common.by import By

    drv.get(url + "/dashboard/sign-in")
    drv.find_element(By.ID, "token").send_keys(token)
    submit = drv.find_element(By.CSS_SELECTOR, "form button[type=submit]")
    submit.click()
    # A click returns before the form's answer arrives: wait until the sign-in page
    # has gone, so that what follows reads the answer's page, never the form's.
    wait_for(drv, lambda: gone(submit), "the sign-in form's answer")


def gone(element):
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True


def dd(drv, label):
    return drv.execute_script(
        "for (const dt of document.querySelectorAll('#ledger dt'))"
        " if (dt.textContent === arguments[0]) return dt.nextElementSibling.textContent;"
        " return null;",
        label,
    )


def test_sign_in_overview_counts_no_console_errors_and_sign_out(dash, browser):
    d, server, (audit, _), other = dash
    url = server.url
    SHOTS.mkdir(parents=True, exist_ok=True)

    # Without a session every page sends the browser to sign in.
    browser.get(url + "/dashboard")
    assert browser.current_url == url + "/dashboard/sign-in"
    browser.save_screenshot(str(SHOTS / "sign-in.png"))

    # A token without audit:read is refused, and says why.
    sign_in(browser, url, other)
    assert "audit:read" in browser.find_element("css selector", ".problem").text
    # The browser logs the refusal's 403 as an error; what follows must log none.
    browser.get_log("browser")

    sign_in(browser, url, audit)
    wait_for(browser, lambda: browser.current_url == url + "/dashboard", "the overview")
    wait_for(browser, lambda: browser.execute_script("return document.body.dataset.loaded") == "true",
             "the overview's data")
    assert console_errors(browser) == []

    # The numbers are the ledger's, exactly; the ledger is read after the page (which
    # itself added audit.read entries, none of them accesses).
    # The refused sign-in is itself a denial in the ledger.
    counts = kinds(d)
    granted, denied = counts["model.access"], counts["model.denied"]
    assert (granted, denied) == (GRANTED, DENIED + 1), counts
    assert dd(browser, "Model accesses granted") == str(granted)
    assert dd(browser, "Model accesses denied") == str(denied)
    # The size shown is the ledger's just after the page's last read recorded itself
    # (the live stream's opening, once its first numbers arrived).
    wait_for(browser, lambda: browser.execute_script("return document.body.dataset.updated"), "the live stream")
    reads = [e for e in d.entries("audit.read") if (e.get("event") or {}).get("details", {}).get("op") == "dashboard"]
    assert [r["event"]["details"]["view"] for r in reads] == ["sign-in", "overview", "overview.data", "overview.live"]
    assert dd(browser, "Entries") == str(reads[-1]["index"] + 1)
    data = browser.execute_script("return window.wardenCharts.hours.data.map(s => Array.from(s))")
    assert sum(data[1]) == granted and sum(data[2]) == denied, data
    today = browser.execute_script(
        "return Array.from(document.querySelectorAll('#table-days tbody tr')[0].cells).map(c => c.textContent)")
    assert today[1:3] == [str(granted), str(denied)], today
    browser.save_screenshot(str(SHOTS / "overview.png"))

    # Sign-out ends the session: the cookie it had no longer opens a page.
    cookie = browser.get_cookie("warden_session")["value"]
    browser.find_element("css selector", "header form button").click()
    wait_for(browser, lambda: browser.current_url == url + "/dashboard/sign-in", "the sign-in page")
    status, _, _ = fetch(url + "/dashboard/api/overview", cookie=f"warden_session={cookie}")
    assert status == 401
    assert console_errors(browser) == []


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def fetch(url, method="GET", cookie=None, form=None):
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url, method=method, data=data)
    if cookie:
        req.add_header("Cookie", cookie)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    opener = urllib.request.build_opener(NoRedirect)
    try:
        r = opener.open(req, timeout=10)
        return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def signed_in_cookie(url, token):
    """Signs in as a browser would (the form's cookie and token); returns the session cookie."""
    status, headers, body = fetch(url + "/dashboard/sign-in")
    assert status == 200
    nonce = headers["set-cookie"].split("warden_signin=", 1)[1].split(";", 1)[0]
    assert f'value="{nonce}"' in body
    status, headers, _ = fetch(url + "/dashboard/sign-in", "POST", cookie=f"warden_signin={nonce}",
                               form={"token": token, "csrf": nonce})
    assert status == 303 and headers["location"] == "/dashboard", (status, headers)
    set_cookie = headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    return set_cookie.split(";", 1)[0]


def test_routes_refuse_without_a_session_or_csrf_token(dash):
    d, server, (audit, audit_id), _ = dash
    url = server.url
    # No session: pages go to sign-in, data is 401.
    for path in ("/dashboard", "/dashboard/"):
        status, headers, _ = fetch(url + path)
        assert status in (303, 308) and headers["location"].startswith("/dashboard"), (path, status)
    # Every page and download goes to sign-in; every data read and action is 401.
    for path in ("/dashboard/incidents", "/dashboard/models", "/dashboard/access-review",
                 "/dashboard/access-review.csv", "/dashboard/reports", "/dashboard/reports/file/week.json",
                 "/dashboard/reports/file/week.json.sig"):
        status, headers, _ = fetch(url + path)
        assert status == 303 and headers["location"] == "/dashboard/sign-in", (path, status)
    for path in ("/dashboard/api/overview", "/dashboard/api/live", "/dashboard/api/incidents",
                 "/dashboard/api/models", "/dashboard/api/access-review", "/dashboard/api/reports"):
        assert fetch(url + path)[0] == 401, path
    for path in ("/dashboard/api/incidents/1/ack", "/dashboard/api/reports/generate",
                 "/dashboard/api/access-review/sign-off"):
        assert post_json(url + path, "", {"note": "x"})[0] == 401, path
    # A strict policy on every dashboard answer.
    _, headers, _ = fetch(url + "/dashboard/sign-in")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    # A sign-in not posted from the form (no form cookie) is refused.
    status, _, _ = fetch(url + "/dashboard/sign-in", "POST", form={"token": audit, "csrf": "0" * 64})
    assert status == 403
    cookie = signed_in_cookie(url, audit)
    assert fetch(url + "/dashboard/api/overview", cookie=cookie)[0] == 200
    # Sign-out without the session's CSRF token is refused, and the session stays.
    status, _, _ = fetch(url + "/dashboard/sign-out", "POST", cookie=cookie, form={"csrf": "0" * 64})
    assert status == 403
    assert fetch(url + "/dashboard/api/overview", cookie=cookie)[0] == 200
    # Revoking the token ends the session on its next request.
    d.warden("token", "revoke", audit_id, "--as", "admin")
    assert fetch(url + "/dashboard/api/overview", cookie=cookie)[0] == 401


def set_config(d, old, new):
    cfg = d.data / "warden.toml"
    text = cfg.read_text()
    assert old in text, old
    cfg.write_text(text.replace(old, new))


def auditor_server(d):
    """`warden serve --auditor-key`: the dashboard then shows incidents' severity and the
    verification's findings."""
    return Server(d, ("--auditor-key", str(d.auditor)))


def browser_sign_in(drv, url, token):
    sign_in(drv, url, token)
    wait_for(drv, lambda: drv.execute_script("return document.body && document.body.dataset.loaded") == "true",
             "the overview's data")


def test_an_incident_from_a_burst_of_bad_tokens_appears_live(ddir, browser):
    set_config(ddir, "brute_force_failures = 20", "brute_force_failures = 5")
    ddir.warden("principal", "add", "ciso", "--role", "auditor", "--as", "admin")
    server = auditor_server(ddir)
    try:
        token = server.token("ciso", scopes="audit:read")
        browser_sign_in(browser, server.url, token)
        assert browser.find_element("css selector", "#table-incidents tbody").text.startswith("none")
        # Six bad tokens from one address: a brute force (threshold 5).
        for i in range(6):
            status, _, _ = fetch_bearer(server.url + "/v1/models", f"wdn_{i:064x}")
            assert status == 401
        sent = time.monotonic()
        row = wait_for(
            browser,
            lambda: browser.execute_script(
                "const r = document.querySelector('#table-incidents tbody tr');"
                " return r && r.cells[0].textContent !== 'none' ? r.cells[0].textContent + ':' + r.cells[1].textContent : null"),
            "the incident on the page",
            limit=5.0,
        )
        took = time.monotonic() - sent
        print(f"incident shown {took:.2f} s after the burst")
        assert row == "HIGH:1", row
        assert took <= 2.0, f"the incident took {took:.2f} s to appear"
        assert console_errors(browser) == []
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / "overview-incident.png"))

        # Acknowledging it from its page writes an incident.ack entry naming it; the
        # same request without the session's CSRF token is refused.
        browser.get(server.url + "/dashboard/incidents")
        first = wait_for(browser, lambda: browser.execute_script(
            "const r = document.querySelector('#table-incident-list tbody tr');"
            " return r ? Array.from(r.cells).map(c => c.textContent) : null"), "the incident list")
        index = int(first[0])
        assert first[2] == "HIGH" and first[-1] == "open", first
        cookie = "warden_session=" + browser.get_cookie("warden_session")["value"]
        status, _, _ = post_json(server.url + f"/dashboard/api/incidents/{index}/ack", cookie, {"note": "forged"})
        assert status == 403
        browser.find_element("css selector", "#table-incident-list tbody tr").click()
        browser.find_element("id", "ack-note").send_keys("blocked the address at the firewall")
        browser.find_element("css selector", "#ack button").click()
        wait_for(browser, lambda: "acknowledged" in browser.find_element("id", "status").text, "the acknowledgement")
        browser.save_screenshot(str(SHOTS / "incidents.png"))
        assert not browser.find_element("id", "ack").is_displayed(), "acknowledged: the form is gone"
        acks = ddir.entries("incident.ack")
        assert [a["event"]["details"]["incident"] for a in acks] == [index], acks
        assert acks[0]["event"]["details"]["note"] == "blocked the address at the firewall"
        assert console_errors(browser) == []
    finally:
        server.stop()


def fetch_bearer(url, token):
    req = urllib.request.Request(url)
    req.add_header("Authorization", f"Bearer {token}")
    try:
        r = urllib.request.urlopen(req, timeout=10)
        return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def test_a_tampered_ledger_turns_verification_red_naming_the_index(ddir, browser):
    seed(ddir)
    set_config(ddir, "verify_every_secs = 86400", "verify_every_secs = 3")
    ddir.warden("principal", "add", "ciso", "--role", "auditor", "--as", "admin")
    server = auditor_server(ddir)
    try:
        token = server.token("ciso", scopes="audit:read")
        # Before the first scheduled run: one byte of entry 3's ciphertext changes.
        log = ddir.data / "logs" / "model_access.jsonl"
        lines = log.read_bytes().split(b"\n")
        line = lines[3]
        at = line.index(b'"encrypted":"') + len(b'"encrypted":"')
        lines[3] = line[:at] + (b"b" if line[at:at + 1] == b"a" else b"a") + line[at + 1:]
        log.write_bytes(b"\n".join(lines))
        browser_sign_in(browser, server.url, token)
        text = wait_for(
            browser,
            lambda: browser.execute_script(
                "const v = document.getElementById('verification');"
                " return v.className === 'bad' ? v.textContent : null"),
            "verification to turn red",
            limit=15.0,
        )
        assert "index 3" in text, text
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / "overview-tampered.png"))
    finally:
        server.stop()


def post_json(url, cookie, body, headers=None):
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    req.add_header("Cookie", cookie)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        r = urllib.request.urlopen(req, timeout=10)
        return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'


def test_names_holding_markup_are_shown_as_text(ddir, browser):
    ddir.warden("log", "append", "--kind", "incident", "--event", json.dumps({
        "user": SCRIPT, "model": IMG, "user_agent": IMG + SCRIPT,
        "details": {"severity": "HIGH", "detector": "rate", "summary": IMG},
    }))
    ddir.warden("principal", "add", "ciso", "--role", "auditor", "--as", "admin")
    server = auditor_server(ddir)
    try:
        browser_sign_in(browser, server.url, server.token("ciso", scopes="audit:read"))
        browser.get(server.url + "/dashboard/incidents")
        cells = wait_for(browser, lambda: browser.execute_script(
            "const r = document.querySelector('#table-incident-list tbody tr');"
            " return r ? Array.from(r.cells).map(c => c.textContent) : null"), "the incident list")
        assert cells[4] == SCRIPT and cells[6] == IMG, cells
        browser.find_element("css selector", "#table-incident-list tbody tr").click()
        shown = browser.execute_script("return document.getElementById('detail-fields').textContent")
        assert SCRIPT in shown and IMG + SCRIPT in shown, shown
        # Shown, never parsed: no element came from the names, and nothing ran.
        assert browser.execute_script("return document.querySelectorAll('main img, main script').length") == 0
        assert console_errors(browser) == []
    finally:
        server.stop()


def report_cells(drv):
    """Per report row: its name, its cells' text, and each file's signature verdict."""
    return drv.execute_script(
        "return Array.from(document.querySelectorAll('#table-reports tbody tr[data-report]')).map(tr => ({"
        " name: tr.dataset.report, cells: Array.from(tr.cells).map(c => c.textContent),"
        " files: Object.fromEntries(Array.from(tr.querySelectorAll('li[data-file]'))"
        "   .map(li => [li.dataset.file, li.dataset.signature]))}))")


def page_fetch(drv, path):
    """GET `path` from the page (its session cookie), as text; status and body."""
    return drv.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        " fetch(arguments[0], {credentials: 'same-origin'})"
        "  .then(async r => done([r.status, await r.text()])).catch(e => done([0, String(e)]));",
        path,
    )


def test_reports_archive_checks_signatures_downloads_and_generates(ddir, browser, tmp_path):
    seed(ddir)
    reports = ddir.data / "reports"
    ddir.warden("report", "--out", str(reports / "good.json"))
    ddir.warden("report", "--format", "csv", "--out", str(reports / "good.csv"))
    ddir.warden("report", "--out", str(reports / "tampered.json"))
    # One byte of a signed report changes; another report was never signed.
    tampered = reports / "tampered.json"
    signed = tampered.read_bytes()
    assert b'"granted": 7' in signed
    tampered.write_bytes(signed.replace(b'"granted": 7', b'"granted": 9', 1))
    (reports / "lonely.html").write_text("<p>unsigned</p>")
    good = json.loads((reports / "good.json").read_text())
    ddir.warden("principal", "add", "ciso", "--role", "auditor", "--as", "admin")
    server = Server(ddir)
    try:
        url = server.url
        browser_sign_in(browser, url, server.token("ciso", scopes="audit:read"))
        browser.get(url + "/dashboard/reports")
        wait_for(browser, lambda: browser.execute_script("return document.body.dataset.loaded") == "true",
                 "the reports page")
        rows = {r["name"]: r for r in report_cells(browser)}
        assert rows["good"]["files"] == {"good.json": "valid", "good.csv": "valid"}, rows["good"]
        assert rows["tampered"]["files"] == {"tampered.json": "invalid"}, rows["tampered"]
        # A report that fails its check shows none of its figures.
        assert rows["tampered"]["cells"][1:8] == [""] * 7, rows["tampered"]
        assert rows["lonely"]["files"] == {"lonely.html": "missing"}, rows["lonely"]
        # The totals shown are the signed report's.
        cells = rows["good"]["cells"]
        assert cells[3:6] == [str(good["entries"]["total"]), str(GRANTED), str(DENIED)], cells
        assert good["accesses"]["granted"] == GRANTED
        assert console_errors(browser) == []

        # A download is the archived bytes, and its signature checks with `warden report verify`.
        status, body = page_fetch(browser, "/dashboard/reports/file/good.json")
        assert status == 200 and body == (reports / "good.json").read_text()
        status, sig = page_fetch(browser, "/dashboard/reports/file/good.json.sig")
        assert status == 200
        (tmp_path / "got.json").write_text(body)
        (tmp_path / "got.json.sig").write_text(sig)
        ddir.warden("report", "verify", str(tmp_path / "got.json"))
        # Nothing outside the archive is served.
        for bad in ("..%2Fwarden.toml", "verify.state", "good.txt", "..", "%2Fetc%2Fpasswd"):
            assert page_fetch(browser, "/dashboard/reports/file/" + bad)[0] == 404, bad
        # The browser logs those 404s as errors; what follows must log none.
        browser.get_log("browser")
        downloads = [e["event"]["details"].get("file") for e in ddir.entries("audit.read")
                     if e["event"]["details"].get("view") == "reports.download"]
        assert downloads == ["good.json", "good.json.sig"], downloads

        # "Generate now" without the session's CSRF token is refused and writes nothing.
        cookie = "warden_session=" + browser.get_cookie("warden_session")["value"]
        status, _, _ = post_json(url + "/dashboard/api/reports/generate", cookie, {})
        assert status == 403
        assert ddir.entries("report.generated") == []
        # From the page: signed files in the scheduled formats, an entry naming who asked.
        browser.find_element("css selector", "#generate button").click()
        wait_for(browser, lambda: "Report generated" in browser.find_element("id", "status").text,
                 "the new report", limit=30.0)
        made = ddir.entries("report.generated")
        assert len(made) == 1 and made[0]["event"]["details"]["requested_by"] == "ciso", made
        names = [Path(f["file"]).name for f in made[0]["event"]["details"]["files"]]
        assert sorted(Path(n).suffix for n in names) == [".html", ".json"], names
        rows = {r["name"]: r for r in report_cells(browser)}
        stem = Path(names[0]).stem
        assert rows[stem]["files"] == {n: "valid" for n in names}, rows[stem]
        for n in names:
            ddir.warden("report", "verify", str(reports / n))
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / "reports.png"))
        assert console_errors(browser) == []
    finally:
        server.stop()


def table_rows(drv, table_id):
    return drv.execute_script(
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr')).map(tr => ({"
        " data: Object.assign({}, tr.dataset), cls: tr.className,"
        " cells: Array.from(tr.cells).map(c => c.textContent)}))", table_id)


def iso(secs):
    import datetime

    return datetime.datetime.fromtimestamp(secs, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def test_models_and_access_review_match_the_registry_and_the_ledger(ddir, browser):
    import csv
    import hashlib
    import io

    import warden
    from conftest import Registry

    reg = Registry(ddir, "local")
    # A second version, revoked; a grant on every model, used on one.
    reg.alice().register("fraud-detector", "1.5.0", reg.model_file, provenance={"code_commit": "def456"})
    reg.revoke("fraud-detector", "1.5.0", "weights leaked")
    ddir.warden("principal", "grant", "scorer", "--model", "*", "--actions", "load",
                "--expires", "30d", "--as", "admin")
    ddir.warden("principal", "add", "ciso", "--role", "auditor", "--as", "admin")
    server = auditor_server(ddir)
    try:
        url = server.url
        # The scorer loads with a token broader than it needs; eve is refused.
        scorer = warden.SecureModelManager(url=url, token=server.token("scorer", "model:load,model:read,model:admin"))
        for _ in range(2):
            scorer.load("fraud-detector", "production")
        ddir.warden("principal", "add", "eve", "--role", "ml-engineer", "--as", "admin")
        eve = warden.SecureModelManager(url=url, token=server.token("eve", "model:load"))
        with pytest.raises(warden.AccessDenied):
            eve.load("fraud-detector", "1.4.0")

        browser_sign_in(browser, url, server.token("ciso", scopes="audit:read"))
        browser.get(url + "/dashboard/models")
        wait_for(browser, lambda: browser.execute_script("return document.body.dataset.loaded") == "true",
                 "the models page")
        rows = {r["data"]["version"]: r for r in table_rows(browser, "table-models")}
        assert set(rows) == {"fraud-detector@1.4.0", "fraud-detector@1.5.0"}, rows
        current, revoked = rows["fraud-detector@1.4.0"], rows["fraud-detector@1.5.0"]
        assert current["cells"][2] == "production" and current["cells"][4] == "alice", current
        assert current["cells"][1] == "1.4.0 (production)" and current["cells"][5] == "bob / bob", current
        assert "abc123" in current["cells"][6]
        assert revoked["cls"] == "flagged" and "revoked" in revoked["cells"][2], revoked
        assert table_rows(browser, "table-revoked")[0]["cells"] == ["fraud-detector", "1.5.0", "weights leaked"]
        # Who accessed 1.4.0: exactly the ledger's granted and denied accesses, per user.
        per_user = {}
        for kind, i in (("model.access", 0), ("model.denied", 1)):
            for e in ddir.entries(kind):
                ev = e["event"]
                if ev.get("model") == "fraud-detector" and ev.get("version") == "1.4.0":
                    per_user.setdefault(ev["user"], [0, 0])[i] += 1
        want = "; ".join(f"{u} ({g} granted" + (f", {n} denied" if n else "") + ")"
                         for u, (g, n) in sorted(per_user.items()))
        assert per_user["scorer"][0] == 2 and per_user["eve"][1] >= 1, per_user
        assert current["cells"][7] == want, (current["cells"][7], want)
        root = ddir.warden("model", "show", "fraud-detector@1.4.0", "--json", "--as", "admin").stdout
        assert browser.execute_script(
            "return document.querySelector('tr[data-version=\"fraud-detector@1.4.0\"]').cells[3].title"
        ).split("\n")[0] == json.loads(root)["root_digest"]
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / "models.png"))
        assert console_errors(browser) == []

        browser.get(url + "/dashboard/access-review")
        wait_for(browser, lambda: browser.execute_script("return document.body.dataset.loaded") == "true",
                 "the access review")
        review = table_rows(browser, "table-review")
        flagged = {(r["data"]["principal"], r["data"]["kind"], r["cells"][1]): r["cells"][7]
                   for r in review if r["data"]["flag"]}
        star = next(v for (p, k, _), v in flagged.items() if p == "scorer" and k == "grant")
        assert star == "broader than used: used on fraud-detector", flagged
        tok = next(v for (p, k, _), v in flagged.items() if p == "scorer" and k == "token")
        assert "model:admin" in tok and "model:load" not in tok, tok
        assert console_errors(browser) == []

        # The CSV export holds exactly the registry's principals, roles, grants and tokens.
        status, text = page_fetch(browser, "/dashboard/access-review.csv")
        assert status == 200
        got = list(csv.DictReader(io.StringIO(text)))
        principals = json.loads(ddir.warden("principal", "list", "--json", "--as", "admin").stdout)
        tokens = json.loads(ddir.warden("token", "list", "--json", "--as", "admin").stdout)
        assert {r["principal"] for r in got if r["kind"] == "principal"} == {p["name"] for p in principals}
        assert sorted((r["principal"], r["name"]) for r in got if r["kind"] == "role") == sorted(
            (p["name"], role) for p in principals for role in p["roles"])
        assert sorted((r["principal"], r["model"], r["actions"], r["expires_at"]) for r in got
                      if r["kind"] == "grant") == sorted(
            (p["name"], g["model"], g["action"], iso(g["expires_at"])) for p in principals for g in p["grants"])
        assert sorted((r["principal"], r["name"], r["actions"], r["expires_at"]) for r in got
                      if r["kind"] == "token") == sorted(
            (t["principal"], t["id"], " ".join(t["scopes"]), iso(t["expires_at"])) for t in tokens)

        # The reviewer's sign-off is a ledger entry naming them and the export's digest.
        cookie = "warden_session=" + browser.get_cookie("warden_session")["value"]
        assert post_json(url + "/dashboard/api/access-review/sign-off", cookie, {"note": "forged"})[0] == 403
        browser.find_element("id", "signoff-note").send_keys("Q4 review: scorer's admin scope to be dropped")
        browser.find_element("css selector", "#signoff button").click()
        wait_for(browser, lambda: "Signed off" in browser.find_element("id", "signoff-result").text,
                 "the sign-off")
        signed = ddir.entries("access.review")
        assert len(signed) == 1 and signed[0]["event"]["user"] == "ciso", signed
        details = signed[0]["event"]["details"]
        assert details["note"] == "Q4 review: scorer's admin scope to be dropped"
        assert details["principals"] == len(principals) and details["tokens"] == len(tokens)
        # Uses are given to the day, so the export signed off is the one fetched (or,
        # across midnight UTC, the one fetched after).
        _, again = page_fetch(browser, "/dashboard/access-review.csv")
        sha = lambda t: hashlib.sha256(t.encode()).hexdigest()  # noqa: E731
        assert details["csv_sha256"] in (sha(text), sha(again)), details
        browser.save_screenshot(str(SHOTS / "access-review.png"))
        assert console_errors(browser) == []
        assert ddir.warden("verify").returncode == 0
    finally:
        server.stop()


AXE = Path("/opt/warden-test/npm/node_modules/axe-core/axe.min.js")
PAGES = ["/dashboard", "/dashboard/incidents", "/dashboard/models", "/dashboard/access-review",
         "/dashboard/reports"]


def axe_violations(drv):
    """axe-core's WCAG 2 A and AA rules on the page as it stands: `rule: targets` per violation."""
    drv.execute_script(AXE.read_text())
    return drv.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        " axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        "  .then(r => done(r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))))"
        "  .catch(e => done(['axe failed: ' + e]));")


def focused(drv):
    return drv.execute_script(
        "const e = document.activeElement;"
        " return e ? (e.id || e.textContent.trim().slice(0, 40) || e.tagName) : null")


def test_every_page_passes_axe_and_works_from_the_keyboard(ddir, browser):
    from selenium.webdriver.common.keys import Keys

    if not AXE.exists():
        pytest.fail("axe-core is needed: run scripts/install-browser (scripts/test does)")
    from conftest import Registry

    Registry(ddir, "local")
    ddir.warden("report", "--out", str(ddir.data / "reports" / "week.json"))
    ddir.warden("log", "append", "--kind", "incident", "--event", json.dumps({
        "user": "mallory", "details": {"severity": "HIGH", "detector": "rate", "summary": "burst"}}))
    ddir.warden("principal", "add", "ciso", "--role", "auditor", "--as", "admin")
    server = auditor_server(ddir)
    try:
        url = server.url
        token = server.token("ciso", scopes="audit:read")
        # Sign in with the keyboard alone: the token field takes focus, Enter submits.
        browser.get(url + "/dashboard/sign-in")
        assert axe_violations(browser) == []
        body = browser.find_element("tag name", "body")
        body.send_keys(Keys.TAB)
        assert focused(browser) == "token"
        browser.switch_to.active_element.send_keys(token + Keys.ENTER)
        wait_for(browser, lambda: browser.execute_script("return document.body.dataset.loaded") == "true",
                 "the overview")
        for path in PAGES:
            browser.get(url + path)
            wait_for(browser, lambda: browser.execute_script("return document.body.dataset.loaded") == "true",
                     path)
            assert axe_violations(browser) == [], path
            # The first Tab reaches "Skip to content", which moves focus to the page's content.
            browser.find_element("tag name", "body").send_keys(Keys.TAB)
            assert focused(browser) == "Skip to content", path
            browser.switch_to.active_element.send_keys(Keys.ENTER)
            assert focused(browser) == "main", path
        # From the navigation, by keyboard: Tab to "Incidents", Enter, then a row opens its detail.
        browser.get(url + "/dashboard")
        wait_for(browser, lambda: browser.execute_script("return document.body.dataset.loaded") == "true",
                 "the overview")
        for _ in range(8):
            browser.switch_to.active_element.send_keys(Keys.TAB)
            if focused(browser) == "Incidents":
                break
        assert focused(browser) == "Incidents"
        browser.switch_to.active_element.send_keys(Keys.ENTER)
        wait_for(browser, lambda: browser.current_url == url + "/dashboard/incidents", "the incidents page")
        wait_for(browser, lambda: browser.execute_script("return document.body.dataset.loaded") == "true",
                 "the incident list")
        browser.execute_script("document.querySelector('#table-incident-list tbody tr').focus()")
        browser.switch_to.active_element.send_keys(Keys.ENTER)
        assert browser.find_element("id", "detail").is_displayed()
        assert focused(browser) == "h-detail"
        assert axe_violations(browser) == []
        assert console_errors(browser) == []
        # The check itself can fail: a form field without a label is a violation.
        browser.execute_script("document.getElementById('main').append(document.createElement('input'))")
        assert any(v.startswith("label:") for v in axe_violations(browser))
    finally:
        server.stop()


IDP = Path(__file__).with_name("oidc_idp.mjs")
OIDC_PROVIDER = Path("/opt/warden-test/npm/node_modules/oidc-provider/lib/index.js")


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def idp_sign_in(drv, login):
    """The provider's own pages: its login form, then its consent."""
    wait_for(drv, lambda: drv.find_elements("css selector", "input[name=login]"), "the provider's login page")
    drv.find_element("css selector", "input[name=login]").send_keys(login)
    drv.find_element("css selector", "input[name=password]").send_keys("any")
    drv.find_element("css selector", "button[type=submit]").click()
    # Consent, the first time this browser signs in to the client.
    from selenium.common.exceptions import StaleElementReferenceException

    end = time.monotonic() + 10
    while time.monotonic() < end and "/dashboard" not in drv.current_url:
        try:
            buttons = drv.find_elements("css selector", "button[type=submit]")
            if buttons and "interaction" in drv.current_url:
                buttons[0].click()
        except StaleElementReferenceException:
            pass  # the page moved on while we looked
        time.sleep(0.1)


def test_sign_in_through_the_identity_provider(ddir, browser, monkeypatch):
    import subprocess

    if not OIDC_PROVIDER.exists():
        pytest.fail("oidc-provider is needed: run scripts/install-browser (scripts/test does)")
    idp_port, port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    url = f"http://127.0.0.1:{port}"
    redirect = url + "/dashboard/sign-in/oidc/callback"
    env = dict(os.environ, PORT=str(idp_port), REDIRECT=redirect, AUDIENCE="https://warden.test/api",
               OIDC_PROVIDER=str(OIDC_PROVIDER))
    idp = subprocess.Popen(["node", str(IDP)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    server = None
    try:
        for line in idp.stdout:
            if "listening on" in line:
                break
        else:
            pytest.fail("the identity provider did not start")
        cfg = ddir.data / "warden.toml"
        cfg.write_text(cfg.read_text() + f"""
[jwt]
issuer = "{issuer}"
audience = "https://warden.test/api"
jwks = "{issuer}/jwks"

[oidc]
client_id = "warden-dashboard"
client_secret_env = "WARDEN_TEST_OIDC_SECRET"
redirect_uri = "{redirect}"
resource = "https://warden.test/api"
""")
        monkeypatch.setenv("WARDEN_TEST_OIDC_SECRET", "dashboard-secret")
        ddir.warden("principal", "add", "ciso", "--role", "auditor", "--as", "admin")
        server = Server(ddir, listen=f"127.0.0.1:{port}")

        browser.get(url + "/dashboard/sign-in")
        browser.find_element("id", "oidc").click()
        idp_sign_in(browser, "ciso")
        wait_for(browser, lambda: browser.current_url == url + "/dashboard", "the overview")
        wait_for(browser, lambda: browser.execute_script("return document.body.dataset.loaded") == "true",
                 "the overview's data")
        # The session holds the provider's JWT for Warden: the sign-in is the audit
        # action's, recorded with the JWT as the credential.
        signed = [e for e in ddir.entries("audit.read")
                  if (e["event"].get("details") or {}).get("view") == "sign-in"]
        assert len(signed) == 1 and signed[0]["event"]["user"] == "ciso", signed
        assert signed[0]["event"]["credential"].startswith("jwt:"), signed
        browser.get_log("browser")  # the provider's pages' own noise
        browser.get(url + "/dashboard/incidents")
        wait_for(browser, lambda: browser.execute_script("return document.body.dataset.loaded") == "true",
                 "the incidents page")
        assert console_errors(browser) == []

        # A callback this browser did not start is refused, and opens nothing.
        status, _, body = fetch(url + "/dashboard/sign-in/oidc/callback?code=forged&state=" + "0" * 64)
        assert status == 403 and "not started from this browser" in body

        # Someone the provider knows but Warden does not is refused.
        browser.find_element("css selector", "header form button").click()
        browser.delete_all_cookies()
        browser.get(url + "/dashboard/sign-in")
        browser.find_element("id", "oidc").click()
        idp_sign_in(browser, "nobody")
        wait_for(browser, lambda: browser.find_elements("css selector", ".problem"), "the refusal")
        assert "refused" in browser.find_element("css selector", ".problem").text
        assert browser.get_cookie("warden_session") is None
    finally:
        if server is not None:
            server.stop()
        idp.terminate()
        idp.wait(timeout=10)
