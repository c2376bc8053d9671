#!/usr/bin/env python3
"""Drives the web console in Debian's headless Chromium (Selenium), one step
per run, for tests/console/console_browser_test.cc. Each person has their own
browser profile (--profile), so their session cookie, pinned ledger key and
last verified checkpoint carry from one step to the next as they would in
their browser. Prints one JSON object: what the step saw.

Steps:
  sign-in       --token-file F [--ledger-key K]
  request       --resource R --duration D --reason TEXT
  approve       --request N [--screenshot PNG]
  revoke        --grant N --reason TEXT
  inbox         (the request ids offered for review, and one's own offered as break-glass)
  break-glass   --request N --reason TEXT [--screenshot PNG]
  timeline      --grant N [--screenshot PNG] [--expect-failure]
  sign-out      (prints the cookie it held, for the test to replay)
  layout        [--screenshot PNG] (each section fits the window's width)
  live-tail     --expect TEXT --ready-file F (the audit page's live tail shows it, verified)
  csp           (an inline script must be blocked)
  csrf          --attacker-url URL (a cross-site form post)
  proof-vectors --vectors DIR (verify/merkle.js against the shared vectors)
  checkpoints   --cases FILE (verify/checkpoint.js against notes signed in C++)
"""
import argparse
import glob
import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

WAIT_S = 30


