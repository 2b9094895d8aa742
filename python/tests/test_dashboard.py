"""The CISO dashboard in real headless Chromium (Debian's chromium and chromedriver, over
WebDriver with Selenium): sign-in, the overview's numbers against the ledger's exact
counts, no console errors, sign-out; and, without a browser, what the routes refuse."""

import json
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
    drv.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


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
    assert fetch(url + "/dashboard/api/overview")[0] == 401
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
