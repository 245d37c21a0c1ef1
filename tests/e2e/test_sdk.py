"""End-to-end: the official OpenAI and Anthropic Node SDKs, unchanged, against
the data plane (tests/e2e/sdk/). The SDKs are installed with npm, at pinned
versions that run on Node 20, into a cache directory (SLUICE_SDK_CACHE, by
default ~/.cache/sluice/e2e-sdk/<hash of package.json>) on first use. The
test is skipped only when node or npm is missing."""

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from harness import REPO, mock_provider

SDK_DIR = os.path.join(REPO, "tests", "e2e", "sdk")

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="node and npm are needed for the SDK tests")


def sdk_env():
    """The cache directory with the pinned SDKs installed and the scripts copied in."""
    with open(os.path.join(SDK_DIR, "package.json"), "rb") as f:
        manifest = f.read()
    default = os.path.join(os.path.expanduser("~"), ".cache", "sluice", "e2e-sdk",
                           hashlib.sha256(manifest).hexdigest()[:16])
    cache = os.environ.get("SLUICE_SDK_CACHE", default)
    os.makedirs(cache, exist_ok=True)
    marker = os.path.join(cache, ".installed")
    if not os.path.exists(marker):
        with open(os.path.join(cache, "package.json"), "wb") as f:
            f.write(manifest)
        out = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=cache,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"npm install failed:\n{out.stdout}\n{out.stderr}"
        open(marker, "w").close()
    for name in os.listdir(SDK_DIR):
        if name.endswith(".mjs"):
            shutil.copy(os.path.join(SDK_DIR, name), os.path.join(cache, name))
    return cache


def run_script(cache, script, env):
    out = subprocess.run(["node", os.path.join(cache, script)], cwd=cache, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, **env))
    assert out.returncode == 0, f"{script} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def config(port):
    return f"""\
providers:
{mock_provider("openai", "openai", port)}
{mock_provider("anthropic", "anthropic", port)}
models:
- {{provider: openai, model: gpt-4o, input_usd_per_mtok: 2.50, output_usd_per_mtok: 10.00}}
- {{provider: openai, model: text-embedding-3-small, input_usd_per_mtok: 0.02, output_usd_per_mtok: 0}}
- {{provider: anthropic, model: claude-sonnet-4-6, input_usd_per_mtok: 3, output_usd_per_mtok: 15}}
virtual_keys:
- id: vk_sdk
  customer_id: sdk_tests
"""


@pytest.fixture
def sdk_cluster(cluster):
    cache = sdk_env()
    secret = cluster.apply(config(cluster.mock_port))["vk_sdk"]
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    return cluster, dp, secret, cache


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-6"])
def test_openai_node_sdk_streams_and_not_through_the_gateway(sdk_cluster, model):
    cluster, dp, secret, cache = sdk_cluster
    out = run_script(cache, "openai_sdk.mjs", {"SLUICE_BASE_URL": f"http://127.0.0.1:{dp.api_port}/v1",
                                               "SLUICE_KEY": secret, "SLUICE_MODEL": model})
    c = out["completion"]
    assert c["content"].startswith("mock"), out
    assert c["usage"]["prompt_tokens"] > 0 and c["usage"]["completion_tokens"] == 5, out
    assert c["provider"] == ("openai" if model == "gpt-4o" else "anthropic") and c["attempts"] == "1"
    s = out["stream"]
    assert s["text"] == "mock word1 word2 word3 word4 word5", out
    assert s["usage"]["completion_tokens"] == 6, out
    assert out["helper"]["content"] == "mock word1 word2 word3", out
    assert out["embeddings"]["n"] == 2 and out["embeddings"]["dims"] == 8, out
    assert out["embeddings"]["usage"]["prompt_tokens"] == 3, out
    assert set(out["models"]) >= {"gpt-4o", "claude-sonnet-4-6", "text-embedding-3-small"}, out
    assert out["error"] == {"status": 400, "type": "BadRequestError",
                            "message": "400 you must provide a model parameter"}, out
    assert out["auth_error"] == {"status": 401, "type": "AuthenticationError"}, out


def test_anthropic_node_sdk_against_messages_ingress(sdk_cluster):
    cluster, dp, secret, cache = sdk_cluster
    out = run_script(cache, "anthropic_sdk.mjs", {"SLUICE_BASE_URL": f"http://127.0.0.1:{dp.api_port}",
                                                  "SLUICE_KEY": secret,
                                                  "SLUICE_MODELS": "claude-sonnet-4-6,gpt-4o"})
    for model, provider in (("claude-sonnet-4-6", "anthropic"), ("gpt-4o", "openai")):
        r = out[model]
        m = r["message"]
        assert m["type"] == "message" and m["role"] == "assistant", out
        assert m["text"].startswith("mock"), out
        assert m["stop_reason"] == "max_tokens", out
        assert m["usage"]["input_tokens"] > 0 and m["usage"]["output_tokens"] == 5, out
        assert m["provider"] == provider, out
        s = r["stream"]
        assert s["text"] == "mock word1 word2 word3 word4 word5", out
        assert s["events"][0] == "message_start" and s["events"][-1] == "message_stop", out
        assert "content_block_delta" in s["events"], out
        assert s["usage"]["output_tokens"] == 6, out
        t = r["tool"]
        assert t["stop_reason"] == "tool_use" and t["name"] == "get_weather", out
        assert t["input"] == {"location": "Paris"}, out
    assert out["error"] == {"status": 400, "type": "BadRequestError", "error_type": "invalid_request_error"}, out
