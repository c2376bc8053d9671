#!/usr/bin/env python3
"""A test-only HTTPS proxy in front of the collector's API that changes one
byte of one inclusion proof in the events query's answers: the first event
with a non-empty proof has the first byte of its first proof hash flipped.
Everything else passes through as it is. The console behind it must show
that entry, and only that one, as not verified.

  tamper_proxy.py --upstream-port P --cert C --key K --port-file F
writes the port it listens on to F once it listens.
"""
import argparse
import base64
import http.client
import http.server
import json
import os
import ssl
import sys

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


def tamper(body):
    page = json.loads(body)
    for event in page.get("events", []):
        proof = event.get("inclusion_proof") or []
        if proof:
            raw = bytearray(base64.b64decode(proof[0]))
            raw[0] ^= 0x01
            proof[0] = base64.b64encode(bytes(raw)).decode()
            sys.stderr.write(f"tamper_proxy: changed a proof byte of entry {event.get('index')}\n")
            break
    return json.dumps(page).encode()


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        up = http.client.HTTPSConnection("127.0.0.1", self.server.upstream_port, context=ctx, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "host"}
        up.request(self.command, self.path, body=body, headers=headers)
        res = up.getresponse()
        data = res.read()
        if self.path.startswith("/v1/events?") and res.status == 200:
            data = tamper(data)
        self.send_response(res.status)
        for k, v in res.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        up.close()

    do_GET = forward
    do_POST = forward

    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--port-file", required=True)
    a = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.upstream_port = a.upstream_port
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
