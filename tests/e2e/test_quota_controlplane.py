"""End-to-end: the control plane's side of quotas (DESIGN 5-6).

Reports are sent straight to Sync.Report over gRPC as fake data planes, so
these tests prove the database accounting alone: grants never pass
limit - used - outstanding however many nodes race, a duplicate report
changes nothing and gets its grants back, consumption moves outstanding
into used, dead nodes' leases are reclaimed, every quota window's `used`
equals the ledger's sum whatever order reports arrive in, tenant time zones
decide window and day boundaries, and the report.* views agree with
Admin.GetSpend and the ledger.
"""

import json
import os
import random
import subprocess
import threading
import time
from datetime import datetime, timezone

import grpc
import pytest

from harness import Proc, binary, http_request, wait_for

TTL_MS = 2000         # short lease timings for the reclaim test; the others use long ones
GRACE_MS = 1000

M_COST, M_REQUESTS, M_TOKENS, M_CONCURRENT = 1, 2, 3, 4
W_MINUTE, W_HOUR, W_DAY, W_WEEK, W_MONTH, W_TOTAL = 1, 2, 3, 4, 5, 6


def unix(text):
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


class ControlPlane:
    """A control plane with short lease timings on a fresh database, driven
    over gRPC: Admin with the admin token, Sync.Report as fake nodes."""

    def __init__(self, pg, workdir, pb, ttl_ms=20000, grace_ms=20000, replica_of=None, name="controlplane"):
        self.pg, self.dir, self.pb = pg, workdir, pb
        from sluice.config.v1 import config_pb2
        self.config = config_pb2
        if replica_of is None:
            self.db_url = pg.create_database()
            self.admin_token, self.node_token = os.urandom(16).hex(), os.urandom(16).hex()
            for name_, text in (("admin.token", self.admin_token), ("node.token", self.node_token),
                                ("master.key", os.urandom(32).hex())):
                with open(self.path(name_), "w") as f:
                    f.write(text + "\n")
            out = subprocess.run([binary("sluice-controlplane"), "migrate", "--database-url", self.db_url],
                                 capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
        else:                                              # another replica on the same database and files
            self.db_url, self.admin_token, self.node_token = (replica_of.db_url, replica_of.admin_token,
                                                              replica_of.node_token)
        self.db_name = self.db_url.rsplit("/", 1)[1]
        port_file = self.path(f"{name}.ports")
        self.proc = Proc(name, [
            binary("sluice-controlplane"), "serve", "--database-url", self.db_url,
            "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
            "--admin-token-file", self.path("admin.token"), "--master-key-file", self.path("master.key"),
            "--node-token-file", self.path("node.token"), "--port-file", port_file,
            "--lease-ttl-ms", str(ttl_ms), "--lease-reclaim-grace-ms", str(grace_ms)], workdir, port_file=port_file)
        self.grpc_port, self.http_port = self.proc.ports
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")

    def path(self, name):
        return os.path.join(self.dir, name)

    def close(self):
        self.channel.close()
        self.proc.stop()

    def sql(self, query):
        return self.pg.psql(self.db_name, query).strip()

    def admin(self, method, req, resp_cls):
        call = self.channel.unary_unary(f"/sluice.admin.v1.Admin/{method}",
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=resp_cls.FromString)
        return call(req, metadata=[("authorization", f"Bearer {self.admin_token}")], timeout=20)

    def apply(self, tenants=(), keys=()):
        doc = self.pb.admin.Document(tenants=list(tenants), virtual_keys=list(keys))
        return self.admin("Apply", self.pb.admin.ApplyRequest(document=doc), self.pb.admin.ApplyResponse)

    def tenant(self, tid, tz="UTC", quotas=(), metadata=None):
        return self.config.Tenant(id=tid, time_zone=tz, quotas=list(quotas), metadata_json=json.dumps(metadata or {}))

    def key(self, kid, tenant, quotas=(), metadata=None):
        return self.config.VirtualKey(id=kid, tenant_id=tenant, quotas=list(quotas),
                                      metadata_json=json.dumps(metadata or {}))

    def quota(self, metric, window, limit, provider=""):
        return self.config.Quota(metric=metric, window=window, limit=limit, provider=provider)

    def quota_ids(self, kid):
        k = self.admin("GetVirtualKey", self.pb.admin.GetVirtualKeyRequest(id=kid), self.config.VirtualKey)
        return {(q.provider, q.metric, q.window): q.id for q in k.quotas}

    def report(self, node, seq, entries=(), requests=(), leases=(), boot="boot-1", channel=None):
        """entries: dicts for UsageEntry; requests: (quota_id, window_start, want); leases: (quota_id,
        window_start, reserved, unreserved)."""
        pb = self.pb.sync
        r = pb.UsageReport(node_id=node, boot_id=boot, seq=seq,
                           entries=[pb.UsageEntry(**e) for e in entries],
                           lease_requests=[pb.LeaseRequest(quota_id=q, window_start_unix=ws, want=w)
                                           for q, ws, w in requests],
                           leases=[pb.LeaseState(quota_id=q, window_start_unix=ws, reserved=rs, unreserved=un)
                                   for q, ws, rs, un in leases])
        call = (channel or self.channel).unary_unary("/sluice.sync.v1.Sync/Report",
                                                     request_serializer=lambda m: m.SerializeToString(),
                                                     response_deserializer=pb.ReportAck.FromString)
        return call(r, metadata=[("authorization", f"Bearer {self.node_token}")], timeout=30)

    def window(self, qid):
        """(used, outstanding) of the quota's windows, or None."""
        out = self.sql(f"SELECT sum(used), sum(outstanding) FROM quota_windows WHERE quota_id = {qid}")
        if not out or out == "|":
            return None
        used, outstanding = out.split("|")
        return int(used), int(outstanding)

    def leases(self, qid):
        out = self.sql(f"SELECT node_id, boot_id, outstanding FROM quota_leases WHERE quota_id = {qid} ORDER BY 1, 2")
        return [(n, b, int(o)) for n, b, o in (line.split("|") for line in out.splitlines())] if out else []

    def windows_off_ledger(self):
        """Windows whose used differs from the ledger's sum (must be none)."""
        return self.sql("SELECT quota_id, window_start, used, sluice_quota_ledger_sum(quota_id, window_start, "
                        "window_end) FROM quota_windows WHERE used <> sluice_quota_ledger_sum(quota_id, "
                        "window_start, window_end)")

    def metric(self, name):
        body = http_request(self.http_port, "GET", "/metrics").body.decode()
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"metric {name} not found")