def browser(profile, width=1280, height=800):
    o = webdriver.ChromeOptions()
    for a in [
        "--headless=new",
        "--no-sandbox",  # runs as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",  # the collector's self-signed test certificate
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-breakpad",  # no crash reports outside the profile
        "--disable-crash-reporter",
    ]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    if width < 500:  # narrower than a headless window goes: a phone's viewport
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                          {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
    return d


def wait_for(d, condition, what, timeout=WAIT_S):
    try:
        return WebDriverWait(d, timeout).until(condition)
    except TimeoutException:
        raise SystemExit(f"timed out waiting for {what}; page says: {d.find_element(By.TAG_NAME, 'main').text[:2000]}")


def open_console(d, url, path="#/"):
    d.get(url + "/" + path)
    wait_for(d, lambda d: "Loading" not in d.find_element(By.ID, "view").text, "the console to load")


def signed_in(d):
    return not d.find_element(By.ID, "sign-out").get_attribute("hidden")


def step_sign_in(d, a):
    token = open(a.token_file).read().strip()
    open_console(d, a.url)
    if signed_in(d):
        return {"signed_in": True, "already": True}
    d.find_element(By.ID, "token").send_keys(token)
    if a.ledger_key:
        key = d.find_element(By.ID, "ledger-key")
        key.clear()
        key.send_keys(a.ledger_key)
    d.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    wait_for(d, lambda d: signed_in(d), "the sign-in to complete")
    # The token must be nowhere the browser keeps URLs: not in the address,
    # the history, or any resource fetched.
    urls = [d.current_url] + d.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat(performance.getEntriesByType('navigation').map(e => e.name))")
    storage = d.execute_script("return JSON.stringify(Object.assign({}, localStorage, sessionStorage))")
    return {
        "signed_in": True,
        "who": d.find_element(By.ID, "who").text,
        "token_in_urls": any(token in u for u in urls),
        "token_in_storage": token in storage,
        "urls": len(urls),
    }


def step_request(d, a):
    open_console(d, a.url, "#/request")
    d.find_element(By.ID, "resource").send_keys(a.resource)
    duration = d.find_element(By.ID, "duration")
    duration.clear()
    duration.send_keys(a.duration)
    d.find_element(By.ID, "reason").send_keys(a.reason)
    d.find_element(By.CSS_SELECTOR, "#request-form button[type=submit]").click()
    ok = wait_for(d, ec.presence_of_element_located((By.CSS_SELECTOR, "#request-form .notice")), "the request's answer")
    text = ok.text
    if "Not requested" in text:
        raise SystemExit(text)
    request_id = int(text.split("Request ")[1].split(" ")[0])
    wait_for(d, ec.presence_of_element_located((By.CSS_SELECTOR, f"#my-requests tr[data-request='{request_id}']")), "the request in the list")
    return {"request_id": request_id, "notice": text}


def step_approve(d, a):
    open_console(d, a.url, "#/inbox")
    card = wait_for(d, ec.presence_of_element_located((By.CSS_SELECTOR, f"#inbox article[data-request='{a.request}']")), "the request in the inbox")
    text = card.text
    if a.screenshot:
        d.save_screenshot(a.screenshot)
    # Keyboard only: focus the comment, type, tab to Approve, press Enter.
    comment = card.find_element(By.CSS_SELECTOR, f"#comment-{a.request}")
    comment.send_keys("looks right")
    card.find_element(By.CSS_SELECTOR, "button.approve").send_keys("\n")
    done = wait_for(d, lambda d: card.find_element(By.CSS_SELECTOR, ".notice"), "the approval's answer")
    answer = done.text
    if "grant" not in answer:
        raise SystemExit(f"approval failed: {answer}")
    grant_id = int(answer.split("grant ")[1].split(" ")[0])
    return {"grant_id": grant_id, "card": text}


def step_inbox(d, a):
    # What this person's inbox offers: others' requests to review, and
    # their own offered as break-glass (each by id).
    open_console(d, a.url, "#/inbox")
    wait_for(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#inbox > *"), "the inbox")
    ids = lambda sel, attr: [int(e.get_attribute(attr)) for e in d.find_elements(By.CSS_SELECTOR, sel)]
    return {"review": ids("#inbox article[data-request]", "data-request"),
            "own_break_glass": ids("#inbox article[data-own-request]", "data-own-request"),
            "count": d.find_element(By.ID, "inbox-count").text}


def step_break_glass(d, a):
    open_console(d, a.url, "#/inbox")
    card = wait_for(d, ec.presence_of_element_located((By.CSS_SELECTOR, f"article[data-own-request='{a.request}']")),
                    "one's own request offered as break-glass")
    text = card.text
    # Without a reason it is not sent.
    card.find_element(By.CSS_SELECTOR, "button.glass-approve").click()
    refused = wait_for(d, lambda d: card.find_element(By.CSS_SELECTOR, ".notice"), "the missing reason's notice").text
    card.find_element(By.CSS_SELECTOR, f"#glass-reason-{a.request}").send_keys(a.reason)
    card.find_element(By.CSS_SELECTOR, "button.glass-approve").click()
    done = wait_for(d, lambda d: "grant" in card.find_element(By.CSS_SELECTOR, ".notice").text and
                    card.find_element(By.CSS_SELECTOR, ".notice"), "the break-glass approval").text
    grant_id = int(done.split("grant ")[1].split(" ")[0])
    if a.screenshot:
        d.save_screenshot(a.screenshot)
    open_console(d, a.url, "#/grants")
    grant = wait_for(d, ec.presence_of_element_located((By.CSS_SELECTOR, f"article[data-grant='{grant_id}']")), "the grant")
    return {"grant_id": grant_id, "card": text, "without_reason": refused, "grant_card": grant.text,
            "grant_marked": "glass" in grant.get_attribute("class")}


def step_revoke(d, a):
    open_console(d, a.url, "#/grants")
    card = wait_for(d, ec.presence_of_element_located((By.CSS_SELECTOR, f"article[data-grant='{a.grant}']")), "the grant")
    text = card.text
    card.find_element(By.CSS_SELECTOR, f"#revoke-reason-{a.grant}").send_keys(a.reason)
    card.find_element(By.CSS_SELECTOR, "button.revoke").click()
    done = wait_for(d, lambda d: card.find_element(By.CSS_SELECTOR, ".notice"), "the revocation's answer")
    if "revoked" not in done.text:
        raise SystemExit(f"revocation failed: {done.text}")
    return {"revoked": a.grant, "card": text}


def step_timeline(d, a):
    started = time.time()
    open_console(d, a.url, f"#/grant/{a.grant}")
    status = wait_for(d, lambda d: d.find_element(By.ID, "timeline-status").get_attribute("data-total") and
                      d.find_element(By.ID, "timeline-status"), "the timeline's verification", timeout=120)
    wall_ms = int((time.time() - started) * 1000)
    items = d.find_elements(By.CSS_SELECTOR, "#timeline li")
    entries = []
    for li in items:
        m = li.find_element(By.CSS_SELECTOR, ".mark")
        entries.append({
            "index": int(li.get_attribute("data-index")),
            "summary": li.find_element(By.CSS_SELECTOR, ".summary").text,
            "verified": m.get_attribute("data-verified"),
            "why": m.text if m.get_attribute("data-verified") != "yes" else "",
        })
    if a.screenshot:
        failed = d.find_elements(By.CSS_SELECTOR, "#timeline li.failed")
        if failed:
            d.execute_script("arguments[0].scrollIntoView({block: 'center'})", failed[0])
        d.save_screenshot(a.screenshot)
    return {
        "verified": int(status.get_attribute("data-verified")),
        "total": int(status.get_attribute("data-total")),
        "page_ms": int(status.get_attribute("data-ms")),
        "fetch_ms": int(status.get_attribute("data-fetch-ms")),
        "load_to_verified_ms": int(status.get_attribute("data-since-load")),
        "driver_wall_ms": wall_ms,
        "banner": d.find_element(By.ID, "banner").text,
        "entries": entries if len(entries) <= 50 else entries[:5] + [e for e in entries if e["verified"] != "yes"][:20],
    }


def step_live_tail(d, a):
    # The audit page with its live tail on: waits for an entry whose words
    # contain --expect to arrive (the test makes it happen meanwhile), and
    # for its mark.
    open_console(d, a.url, "#/audit")
    d.find_element(By.ID, "f-live").click()
    d.find_element(By.CSS_SELECTOR, "#audit-filters button[type=submit]").click()
    wait_for(d, lambda d: "ledger size" in d.find_element(By.ID, "view").text, "the first page")
    with open(a.ready_file, "w") as f:
        f.write("tailing\n")

    def arrived(d):
        for row in d.find_elements(By.CSS_SELECTOR, "#events tr"):
            if a.expect in row.text:
                m = row.find_element(By.CSS_SELECTOR, ".mark")
                if m.get_attribute("data-verified") != "pending":
                    return row
        return False
    row = wait_for(d, arrived, f"a live entry with '{a.expect}'", timeout=45)
    m = row.find_element(By.CSS_SELECTOR, ".mark")
    return {"row": row.text, "verified": m.get_attribute("data-verified")}


def step_layout(d, a):
    # Each section at this window's width: nothing wider than the window
    # (no sideways scrolling), and every control reachable by Tab.
    seen = {}
    for path in ("#/request", "#/inbox", "#/grants", "#/audit"):
        open_console(d, a.url, path)
        seen[path] = d.execute_script("""
          const controls = [...document.querySelectorAll('main a, main button, main input, main select, main textarea')];
          return {
            overflow: document.documentElement.scrollWidth - window.innerWidth,
            unreachable: controls.filter((c) => c.tabIndex < 0 || c.disabled).length,
            controls: controls.length,
          };""")
        if a.screenshot and path == "#/inbox":
            d.save_screenshot(a.screenshot)
    return {"sections": seen}


def step_sign_out(d, a):
    open_console(d, a.url)
    # The cookie as it was before signing out: what a thief would hold
    # (the test replays it, and it must be refused).
    cookie = [c for c in d.get_cookies() if c["name"] == "__Host-latch_session"]
    d.find_element(By.ID, "sign-out").click()
    wait_for(d, ec.presence_of_element_located((By.ID, "token")), "the sign-in form")
    return {"signed_out": True, "cookie": cookie[0]["value"] if cookie else "",
            "http_only": bool(cookie and cookie[0].get("httpOnly")),
            "same_site": cookie[0].get("sameSite", "") if cookie else ""}


def step_csp(d, a):
    open_console(d, a.url)
    # An inline script put into the page (as an injection would) must not
    # run: the policy allows only this origin's script files.
    blocked = d.execute_async_script("""
      const done = arguments[arguments.length - 1];
      let violated = '';
      document.addEventListener('securitypolicyviolation', (e) => { violated = e.violatedDirective; });
      const s = document.createElement('script');
      s.textContent = 'window.__inlineRan = true;';
      document.body.appendChild(s);
      setTimeout(() => done({ran: window.__inlineRan === true, violated}), 300);
    """)
    return blocked


def step_csrf(d, a):
    # A page of another site posts a form to the API while the person is
    # signed in; the browser sends what it sends, the API must refuse.
    d.get(a.attacker_url)
    wait_for(d, lambda d: "attacked" in d.title or d.current_url.startswith(a.url), "the attack's form post", timeout=15)
    time.sleep(1)
    return {"landed_on": d.current_url.split("?")[0], "body": d.find_element(By.TAG_NAME, "body").text[:500]}


def step_proof_vectors(d, a):
    open_console(d, a.url)
    cases = []
    for kind in ("inclusion", "consistency"):
        for path in sorted(glob.glob(os.path.join(a.vectors, kind, "**", "*.json"), recursive=True)):
            with open(path) as f:
                cases.append({"kind": kind, "name": os.path.relpath(path, a.vectors), "v": json.load(f)})
    roots = open(os.path.join(a.vectors, "tree-roots.txt")).read()
    results = d.execute_async_script("""
      const [cases, done] = [arguments[0], arguments[arguments.length - 1]];
      import('/console/verify/merkle.js').then(async (m) => {
        const b64 = (s) => Uint8Array.from(atob(s || ''), (c) => c.charCodeAt(0));
        const out = [];
        for (const c of cases) {
          const v = c.v;
          let ok = true, why = '';
          try {
            const proof = (v.proof || []).map(b64);
            if (c.kind === 'inclusion') {
              await m.verifyInclusion(v.leafIdx, v.treeSize, b64(v.leafHash), proof, b64(v.root));
            } else {
              await m.verifyConsistency(v.size1, v.size2, b64(v.root1), b64(v.root2), proof);
            }
          } catch (e) { ok = false; why = e.message; }
          out.push({name: c.name, wantErr: !!v.wantErr, ok, why});
        }
        done(out);
      }).catch((e) => done([{name: 'import', wantErr: false, ok: false, why: String(e)}]));
    """, cases)
    wrong = [r for r in results if r["ok"] == r["wantErr"]]
    return {"cases": len(results), "passed": len(results) - len(wrong), "wrong": wrong[:20], "roots_file": len(roots) > 0}


def step_checkpoints(d, a):
    # verify/checkpoint.js against notes the C++ signer made (--cases: a
    # JSON list of {name, note, key, want_ok}).
    open_console(d, a.url)
    cases = json.load(open(a.cases))
    results = d.execute_async_script("""
      const [cases, done] = [arguments[0], arguments[arguments.length - 1]];
      import('/console/verify/checkpoint.js').then(async (m) => {
        const out = [];
        for (const c of cases) {
          let ok = true, why = '';
          try {
            const key = await m.parseVerifierKey(c.key);
            await m.openCheckpoint(c.note, key);
          } catch (e) { ok = false; why = e.message; }
          out.push({name: c.name, want_ok: c.want_ok, ok, why});
        }
        done(out);
      }).catch((e) => done([{name: 'import', want_ok: true, ok: false, why: String(e)}]));
    """, cases)
    wrong = [r for r in results if r["ok"] != r["want_ok"]]
    return {"cases": len(results), "passed": len(results) - len(wrong), "wrong": wrong, "results": results}


STEPS = {
    "sign-in": step_sign_in,
    "request": step_request,
    "approve": step_approve,
    "revoke": step_revoke,
    "inbox": step_inbox,
    "break-glass": step_break_glass,
    "timeline": step_timeline,
    "sign-out": step_sign_out,
    "layout": step_layout,
    "live-tail": step_live_tail,
    "csp": step_csp,
    "csrf": step_csrf,
    "proof-vectors": step_proof_vectors,
    "checkpoints": step_checkpoints,
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=sorted(STEPS))
    p.add_argument("--url", required=True, help="the console, https://127.0.0.1:PORT")
    p.add_argument("--profile", required=True, help="this person's browser profile directory")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=800)
    for flag in ("--token-file", "--ledger-key", "--resource", "--duration", "--reason", "--screenshot",
                 "--attacker-url", "--vectors", "--cases", "--expect", "--ready-file"):
        p.add_argument(flag)
    p.add_argument("--request", type=int)
    p.add_argument("--grant", type=int)
    a = p.parse_args()
    d = browser(a.profile, a.width, a.height)
    try:
        result = STEPS[a.step](d, a)
        result["console_errors"] = [e["message"] for e in d.get_log("browser")
                                    if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        print(json.dumps(result))
    finally:
        d.quit()


if __name__ == "__main__":
    sys.exit(main())
