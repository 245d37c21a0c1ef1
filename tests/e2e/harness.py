"""Process harness for Sluice end-to-end tests.

Starts real processes on free loopback ports: a private PostgreSQL cluster
(tests/lib/pg), sluice-controlplane, sluice-dataplane(s) and sluice-mockllm,
and drives them the way a user would: sluicectl, HTTP, SQL.

Every process's stderr goes to a log file in the test's directory. When a
process is stopped the harness checks it exited cleanly and that no
sanitizer report appeared in its log, so the ASan+UBSan run of the same
tests catches memory errors in the servers too.
"""

import http.client
import http.server
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SLUICE_BUILD", os.path.join(REPO, "build"))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def binary(name):
    path = os.path.join(BUILD, name)
    if not os.path.exists(path):
        raise RuntimeError(f"{path} not built (set SLUICE_BUILD)")
    return path


def wait_for(predicate, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A server process with a log file and a port file."""

    def __init__(self, name, argv, workdir, env=None, port_file=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.port_file = port_file
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=full_env,
                                      stdin=subprocess.DEVNULL)
        self.ports = None
        if port_file:
            self.ports = wait_for(self._read_ports, 30, what=f"{name} to listen")

    def _read_ports(self):
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_text()[-3000:]}")
        try:
            with open(self.port_file) as f:
                text = f.read().strip()
        except FileNotFoundError:
            return None
        return [int(p) for p in text.split()] if text else None

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout=60, expect_clean=True):
        """SIGTERM and wait; returns the exit code. With expect_clean, asserts
        exit code 0 and a log free of sanitizer reports."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                raise AssertionError(f"{self.name} did not exit within {timeout}s of SIGTERM")
        self.log.close()
        code = self.popen.returncode
        if expect_clean:
            self.check_clean(code)
        return code

    def kill(self):
        if self.alive():
            self.popen.kill()
            self.popen.wait()
        self.log.close()

    def check_clean(self, code=None):
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            assert marker not in text, f"{self.name}: sanitizer report:\n{text[-6000:]}"
        if code is not None:
            assert code == 0, f"{self.name} exited with {code}:\n{text[-3000:]}"


class Postgres:
    """One private cluster per test session; a fresh database per test."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "pg")
        out = subprocess.run([os.path.join(REPO, "tests/lib/pg"), "start", self.dir], check=True,
                             capture_output=True, text=True)
        self.admin_url = out.stdout.strip()
        self.port = int(self.admin_url.rsplit(":", 1)[1].split("/")[0])
        self.counter = 0

    def create_database(self):
        self.counter += 1
        name = f"t{os.getpid()}_{self.counter}"
        self.psql("postgres", f"CREATE DATABASE {name} OWNER sluice", user="postgres")
        return f"postgresql://sluice:sluice@127.0.0.1:{self.port}/{name}"

    def psql(self, db, sql, user="sluice"):
        env = dict(os.environ, PGPASSWORD="sluice")
        out = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                              str(self.port), "-U", user, "-d", db, "-c", sql],
                             check=True, capture_output=True, text=True, env=env)
        return out.stdout

    def stop(self):
        subprocess.run([os.path.join(REPO, "tests/lib/pg"), "stop", self.dir], check=False)

    def restart(self, down_seconds=0.0):
        """Stops the cluster and starts it again on the same port (URLs stay
        valid); down_seconds between the two."""
        self.stop()
        time.sleep(down_seconds)
        env = dict(os.environ, PG_PORT=str(self.port))
        subprocess.run([os.path.join(REPO, "tests/lib/pg"), "start", self.dir], check=True, capture_output=True,
                       text=True, env=env)


class HttpResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())


def http_request(port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return HttpResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def sse_events(body):
    """Splits an SSE body into the payloads of its data: lines."""
    events = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if data:
            events.append("\n".join(data))
    return events


class Cluster:
    """Control plane + mock provider (+ data planes on demand) on one database."""

    def __init__(self, pg, workdir):
        self.pg = pg
        self.dir = workdir
        self.db_url = pg.create_database()
        self.db_name = self.db_url.rsplit("/", 1)[1]
        self.admin_token = secrets.token_hex(16)
        self.node_token = secrets.token_hex(16)
        self.mock_key = "sk-mock-" + secrets.token_hex(8)
        self._write("admin.token", self.admin_token + "\n")
        self._write("node.token", self.node_token + "\n")
        self._write("master.key", secrets.token_hex(32) + "\n")
        self.procs = []
        self.dataplanes = {}
        out = subprocess.run([binary("sluice-controlplane"), "migrate", "--database-url", self.db_url],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        self.cp = None
        self.start_controlplane()
        self.mock = self._start("mockllm", [binary("sluice-mockllm"), "--listen", "127.0.0.1:0", "--api-key",
                                            self.mock_key])
        self.mock_port = self.mock.ports[0]

    def _write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    def path(self, name):
        return os.path.join(self.dir, name)

    def _start(self, name, argv, env=None):
        port_file = self.path(f"{name}.ports")
        if os.path.exists(port_file):
            os.unlink(port_file)
        proc = Proc(name, argv + ["--port-file", port_file], self.dir, env=env, port_file=port_file)
        self.procs.append(proc)
        return proc

    def start_controlplane(self, grpc_port=0, extra=None):
        self.cp = self._start("controlplane", [
            binary("sluice-controlplane"), "serve", "--database-url", self.db_url,
            "--grpc-listen", f"127.0.0.1:{grpc_port}", "--http-listen", "127.0.0.1:0",
            "--admin-token-file", self.path("admin.token"), "--master-key-file", self.path("master.key"),
            "--node-token-file", self.path("node.token")] + (extra or []))
        self.grpc_port, self.cp_http_port = self.cp.ports
        return self.cp

    def restart_controlplane(self, down_seconds=0.0, extra=None):
        """kill -9 the control plane and start it again on the same gRPC port."""
        self.cp.kill()
        time.sleep(down_seconds)
        return self.start_controlplane(grpc_port=self.grpc_port, extra=extra)

    def start_controlplane_replica(self, name, extra=None):
        """Another control plane on the same database (its own ports); returns
        the Proc with grpc_port and http_port set."""
        proc = self._start(name, [
            binary("sluice-controlplane"), "serve", "--database-url", self.db_url,
            "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
            "--admin-token-file", self.path("admin.token"), "--master-key-file", self.path("master.key"),
            "--node-token-file", self.path("node.token")] + (extra or []))
        proc.grpc_port, proc.http_port = proc.ports
        return proc

    def start_dataplane(self, node_id, threads=2, extra=None):
        argv = [binary("sluice-dataplane"), "--controlplane", f"127.0.0.1:{self.grpc_port}",
                "--node-token-file", self.path("node.token"), "--listen", "127.0.0.1:0",
                "--admin-listen", "127.0.0.1:0", "--threads", str(threads), "--node-id", node_id,
                "--snapshot-cache", self.path(f"{node_id}.snapshot")] + (extra or [])
        dp = self._start(f"dataplane-{node_id}", argv)
        dp.api_port, dp.admin_port = dp.ports
        self.dataplanes[node_id] = dp
        return dp

    def wait_ready(self, dp, timeout=10):
        wait_for(lambda: http_request(dp.admin_port, "GET", "/readyz").status == 200, timeout,
                 what=f"{dp.name} ready")

    def ctl(self, *args, env=None, check=True):
        full_env = dict(os.environ)
        full_env.update(env or {})
        out = subprocess.run([binary("sluicectl"), "--server", f"127.0.0.1:{self.grpc_port}",
                              "--token-file", self.path("admin.token")] + list(args),
                             capture_output=True, text=True, env=full_env, timeout=60)
        if check:
            assert out.returncode == 0, f"sluicectl {' '.join(args)} failed ({out.returncode}):\n{out.stderr}"
        return out

    def apply(self, yaml_text, name="config.yaml", extra_args=(), env=None):
        """Applies a document; returns {key_id: secret} of keys it created.
        env: more variables for sluicectl (secrets named by *_env)."""
        path = self._write(name, yaml_text)
        secrets_path = self.path(name + ".secrets")
        if os.path.exists(secrets_path):
            os.unlink(secrets_path)
        out = self.ctl("apply", "-f", path, "--secrets-out", secrets_path, *extra_args,
                       env={"MOCK_API_KEY": self.mock_key, **(env or {})})
        created = {}
        if os.path.exists(secrets_path):
            with open(secrets_path) as f:
                for line in f:
                    if line.strip():
                        key_id, secret = line.split()
                        created[key_id] = secret
        self.last_apply_output = out.stdout
        return created

    def sql(self, query):
        return self.pg.psql(self.db_name, query)

    def mock_stats(self):
        return http_request(self.mock_port, "GET", "/_mock/stats").json()

    def mock_faults(self, **fault):
        resp = http_request(self.mock_port, "POST", "/_mock/faults", body=fault)
        assert resp.status == 200, resp.body

    def start_mock(self, name, extra=None):
        """Another mock provider process (same API key); returns its port."""
        proc = self._start(name, [binary("sluice-mockllm"), "--listen", "127.0.0.1:0", "--api-key",
                                  self.mock_key] + (extra or []))
        return proc.ports[0]

    def mock_stats_at(self, port):
        return http_request(port, "GET", "/_mock/stats").json()

    def mock_faults_at(self, port, **fault):
        resp = http_request(port, "POST", "/_mock/faults", body=fault)
        assert resp.status == 200, resp.body

    def stop_all(self):
        errors = []
        for proc in reversed(self.procs):
            if proc.log.closed:
                continue
            try:
                proc.stop()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise AssertionError("\n\n".join(errors))


def chat(port, secret, model="gpt-4o", content="hello there gateway", stream=False, max_tokens=None, extra=None):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra or {})
    return http_request(port, "POST", "/v1/chat/completions", body=body,
                        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})


def mock_provider(name, kind, port, key="secret_env: MOCK_API_KEY", **fields):
    """One item of a `providers:` list, for a provider the mock at port serves:
    base_url is the mock as the kind's SDK addresses it (with /v1 for the
    OpenAI kinds, the bare origin for the others), key its one credential and
    fields more members, as YAML text (params="{region: us-east-1}")."""
    path = "/v1" if kind in ("openai", "openai_compatible") else ""
    lines = [f"- name: {name}", f"  kind: {kind}", f"  base_url: http://127.0.0.1:{port}{path}"]
    lines += [f"  {field}: {value}" for field, value in fields.items()]
    lines += ["  keys:", f"  - {key}"]
    return "\n".join(lines)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Receiver:
    """A local HTTP server that records every POST it gets (alert sinks in
    tests). status is what it answers (200 by default). stop() closes the
    port; start() opens it again on the same port."""

    def __init__(self, port=0, status=200):
        self.port = port
        self.status = status
        self.requests = []           # {"path", "headers" (lower-case names), "body" (bytes), "at"}
        self.lock = threading.Lock()
        self.server = None
        self.thread = None

    def start(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "body": body, "at": time.time(),
                                              "headers": {k.lower(): v for k, v in self.headers.items()}})
                    status = receiver.status
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]
