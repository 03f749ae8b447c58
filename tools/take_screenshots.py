"""Take the screenshots of ``static/description/`` from a running server.

Drives Debian's headless Chromium through the DevTools protocol
(``websocket-client``, a test-only tool): logs in, opens the channel form,
the dashboard and a binding's "why this quantity" tab, and saves small PNGs.

Usage::

    python tools/take_screenshots.py --url http://127.0.0.1:8069 \\
        --login admin --password admin --channel ID --binding ID
"""

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

import requests
import websocket

OUT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static", "description"
)


def login(url, user, password):
    session = requests.Session()
    page = session.get(f"{url}/web/login", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    session.post(
        f"{url}/web/login",
        data={"login": user, "password": password, "csrf_token": token},
        timeout=30,
    )
    return session.cookies.get("session_id")


class Chrome:
    def __init__(self, port=9333):
        self.profile = tempfile.mkdtemp(prefix="scs_shots_")
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={self.profile}",
                f"--remote-debugging-port={port}",
                "--window-size=1280,860",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _i in range(50):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/json", timeout=2
                ) as answer:
                    targets = json.load(answer)
                page = next(t for t in targets if t["type"] == "page")
                break
            except (OSError, StopIteration):
                time.sleep(0.2)
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.seq = 0

    def call(self, method, **params):
        self.seq += 1
        self.ws.send(json.dumps({"id": self.seq, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.seq:
                return message.get("result", {})

    def eval(self, expression):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)

    def wait_for(self, selector, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.eval(f"!!document.querySelector({json.dumps(selector)})")
            if found.get("result", {}).get("value"):
                return True
            time.sleep(0.3)
        raise TimeoutError(selector)

    def shot(self, name):
        time.sleep(1.0)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path = os.path.join(OUT, name)
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(data))
        print("saved", os.path.relpath(path))

    def close(self):
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8069")
    parser.add_argument("--login", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--channel", type=int, required=True)
    parser.add_argument("--binding", type=int, required=True)
    args = parser.parse_args()
    cookie = login(args.url, args.login, args.password)
    chrome = Chrome()
    try:
        chrome.call("Network.enable")
        host = args.url.split("//", 1)[1].split(":")[0]
        chrome.call(
            "Network.setCookie", name="session_id", value=cookie, domain=host, path="/"
        )
        base = f"{args.url}/odoo"
        chrome.call(
            "Page.navigate",
            url=f"{base}/action-stock_channel_sync.action_sync_channel/{args.channel}",
        )
        chrome.wait_for("button[name=action_test_connection]")
        chrome.shot("screenshot_channel_form.png")
        chrome.call(
            "Page.navigate",
            url=f"{base}/action-stock_channel_sync.action_sync_dashboard",
        )
        chrome.wait_for(".o_field_widget[name=latency_p95_ms]")
        chrome.shot("screenshot_dashboard.png")
        chrome.call(
            "Page.navigate",
            url=f"{base}/action-stock_channel_sync.action_channel_binding/{args.binding}",
        )
        chrome.wait_for(".o_notebook")
        chrome.eval(
            "[...document.querySelectorAll('.nav-link')]"
            ".find(a => a.textContent.includes('Why This Quantity')).click()"
        )
        chrome.wait_for(".o_scs_steps")
        chrome.eval("document.querySelector('.o_notebook').scrollIntoView()")
        chrome.shot("screenshot_why_this_quantity.png")
    finally:
        chrome.close()


if __name__ == "__main__":
    main()
