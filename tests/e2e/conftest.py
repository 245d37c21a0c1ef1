"""pytest fixtures: one PostgreSQL cluster per session, one database and one
control plane + mock provider per test."""

import os
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import REPO, Cluster, Postgres, mock_provider  # noqa: E402

SEED_YAML = """\
virtual_keys:
- id: vk_acme_prod
  customer_id: acme_corp
  budget:
    max_per_month_usd: 12000
    reset_duration: monthly
  rate_limit:
    requests_per_minute: 600
  allowed_providers:
  - openai
  - anthropic
  - bedrock
  fallbacks:
  - provider: openai
    model: gpt-4o
  - provider: anthropic
    model: claude-sonnet-4-6
  - provider: bedrock
    model: anthropic.claude-sonnet-4-6
"""


def mock_provider_yaml(port, name="openai"):
    return f"""\
providers:
{mock_provider(name, "openai", port)}
models:
- {{provider: openai, model: gpt-4o, input_usd_per_mtok: 2.50, output_usd_per_mtok: 10.00, cached_input_usd_per_mtok: 1.25}}
- {{provider: openai, model: gpt-4o-mini, input_usd_per_mtok: 0.15, output_usd_per_mtok: 0.60}}
- {{provider: anthropic, model: claude-sonnet-4-6, input_usd_per_mtok: 3, output_usd_per_mtok: 15}}
"""


@pytest.fixture(scope="session")
def session_dir():
    with tempfile.TemporaryDirectory(prefix="sluice-e2e-") as d:
        os.chmod(d, 0o755)
        yield d


@pytest.fixture(scope="session")
def pg(session_dir):
    server = Postgres(session_dir)
    yield server
    server.stop()


@pytest.fixture
def cluster(pg, tmp_path):
    c = Cluster(pg, str(tmp_path))
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture
def seeded(cluster):
    """The seed YAML plus a provider pointing at the mock; returns (cluster, secret)."""
    created = cluster.apply(mock_provider_yaml(cluster.mock_port) + SEED_YAML)
    assert "vk_acme_prod" in created, cluster.last_apply_output
    return cluster, created["vk_acme_prod"]


@pytest.fixture(scope="session")
def pb(session_dir):
    """Python protobuf modules generated from proto/ at test time."""
    out = os.path.join(session_dir, "pb")
    os.makedirs(out, exist_ok=True)
    protos = ["sluice/config/v1/config.proto", "sluice/sync/v1/sync.proto", "sluice/admin/v1/admin.proto"]
    subprocess.run(["protoc", "-I", os.path.join(REPO, "proto"), "--python_out", out] + protos, check=True)
    sys.path.insert(0, out)
    from sluice.sync.v1 import sync_pb2  # noqa: E402
    from sluice.admin.v1 import admin_pb2  # noqa: E402
    return type("pb", (), {"sync": sync_pb2, "admin": admin_pb2})
