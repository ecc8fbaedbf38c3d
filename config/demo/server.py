"""The demo web app that bosun supervises in the README's quick start.

It answers every GET with a greeting and logs each request to stdout, where
bosun captures it line by line. bosun runs it from its own clone of this
repository (config/state/demo), so a committed change to this file is what
the demo's `deploy` ships. GREETING can also come from a `.env` at the root
of that clone, re-read on every start.

bosun holds the app's listening socket (`sockets` in config/bosun.toml) and
hands it over as fd 3, the systemd way (LISTEN_FDS, LISTEN_PID). A restart
starts the new process on the same socket before it stops the old one, which
stops accepting on SIGTERM and finishes the requests it holds: no request
fails. Run by hand, without bosun, it binds PORT itself.
"""
import http.server
import os
import signal
import socket
import threading

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


def serve():
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
        sock = socket.socket(fileno=3)
        # Shared with the other instances: whoever is free accepts.
        sock.setblocking(False)
        server = http.server.ThreadingHTTPServer(
            sock.getsockname(), Hello, bind_and_activate=False
        )
        server.socket = sock
    else:
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Hello)
    # Stop accepting, finish what is in hand, exit.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"listening on {server.socket.getsockname()[1]}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()


serve()