@pytest.fixture
def cpq(pg, tmp_path, pb):
    c = ControlPlane(pg, str(tmp_path), pb)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def cpq_short_leases(pg, tmp_path, pb):
    c = ControlPlane(pg, str(tmp_path), pb, ttl_ms=TTL_MS, grace_ms=GRACE_MS)
    try:
        yield c
    finally:
        c.close()


def entry(key="vk1", tenant="t1", provider="openai", model="gpt-4o", minute=None, requests=1, input_tokens=10,
          output_tokens=5, cost_nano=1000):
    return {"key_id": key, "tenant_id": tenant, "provider": provider, "model": model,
            "minute_unix": minute if minute is not None else int(time.time()) // 60 * 60,
            "requests": requests, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cost_nano": cost_nano}


def test_quota_ids_are_stable_across_applies(cpq):
    cpq.apply(keys=[cpq.key("vk1", "t1", [cpq.quota(M_COST, W_MONTH, 10**12), cpq.quota(M_REQUESTS, W_MINUTE, 60)])])
    ids = cpq.quota_ids("vk1")
    assert len(ids) == 2 and all(ids.values())
    cpq.report("n1", 1, requests=[(ids[("", M_COST, W_MONTH)], 0, 100)])
    resp = cpq.apply(keys=[cpq.key("vk1", "t1", [cpq.quota(M_COST, W_MONTH, 5 * 10**11),
                                                 cpq.quota(M_REQUESTS, W_MINUTE, 60)])])
    assert resp.changed
    assert cpq.quota_ids("vk1") == ids                     # a new limit keeps the id ...
    assert cpq.window(ids[("", M_COST, W_MONTH)]) == (0, 100)  # ... and its windows and leases
    cpq.apply(keys=[cpq.key("vk1", "t1", [cpq.quota(M_COST, W_MONTH, 5 * 10**11)])])
    assert cpq.quota_ids("vk1") == {("", M_COST, W_MONTH): ids[("", M_COST, W_MONTH)]}
    assert cpq.sql(f"SELECT count(*) FROM quotas WHERE id = {ids[('', M_REQUESTS, W_MINUTE)]}") == "0"
    cpq.apply(keys=[cpq.key("vk1", "t1", [])])              # removed: its windows and leases go with it
    assert cpq.sql("SELECT count(*) FROM quota_windows") == "0"
    assert cpq.sql("SELECT count(*) FROM quota_leases") == "0"


def test_grants_never_exceed_the_limit_across_racing_nodes(cpq):
    limit = 10000
    cpq.apply(keys=[cpq.key("vk1", "t1", [cpq.quota(M_REQUESTS, W_TOTAL, limit)])])
    qid = cpq.quota_ids("vk1")[("", M_REQUESTS, W_TOTAL)]
    granted, consumed, errors = {}, {}, []

    def node(name):
        rnd = random.Random(name)
        channel = grpc.insecure_channel(f"127.0.0.1:{cpq.grpc_port}")
        held, seq, zeros = 0, 0, 0
        granted[name] = consumed[name] = 0
        try:
            while zeros < 3 and seq < 200:
                seq += 1
                use = rnd.randint(0, held) if held else 0
                entries = [entry(requests=use, input_tokens=0, output_tokens=0, cost_nano=0)] if use else []
                ack = cpq.report(name, seq, entries=entries, requests=[(qid, 0, rnd.randint(50, 1500))],
                                 leases=[(qid, 0, 0, held - use)] if held else [], channel=channel)
                held -= use
                consumed[name] += use
                (g,) = [g for g in ack.grants if g.quota_id == qid]
                assert g.window_start_unix == 0 and g.limit == limit
                assert g.used + g.outstanding <= limit, g
                held += g.granted
                granted[name] += g.granted
                zeros = zeros + 1 if g.granted == 0 else 0
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            channel.close()

    threads = [threading.Thread(target=node, args=(f"node{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    used, outstanding = cpq.window(qid)
    assert used == sum(consumed.values())
    assert used + outstanding == sum(granted.values()) <= limit
    assert sum(granted.values()) >= 0.95 * limit           # the budget can be spent, not stranded
    assert sum(o for _, _, o in cpq.leases(qid)) == outstanding
    assert cpq.windows_off_ledger() == ""
    assert cpq.metric("sluice_controlplane_lease_grants_total") > 0
    assert cpq.metric("sluice_controlplane_lease_denials_total") > 0
    assert cpq.metric("sluice_controlplane_report_apply_duration_seconds_count") > 0
    assert cpq.metric("sluice_controlplane_ledger_rows_applied_total") > 0


def test_duplicate_report_returns_the_same_grants_and_changes_nothing(cpq):
    cpq.apply(keys=[cpq.key("vk1", "t1", [cpq.quota(M_COST, W_TOTAL, 10**9)])])
    qid = cpq.quota_ids("vk1")[("", M_COST, W_TOTAL)]
    first = cpq.report("n1", 1, entries=[entry(cost_nano=300)], requests=[(qid, 0, 4000)])
    state = (cpq.window(qid), cpq.leases(qid), cpq.sql("SELECT sum(cost_nano) FROM usage_minute"))
    again = cpq.report("n1", 1, entries=[entry(cost_nano=300)], requests=[(qid, 0, 4000)])
    assert not first.duplicate and again.duplicate
    assert list(again.grants) == list(first.grants) and first.grants[0].granted == 4000
    assert (cpq.window(qid), cpq.leases(qid), cpq.sql("SELECT sum(cost_nano) FROM usage_minute")) == state
    assert state[0] == (300, 4000)


def test_consumption_moves_outstanding_into_used(cpq):
    cpq.apply(keys=[cpq.key("vk1", "t1", [cpq.quota(M_TOKENS, W_TOTAL, 1000)])])
    qid = cpq.quota_ids("vk1")[("", M_TOKENS, W_TOTAL)]
    ack = cpq.report("n1", 1, requests=[(qid, 0, 100)])
    assert ack.grants[0].granted == 100 and ack.grants[0].expires_unix_ms > time.time() * 1000
    ack = cpq.report("n1", 2, entries=[entry(input_tokens=20, output_tokens=10)], leases=[(qid, 0, 0, 70)])
    assert cpq.window(qid) == (30, 70) and cpq.leases(qid) == [("n1", "boot-1", 70)]
    g = ack.grants[0]
    assert (g.granted, g.used, g.outstanding, g.limit) == (0, 30, 70, 1000)
    # an overrun past the lease: used grows by all of it, outstanding only gives back what it had
    cpq.report("n1", 3, entries=[entry(input_tokens=80, output_tokens=20)], leases=[(qid, 0, 0, 0)])
    assert cpq.window(qid) == (130, 0)
    # consumption reported by another node does not touch this node's lease
    cpq.report("n1", 4, requests=[(qid, 0, 50)], leases=[(qid, 0, 0, 0)])
    cpq.report("n2", 1, entries=[entry(input_tokens=5, output_tokens=0)])
    assert cpq.window(qid) == (135, 50) and cpq.leases(qid) == [("n1", "boot-1", 50)]
    assert cpq.windows_off_ledger() == ""


def test_unlisted_lease_is_released_and_expired_leases_are_reclaimed(cpq_short_leases):
    cpq = cpq_short_leases
    cpq.apply(keys=[cpq.key("vk1", "t1", [cpq.quota(M_REQUESTS, W_TOTAL, 1000)])])
    qid = cpq.quota_ids("vk1")[("", M_REQUESTS, W_TOTAL)]
    cpq.report("n1", 1, requests=[(qid, 0, 100)])
    cpq.report("n2", 1, requests=[(qid, 0, 100)])
    assert cpq.window(qid) == (0, 200)
    cpq.report("n1", 2)                                    # n1 no longer lists its lease: released at once
    assert cpq.window(qid) == (0, 100) and [n for n, _, _ in cpq.leases(qid)] == ["n2"]
    # n2 renews for a while, then goes silent: reclaimed after ttl + grace
    for seq in range(2, 5):
        cpq.report("n2", seq, leases=[(qid, 0, 0, 100)])
        time.sleep(TTL_MS / 3000)
    assert cpq.window(qid) == (0, 100)
    wait_for(lambda: cpq.window(qid) == (0, 0), 10, interval=0.05, what="the silent node's lease to be reclaimed")
    assert cpq.leases(qid) == []
    assert cpq.metric("sluice_controlplane_leases_reclaimed_total") >= 1
    # a restarted node (new boot) releases its earlier process's expired leases
    cpq.report("n3", 1, requests=[(qid, 0, 100)], boot="old")
    time.sleep(TTL_MS / 1000 + 0.05)
    cpq.report("n3", 1, boot="new")
    assert cpq.window(qid) == (0, 0)


def test_used_equals_the_ledger_for_shuffled_and_duplicated_reports(cpq):
    quotas = [cpq.quota(M_REQUESTS, W_MINUTE, 10**6), cpq.quota(M_TOKENS, W_HOUR, 10**9),
              cpq.quota(M_COST, W_DAY, 10**12), cpq.quota(M_COST, W_WEEK, 10**12),
              cpq.quota(M_COST, W_MONTH, 10**12), cpq.quota(M_COST, W_MONTH, 10**12, provider="anthropic"),
              cpq.quota(M_CONCURRENT, W_TOTAL, 5)]
    cpq.apply(tenants=[cpq.tenant("t1", "America/New_York", [cpq.quota(M_COST, W_MONTH, 10**13),
                                                              cpq.quota(M_REQUESTS, W_DAY, 10**6)])],
              keys=[cpq.key("vk1", "t1", quotas), cpq.key("vk2", "t1", [cpq.quota(M_TOKENS, W_TOTAL, 10**9)])])
    rnd = random.Random(7)
    base = unix("2026-02-27T00:00:00Z")
    reports = []
    for node in ("a", "b", "c"):
        for seq in range(1, 13):
            entries = []
            for _ in range(rnd.randint(1, 6)):
                entries.append(entry(key=rnd.choice(["vk1", "vk2"]), tenant="" if rnd.random() < 0.3 else "t1",
                                     provider=rnd.choice(["openai", "anthropic"]),
                                     model=rnd.choice(["m1", "m2"]),
                                     minute=base + rnd.randint(0, 4 * 24 * 60) * 60 + rnd.randint(0, 59),
                                     requests=rnd.randint(0, 9), input_tokens=rnd.randint(0, 900),
                                     output_tokens=rnd.randint(0, 900), cost_nano=rnd.randint(0, 10**7)))
            reports.append((node, seq, entries))
    sends = reports + rnd.sample(reports, 12)              # every report once, some twice
    rnd.shuffle(sends)
    errors = []

    def sender(chunk):
        channel = grpc.insecure_channel(f"127.0.0.1:{cpq.grpc_port}")
        try:
            for node, seq, entries in chunk:
                cpq.report(node, seq, entries=entries, channel=channel)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            channel.close()

    threads = [threading.Thread(target=sender, args=(sends[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert int(cpq.sql("SELECT count(*) FROM quota_windows")) > 20
    assert cpq.windows_off_ledger() == ""
    total = sum(e["requests"] for _, _, es in reports for e in es)
    assert int(cpq.sql("SELECT sum(requests) FROM usage_minute")) == total
    # a quota added mid-month starts from what the ledger already holds for its window
    cpq.apply(keys=[cpq.key("vk2", "t1", [cpq.quota(M_TOKENS, W_TOTAL, 10**9), cpq.quota(M_COST, W_MONTH, 10**12)])])
    cpq.report("late", 1, entries=[entry(key="vk2", minute=base + 86400, cost_nano=5)])
    assert cpq.windows_off_ledger() == ""
    qid = cpq.quota_ids("vk2")[("", M_COST, W_MONTH)]
    feb = unix("2026-02-01T05:00:00Z")                     # February in New York
    assert int(cpq.sql(f"SELECT used FROM quota_windows WHERE quota_id = {qid} AND window_start = to_timestamp({feb})")) \
        == int(cpq.sql("SELECT sum(cost_nano) FROM usage_minute WHERE key_id = 'vk2' "
                       "AND minute >= '2026-02-01T05:00Z' AND minute < '2026-03-01T05:00Z'")) > 0


def test_lowered_limit_stops_new_grants_at_once(cpq):
    cpq.apply(keys=[cpq.key("vk1", "t1", [cpq.quota(M_COST, W_MONTH, 1000)])])
    qid = cpq.quota_ids("vk1")[("", M_COST, W_MONTH)]
    assert cpq.report("n1", 1, requests=[(qid, 0, 600)]).grants[0].granted == 600
    cpq.apply(keys=[cpq.key("vk1", "t1", [cpq.quota(M_COST, W_MONTH, 500)])])
    g = cpq.report("n2", 1, requests=[(qid, 0, 10)]).grants[0]
    assert (g.granted, g.limit, g.outstanding) == (0, 500, 600)
    cpq.report("n1", 2)                                    # n1 drops its lease after the change
    g = cpq.report("n2", 2, requests=[(qid, 0, 1000)]).grants[0]
    assert (g.granted, g.outstanding) == (500, 500)


def test_windows_follow_the_tenant_time_zone_across_a_month_boundary(cpq):
    cpq.apply(tenants=[cpq.tenant("ny", "America/New_York", [cpq.quota(M_COST, W_MONTH, 10**12)])],
              keys=[cpq.key("vkny", "ny", [cpq.quota(M_REQUESTS, W_DAY, 1000)])])
    tq = cpq.admin("GetTenant", cpq.pb.admin.GetTenantRequest(id="ny"), cpq.config.Tenant).quotas[0].id
    kq = cpq.quota_ids("vkny")[("", M_REQUESTS, W_DAY)]
    cpq.report("n1", 1, entries=[entry(key="vkny", tenant="ny", minute=unix("2026-03-01T03:00:00Z"), cost_nano=7),
                                 entry(key="vkny", tenant="ny", minute=unix("2026-03-01T05:00:00Z"), cost_nano=11)])
    rows = cpq.sql(f"SELECT extract(epoch FROM window_start)::bigint, extract(epoch FROM window_end)::bigint, used "
                   f"FROM quota_windows WHERE quota_id = {tq} ORDER BY 1")
    assert rows.splitlines() == [f"{unix('2026-02-01T05:00:00Z')}|{unix('2026-03-01T05:00:00Z')}|7",
                                 f"{unix('2026-03-01T05:00:00Z')}|{unix('2026-04-01T04:00:00Z')}|11"]
    days = cpq.sql(f"SELECT extract(epoch FROM window_start)::bigint, used FROM quota_windows WHERE quota_id = {kq} "
                   "ORDER BY 1")
    assert days.splitlines() == [f"{unix('2026-02-28T05:00:00Z')}|1", f"{unix('2026-03-01T05:00:00Z')}|1"]
    spend = cpq.admin("GetSpend", cpq.pb.admin.GetSpendRequest(tenant_id="ny", from_date="2026-02-28",
                                                               to_date="2026-03-02"), cpq.pb.admin.GetSpendResponse)
    assert [(r.group, r.cost_nano) for r in spend.rows] == [("2026-02-28", 7), ("2026-03-01", 11)]
    feb = cpq.admin("GetSpend", cpq.pb.admin.GetSpendRequest(tenant_id="ny", from_date="2026-02-01",
                                                             to_date="2026-03-01"), cpq.pb.admin.GetSpendResponse)
    assert feb.total.cost_nano == 7
    assert cpq.sql("SELECT month, cost_nano FROM report.tenant_spend_monthly WHERE tenant_id = 'ny' ORDER BY 1") \
        .splitlines() == ["2026-02-01|7", "2026-03-01|11"]
    # a lease request for window 0 gets the current window's bounds, computed in the tenant's zone
    g = cpq.report("n1", 2, requests=[(tq, 0, 1)]).grants[0]
    now = int(time.time())
    assert g.window_start_unix <= now < g.window_end_unix
    local_start = cpq.sql(f"SELECT to_timestamp({g.window_start_unix}) AT TIME ZONE 'America/New_York'")
    assert local_start.endswith("-01 00:00:00"), local_start
    # the next window may be asked for ahead of the boundary; one further on is refused
    nxt = cpq.report("n1", 3, requests=[(tq, g.window_end_unix, 1)], leases=[(tq, g.window_start_unix, 0, 1)])
    assert [x.granted for x in nxt.grants if x.window_start_unix == g.window_end_unix] == [1]
    far = cpq.report("n1", 4, requests=[(tq, g.window_end_unix + 40 * 86400, 1)])
    assert all(x.window_start_unix != g.window_end_unix + 40 * 86400 for x in far.grants)


def test_report_views_agree_with_get_spend_and_the_ledger(cpq):
    cpq.apply(tenants=[cpq.tenant("acme", "Asia/Kolkata", [cpq.quota(M_COST, W_MONTH, 5 * 10**9)],
                                  metadata={"billing_code": "AC-1"})],
              keys=[cpq.key("k1", "acme", [cpq.quota(M_REQUESTS, W_TOTAL, 100)]),
                    cpq.key("k2", "acme", metadata={"billing_code": "AC-2"})])
    rnd = random.Random(3)
    now_min = int(time.time()) // 60 * 60
    entries = [entry(key=rnd.choice(["k1", "k2"]), tenant="acme", provider=rnd.choice(["openai", "anthropic"]),
                     model=rnd.choice(["a", "b"]), minute=now_min - rnd.randint(0, 3 * 1440) * 60,
                     requests=rnd.randint(1, 5), cost_nano=rnd.randint(1, 10**9) * 3)
               for _ in range(40)]
    cpq.report("n1", 1, entries=entries)
    day = lambda ts: datetime.fromtimestamp(ts, timezone.utc).date()  # noqa: E731
    frm, to = str(day(now_min - 5 * 86400)), str(day(now_min + 2 * 86400))

    def spend(by):
        return cpq.admin("GetSpend", cpq.pb.admin.GetSpendRequest(tenant_id="acme", from_date=frm, to_date=to,
                                                                  group_by=by), cpq.pb.admin.GetSpendResponse)

    ledger_total = int(cpq.sql("SELECT sum(cost_nano) FROM usage_minute WHERE tenant_id = 'acme'"))
    by_day = spend("day")
    assert by_day.total.cost_nano == ledger_total == sum(e["cost_nano"] for e in entries)
    view = cpq.sql("SELECT day, cost_nano, requests, cost_usd FROM report.tenant_spend_daily "
                   "WHERE tenant_id = 'acme' ORDER BY day").splitlines()
    assert [(r.group, r.cost_nano, r.requests) for r in by_day.rows] == \
        [(d, int(c), int(n)) for d, c, n, _ in (v.split("|") for v in view)]
    for v in view:                                         # numeric USD, exact
        _, c, _, usd = v.split("|")
        assert usd.replace(".", "").lstrip("0").rstrip("0") == c.rstrip("0") or int(c) == 0
    model_view = cpq.sql("SELECT g, c FROM (SELECT provider || '/' || model AS g, sum(cost_nano) AS c "
                         "FROM report.model_spend WHERE tenant_id = 'acme' GROUP BY 1) s "
                         "ORDER BY g COLLATE \"C\"").splitlines()
    assert [(r.group, r.cost_nano) for r in spend("model").rows] == [(g, int(c)) for g, c in
                                                                      (v.split("|") for v in model_view)]
    key_view = cpq.sql("SELECT key_id, sum(cost_nano) FROM report.key_spend_monthly WHERE tenant_id = 'acme' "
                       "GROUP BY 1 ORDER BY 1").splitlines()
    assert [(r.group, r.cost_nano) for r in spend("key").rows] == [(g, int(c)) for g, c in
                                                                    (v.split("|") for v in key_view)]
    codes = dict(v.split("|") for v in cpq.sql("SELECT billing_code, sum(cost_nano) FROM "
                                                "report.billing_code_spend_monthly GROUP BY 1").splitlines())
    k2 = int(cpq.sql("SELECT COALESCE(sum(cost_nano), 0) FROM usage_minute WHERE key_id = 'k2'"))
    assert int(codes.get("AC-2", 0)) == k2 and int(codes.get("AC-1", 0)) == ledger_total - k2
    # quota status over the Admin API == report.quota_remaining
    k1q = cpq.quota_ids("k1")[("", M_REQUESTS, W_TOTAL)]
    cpq.report("n1", 2, requests=[(k1q, 0, 7)])
    status = cpq.admin("GetQuotaStatus", cpq.pb.admin.GetQuotaStatusRequest(key_id="k1"),
                       cpq.pb.admin.GetQuotaStatusResponse)
    assert [(s.scope_kind, s.scope_id) for s in status.quotas] == [("tenant", "acme"), ("virtual_key", "k1")]
    view = {int(q): (int(u), int(o), int(r)) for q, u, o, r in
            (v.split("|") for v in cpq.sql("SELECT quota_id, used, outstanding, remaining "
                                          "FROM report.quota_remaining").splitlines())}
    for s in status.quotas:
        assert view[int(s.quota.id)] == (s.used, s.outstanding, s.remaining)
        assert s.window_start_unix <= time.time() < s.window_end_unix
    k1 = [s for s in status.quotas if s.scope_id == "k1"][0]
    k1_requests = sum(e["requests"] for e in entries if e["key_id"] == "k1")
    assert (k1.used, k1.outstanding, k1.remaining) == (k1_requests, 7, max(100 - k1_requests - 7, 0))
    tenant = cpq.admin("GetQuotaStatus", cpq.pb.admin.GetQuotaStatusRequest(tenant_id="acme"),
                       cpq.pb.admin.GetQuotaStatusResponse)
    assert len(tenant.quotas) == 2


def test_spend_and_quota_status_requests_are_validated(cpq):
    cpq.apply(keys=[cpq.key("vk1", "t1")])
    bad = [({"from_date": "2026-01-01", "to_date": "2026-02-01"}, "tenant_id is required"),
           ({"tenant_id": "t1", "from_date": "2026-02-30", "to_date": "2026-03-01"},
            'from_date "2026-02-30" is not a date (YYYY-MM-DD)'),
           ({"tenant_id": "t1", "from_date": "2026-03-01", "to_date": "2026-03-01"},
            "to_date 2026-03-01 must be after from_date 2026-03-01 (to_date is exclusive)"),
           ({"tenant_id": "t1", "from_date": "2026-03-01", "to_date": "2026-04-01", "group_by": "week"},
            'group_by "week" is not day, model or key')]
    for fields, message in bad:
        with pytest.raises(grpc.RpcError) as e:
            cpq.admin("GetSpend", cpq.pb.admin.GetSpendRequest(**fields), cpq.pb.admin.GetSpendResponse)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and e.value.details() == message
    with pytest.raises(grpc.RpcError) as e:
        cpq.admin("GetSpend", cpq.pb.admin.GetSpendRequest(tenant_id="nope", from_date="2024-02-29",
                                                           to_date="2024-03-01"), cpq.pb.admin.GetSpendResponse)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    empty = cpq.admin("GetSpend", cpq.pb.admin.GetSpendRequest(tenant_id="t1", from_date="2024-02-29",
                                                               to_date="2024-03-01"), cpq.pb.admin.GetSpendResponse)
    assert list(empty.rows) == [] and empty.total.cost_nano == 0
    for fields in ({}, {"tenant_id": "t1", "key_id": "vk1"}):
        with pytest.raises(grpc.RpcError) as e:
            cpq.admin("GetQuotaStatus", cpq.pb.admin.GetQuotaStatusRequest(**fields),
                      cpq.pb.admin.GetQuotaStatusResponse)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "exactly one of tenant_id and key_id is required"
    with pytest.raises(grpc.RpcError) as e:
        cpq.admin("GetQuotaStatus", cpq.pb.admin.GetQuotaStatusRequest(key_id="nope"),
                  cpq.pb.admin.GetQuotaStatusResponse)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # bad lease fields make the report invalid (and nothing is applied)
    with pytest.raises(grpc.RpcError) as e:
        cpq.report("n1", 1, entries=[entry()], requests=[("12abc", 0, 1)])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert cpq.sql("SELECT count(*) FROM usage_minute") == "0"
    # unknown quotas and concurrency limits get no grant and do not fail the report
    assert list(cpq.report("n1", 2, requests=[("999999", 0, 1)]).grants) == []


def test_sluicectl_spend_and_quotas_print_the_api_numbers(cpq):
    cpq.apply(tenants=[cpq.tenant("acme", "America/New_York", [cpq.quota(M_COST, W_MONTH, 12000 * 10**9)])],
              keys=[cpq.key("vk_a", "acme", [cpq.quota(M_REQUESTS, W_TOTAL, 600)]), cpq.key("vk_b", "acme")])
    cpq.report("n1", 1, entries=[
        entry(key="vk_a", tenant="acme", minute=unix("2026-03-01T03:00:00Z"), requests=3, cost_nano=165000),
        entry(key="vk_b", tenant="acme", model="gpt-4o-mini", minute=unix("2026-03-01T05:00:00Z"), requests=1,
              cost_nano=12000 * 10**9 + 1)])

    def ctl(*args):
        out = subprocess.run([binary("sluicectl"), "--server", f"127.0.0.1:{cpq.grpc_port}", "--token-file",
                              cpq.path("admin.token")] + list(args), capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    csv = ctl("spend", "--tenant", "acme", "--from", "2026-02-28", "--to", "2026-03-02", "-o", "csv")
    assert csv.splitlines() == [
        "day,requests,errors,input_tokens,cached_input_tokens,output_tokens,cost_usd,cost_nano",
        "2026-02-28,3,0,10,0,5,0.000165,165000",                # 03:00Z is still February 28 in New York
        "2026-03-01,1,0,10,0,5,12000.000000001,12000000000001"]
    by_model = json.loads(ctl("spend", "--tenant", "acme", "--from", "2026-02-01", "--to", "2026-04-01", "--by",
                              "model", "-o", "json"))
    assert [(r["group"], r["cost_usd"]) for r in by_model["rows"]] == [("openai/gpt-4o", "0.000165"),
                                                                       ("openai/gpt-4o-mini", "12000.000000001")]
    assert by_model["total"]["cost_nano"] == 12000 * 10**9 + 165001
    api = cpq.admin("GetSpend", cpq.pb.admin.GetSpendRequest(tenant_id="acme", from_date="2026-02-01",
                                                             to_date="2026-04-01", group_by="key"),
                    cpq.pb.admin.GetSpendResponse)
    table = ctl("spend", "--tenant", "acme", "--from", "2026-02-01", "--to", "2026-04-01", "--by", "key")
    assert table.splitlines()[0].split()[:2] == ["KEY", "REQUESTS"]
    assert [line.split()[0] for line in table.splitlines()[1:]] == [r.group for r in api.rows] + ["TOTAL"]
    assert table.splitlines()[-1].split()[-1] == "12000.000165001"
    quotas = json.loads(ctl("quotas", "--key", "vk_a", "-o", "json"))["quotas"]
    assert [(q["scope_kind"], q["metric"], q["window"]) for q in quotas] == [("tenant", "cost", "month"),
                                                                           ("virtual_key", "requests", "total")]
    assert quotas[1]["used"] == 3 and quotas[1]["remaining"] == 597
    assert quotas[0]["limit_usd"] == "12000"
    bad = subprocess.run([binary("sluicectl"), "--server", f"127.0.0.1:{cpq.grpc_port}", "--token-file",
                          cpq.path("admin.token"), "quotas", "--tenant", "acme", "--key", "vk_a"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "exactly one of --tenant T and --key K" in bad.stderr


def test_replicas_share_lease_accounting_through_the_database(cpq, tmp_path):
    cpq.apply(keys=[cpq.key("vk1", "t1", [cpq.quota(M_COST, W_TOTAL, 1000)])])
    qid = cpq.quota_ids("vk1")[("", M_COST, W_TOTAL)]
    other = ControlPlane(cpq.pg, str(tmp_path), cpq.pb, replica_of=cpq, name="replica")
    try:
        assert cpq.report("n1", 1, requests=[(qid, 0, 600)]).grants[0].granted == 600
        # the node reconnects to the other replica: its lease, used and outstanding are there
        ack = other.report("n1", 2, entries=[entry(cost_nano=250)], requests=[(qid, 0, 1000)],
                           leases=[(qid, 0, 0, 350)])
        g = ack.grants[0]
        assert (g.used, g.granted, g.outstanding) == (250, 400, 750)
        assert other.report("n2", 1, requests=[(qid, 0, 1)]).grants[0].granted == 0
        # and a retry of a report applied by the first replica is a duplicate on the second
        again = other.report("n1", 1, requests=[(qid, 0, 600)])
        assert again.duplicate and again.grants[0].granted == 600
        assert cpq.window(qid) == (250, 750) and cpq.windows_off_ledger() == ""
    finally:
        other.close()
