"""The demo web app that bosun supervises in the README's quick start.

It answers every GET with a greeting and logs each request to stdout, where
bosun captures it line by line. bosun runs it from its own clone of this
repository (config/state/demo), so a committed change to this file is what
the demo's `deploy` ships. GREETING can also come from a `.env` at the root
of that clone, re-read on every start.
"""
import http.server
import os
import socketserver

PORT = int(os.environ.get("PORT", "8751"))
GREETING = os.environ.get("GREETING", "hello")


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{GREETING} from the bosun demo (instance {os.environ.get('BOSUN_INSTANCE')})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


socketserver.TCPServer.allow_reuse_address = True
with socketserver.TCPServer(("127.0.0.1", PORT), Hello) as server:
    print(f"listening on {PORT}", flush=True)
    server.serve_forever()
