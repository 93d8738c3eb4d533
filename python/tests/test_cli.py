"""The ``dify-plugin-client`` command line: settings precedence, config file errors, exit codes, output."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import tempfile
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dify_plugin_client.cli import main
from daemon_payloads import IDENTIFIER, TENANT, declaration, install_task, plugin_entity, tool_provider_row
from fixture_server import FixtureDaemon, Reply, chunk_text, sse_line, success_body

ENV_TENANT = "11111111-1111-4111-8111-111111111111"
FILE_TENANT = "22222222-2222-4222-8222-222222222222"
FLAG_TENANT = "33333333-3333-4333-8333-333333333333"
_EMPTY_HOME = tempfile.TemporaryDirectory(prefix="dify-cli-home-")  # never holds a .dify file


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process; HOME points at an empty directory unless ``environ`` sets it."""
    out, err = io.StringIO(), io.StringIO()
    env = dict(environ or {})
    env.setdefault("HOME", _EMPTY_HOME.name)
    code = main(argv, environ=env, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def servers() -> Iterator[dict[str, FixtureDaemon]]:
    """Three daemons with different keys: one named by the config file, one by env, one by a flag."""
    started = {name: FixtureDaemon(api_key=f"{name}-key").start() for name in ("file", "env", "flag")}
    for server in started.values():
        for tenant in (ENV_TENANT, FILE_TENANT, FLAG_TENANT, TENANT):
            server.json("GET", f"/plugin/{tenant}/management/list", {"list": [plugin_entity()], "total": 1})
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


def write_config(tmp_path: Path, **values: object) -> Path:
    path = tmp_path / "dify.json"
    path.write_text(json.dumps(values))
    return path


def effective(argv: list[str], environ: dict[str, str]) -> dict[str, object]:
    code, out, err = run(["-o", "json", *argv, "config"], environ)
    assert code == 0, err
    return json.loads(out)


# ------------------------------------------------------------------------------------------ precedence


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}  # no ~/.dify there
    settings = effective([], home)
    assert settings["url"] == "http://localhost:5002"
    assert settings["key"] == "pl**********ey"
    assert settings["timeout"] == 600.0
    assert settings["tenant"] is None
    sources = settings["sources"]
    assert isinstance(sources, dict) and set(sources.values()) == {"default"}


def test_config_file_overrides_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, url="http://file:1", key="file-key", timeout=7, tenant=FILE_TENANT)
    settings = effective(["--config", str(path)], {})
    assert (settings["url"], settings["key"], settings["timeout"], settings["tenant"]) == (
        "http://file:1", "fi****ey", 7.0, FILE_TENANT)


def test_default_config_file_is_home_dot_dify(tmp_path: Path) -> None:
    (tmp_path / ".dify").write_text(json.dumps({"url": "http://home:2", "tenant": FILE_TENANT}))
    settings = effective([], {"HOME": str(tmp_path)})
    assert settings["url"] == "http://home:2" and settings["tenant"] == FILE_TENANT
    assert str(tmp_path / ".dify") in settings["sources"]["url"]  # type: ignore[index]


def test_env_overrides_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, url="http://file:1", key="file-key", timeout=7, tenant=FILE_TENANT)
    env = {"DIFY_PLUGIN_DAEMON_URL": "http://env:3", "DIFY_PLUGIN_DAEMON_KEY": "env-key",
           "DIFY_PLUGIN_DAEMON_TIMEOUT": "9.5", "DIFY_PLUGIN_TENANT_ID": ENV_TENANT}
    settings = effective(["--config", str(path)], env)
    assert (settings["url"], settings["key"], settings["timeout"], settings["tenant"]) == (
        "http://env:3", "en***ey", 9.5, ENV_TENANT)
    assert settings["sources"]["tenant"] == "env DIFY_PLUGIN_TENANT_ID"  # type: ignore[index]


def test_flags_override_env_before_or_after_the_command(tmp_path: Path) -> None:
    path = write_config(tmp_path, url="http://file:1", key="file-key", timeout=7, tenant=FILE_TENANT)
    env = {"DIFY_PLUGIN_DAEMON_URL": "http://env:3", "DIFY_PLUGIN_DAEMON_KEY": "env-key",
           "DIFY_PLUGIN_DAEMON_TIMEOUT": "9.5", "DIFY_PLUGIN_TENANT_ID": ENV_TENANT}
    flags = ["--url", "http://flag:4", "--key", "flag-key", "--timeout", "3", "--tenant", FLAG_TENANT]
    before = effective(["--config", str(path), *flags], env)
    code, out, err = run(["config", "--config", str(path), *flags, "-o", "json"], env)
    assert code == 0, err
    after = json.loads(out)
    for settings in (before, after):
        assert (settings["url"], settings["key"], settings["timeout"], settings["tenant"]) == (
            "http://flag:4", "fl****ey", 3.0, FLAG_TENANT)


def test_precedence_decides_which_daemon_key_and_tenant_are_used(
    tmp_path: Path, servers: dict[str, FixtureDaemon]
) -> None:
    path = write_config(tmp_path, url=servers["file"].url, key="file-key", tenant=FILE_TENANT)
    # Level 1: config file only.
    code, out, err = run(["list", "--config", str(path)], {})
    assert code == 0, err
    assert servers["file"].requests[-1].path == f"/plugin/{FILE_TENANT}/management/list"
    # Level 2: env beats the file.
    env = {"DIFY_PLUGIN_DAEMON_URL": servers["env"].url, "DIFY_PLUGIN_DAEMON_KEY": "env-key",
           "DIFY_PLUGIN_TENANT_ID": ENV_TENANT}
    code, out, err = run(["list", "--config", str(path)], env)
    assert code == 0, err
    assert servers["env"].requests[-1].path == f"/plugin/{ENV_TENANT}/management/list"
    assert servers["env"].requests[-1].headers["x-api-key"] == "env-key"
    # Level 3: flags beat env.
    code, out, err = run(["--url", servers["flag"].url, "list", "--key", "flag-key", "--tenant", FLAG_TENANT,
                          "--config", str(path)], env)
    assert code == 0, err
    assert servers["flag"].requests[-1].path == f"/plugin/{FLAG_TENANT}/management/list"
    assert len(servers["file"].requests) == 1 and len(servers["env"].requests) == 1
    assert IDENTIFIER in out


def test_timeout_precedence_is_applied_to_requests(tmp_path: Path, daemon: FixtureDaemon) -> None:
    daemon.on("GET", f"/plugin/{TENANT}/management/list",
              Reply(body=success_body({"list": [], "total": 0}), delay=1.0))
    path = write_config(tmp_path, url=daemon.url, tenant=TENANT, timeout=0.2)
    code, _, err = run(["list", "--config", str(path)], {})
    assert code == 1 and "ReadTimeout" in err  # config file timeout 0.2 s is too short
    code, _, err = run(["list", "--config", str(path)], {"DIFY_PLUGIN_DAEMON_TIMEOUT": "5"})
    assert code == 0, err  # env raises it
    code, _, err = run(["list", "--config", str(path), "--timeout", "0.2"], {"DIFY_PLUGIN_DAEMON_TIMEOUT": "5"})
    assert code == 1 and "ReadTimeout" in err  # the flag lowers it again


# ------------------------------------------------------------------------------------------ config errors


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"url": 5}', '{"timeout": true}'])
def test_malformed_config_file_is_a_usage_error_naming_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    code, out, err = run(["--config", str(path), "list", "--tenant", TENANT], {})
    assert code == 2
    assert str(path) in err and "malformed config file" in err
    assert out == ""


def test_malformed_default_config_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / ".dify").write_text("url = http://x")
    code, _, err = run(["list", "--tenant", TENANT], {"HOME": str(tmp_path)})
    assert code == 2 and str(tmp_path / ".dify") in err


def test_missing_explicit_config_file_and_bad_values(tmp_path: Path) -> None:
    code, _, err = run(["--config", str(tmp_path / "nope.json"), "list"], {})
    assert code == 2 and "does not exist" in err
    code, _, err = run(["list", "--tenant", TENANT, "--timeout", "soon"], {"HOME": str(tmp_path)})
    assert code == 2 and "invalid timeout" in err
    code, _, err = run(["list", "--tenant", TENANT], {"DIFY_PLUGIN_DAEMON_URL": "ftp://x"})
    assert code == 2 and "DIFY_PLUGIN_DAEMON_URL" in err
    code, _, err = run(["list", "--tenant", TENANT, "-o", "xml"], {})
    assert code == 2
    code, _, err = run([], {})
    assert code == 2 and "command is required" in err


def test_missing_tenant_is_a_usage_error(tmp_path: Path, daemon: FixtureDaemon) -> None:
    code, _, err = run(["--url", daemon.url, "list", "--config", str(write_config(tmp_path))], {})
    assert code == 2 and "--tenant" in err
    assert daemon.requests == []


# ------------------------------------------------------------------------------------------ exit codes


def test_rejected_key_exits_4(daemon: FixtureDaemon) -> None:
    code, _, err = run(["--url", daemon.url, "--key", "wrong", "list", "--tenant", TENANT], {})
    assert code == 4 and "rejected the API key" in err


def test_unreachable_daemon_exits_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = run(["--url", f"http://127.0.0.1:{port}", "list", "--tenant", TENANT], {})
    assert code == 1 and "ConnectError" in err


def test_other_api_exits_6(daemon: FixtureDaemon) -> None:
    daemon.json("GET", f"/plugin/{TENANT}/management/list", {"items": "not the expected shape"})
    code, _, err = run([*base(daemon), "list"])
    assert code == 6 and "does not match" in err
    code, _, err = run([*base(daemon), "tasks"])  # no such route on this daemon: NoRoute 404
    assert code == 6 and "HTTP 404" in err


def test_daemon_error_exits_1(daemon: FixtureDaemon) -> None:
    daemon.error("GET", f"/plugin/{TENANT}/management/fetch/manifest", -400, "PluginDaemonBadRequestError",
                 "plugin not found")
    code, _, err = run(["--url", daemon.url, "manifest", IDENTIFIER, "--tenant", TENANT], {})
    assert code == 1 and "PluginDaemonBadRequestError: plugin not found" in err


# ------------------------------------------------------------------------------------------ commands


def base(daemon: FixtureDaemon) -> list[str]:
    return ["--url", daemon.url, "--tenant", TENANT]


def test_list_outputs_text_json_yaml(daemon: FixtureDaemon) -> None:
    daemon.json("GET", f"/plugin/{TENANT}/management/list", {"list": [plugin_entity()], "total": 1})
    code, out, _ = run([*base(daemon), "list"])
    assert code == 0 and out.splitlines()[0].startswith(IDENTIFIER) and "total: 1" in out
    code, out, _ = run([*base(daemon), "list", "-o", "json"])
    assert code == 0 and json.loads(out)["list"][0]["plugin_unique_identifier"] == IDENTIFIER
    code, out, _ = run([*base(daemon), "-o", "yaml", "list"])
    assert code == 0 and yaml.safe_load(out)["total"] == 1


def test_upload_pkg_and_install_from_file_waits_for_task(tmp_path: Path, daemon: FixtureDaemon) -> None:
    pkg = tmp_path / "p.difypkg"
    pkg.write_bytes(b"PKdata")
    m = f"/plugin/{TENANT}/management"
    daemon.json("POST", f"{m}/install/upload/package",
                {"unique_identifier": IDENTIFIER, "manifest": declaration(), "verification": None})
    daemon.json("POST", f"{m}/install/identifiers", {"all_installed": False, "task_id": "t1"})
    polls = iter([install_task(), install_task("success", "success", "installed")])
    daemon.on("GET", f"{m}/install/tasks/t1", lambda _r: Reply(body=success_body(next(polls))))
    code, out, err = run([*base(daemon), "upload-pkg", str(pkg)])
    assert code == 0 and out.strip() == IDENTIFIER
    code, out, err = run([*base(daemon), "install", "--file", str(pkg), "--poll-interval", "0.05"])
    assert code == 0, err
    assert f"{IDENTIFIER}: success installed" in out
    assert daemon.requests_to(f"{m}/install/identifiers")[0].json()["source"] == "package"
    assert len(daemon.requests_to(f"{m}/install/tasks/t1")) == 2


def test_install_failed_task_exits_1(daemon: FixtureDaemon) -> None:
    m = f"/plugin/{TENANT}/management"
    daemon.json("POST", f"{m}/install/identifiers", {"all_installed": False, "task_id": "t2"})
    daemon.json("GET", f"{m}/install/tasks/t2", install_task("failed", "failed", "bad env"))
    code, out, err = run([*base(daemon), "install", "--identifier", IDENTIFIER, "--source", "marketplace",
                          "-o", "json"])
    assert code == 1 and "failed" in err
    assert json.loads(out)["plugins"][0]["message"] == "bad env"
    assert daemon.requests_to(f"{m}/install/identifiers")[0].json() == {
        "plugin_unique_identifiers": [IDENTIFIER], "source": "marketplace",
        "metas": [{"plugin_unique_identifier": IDENTIFIER}]}


def test_invoke_prints_text_and_casts_params(daemon: FixtureDaemon) -> None:
    daemon.json("GET", f"/plugin/{TENANT}/management/tool", tool_provider_row())
    daemon.sse("POST", f"/plugin/{TENANT}/dispatch/tool/invoke", [chunk_text("he"), chunk_text("y")])
    code, out, err = run([*base(daemon), "invoke", "acme/searcher/search", "typed", "-p", "text=a",
                          "-p", "count=4", "--credentials", '{"k": "v"}'])
    assert code == 0, err
    assert out == "hey\n"
    sent = daemon.requests_to(f"/plugin/{TENANT}/dispatch/tool/invoke")[0].json()["data"]
    assert sent["tool_parameters"] == {"text": "a", "count": 4} and sent["credentials"] == {"k": "v"}
    code, _, err = run([*base(daemon), "invoke", "acme/searcher/search", "typed", "-p", "count=4"])
    assert code == 2 and "'text' is required" in err


def test_small_commands(daemon: FixtureDaemon) -> None:
    m = f"/plugin/{TENANT}/management"
    daemon.json("GET", f"{m}/install/tasks", [install_task()])
    daemon.json("GET", f"{m}/install/tasks/t3", install_task())
    daemon.json("GET", f"{m}/fetch/readme", {"content": "# hi", "language": "en_US"})
    daemon.json("POST", f"{m}/installation/missing", [{"plugin_unique_identifier": IDENTIFIER,
                                                        "current_identifier": ""}])
    daemon.json("GET", f"{m}/tools", [tool_provider_row()])
    daemon.json("GET", f"{m}/fetch/manifest", declaration())
    daemon.json("GET", f"{m}/list", {"list": [plugin_entity()], "total": 1})
    daemon.json("POST", f"{m}/uninstall", True)
    assert "running" in run([*base(daemon), "tasks"])[1]
    assert "starting" in run([*base(daemon), "task", "t3"])[1]
    assert run([*base(daemon), "readme", IDENTIFIER])[1] == "# hi\n"
    assert "not installed" in run([*base(daemon), "missing", IDENTIFIER])[1]
    assert "acme/searcher/search\ttyped" in run([*base(daemon), "tools"])[1]
    assert "acme/searcher 0.0.1 (tool)" in run([*base(daemon), "manifest", IDENTIFIER])[1]
    code, out, _ = run([*base(daemon), "uninstall", "acme/searcher"])
    assert code == 0 and out == "true\n"
    assert daemon.requests_to(f"{m}/uninstall")[0].json() == {
        "plugin_installation_id": plugin_entity()["installation_id"]}


def test_console_script_runs_as_a_real_process(tmp_path: Path, daemon: FixtureDaemon) -> None:
    """``python -m dify_plugin_client`` (same entry point as the console script) with a real environment."""
    daemon.json("GET", f"/plugin/{ENV_TENANT}/management/list", {"list": [], "total": 0})
    env = {**os.environ, "HOME": str(tmp_path), "DIFY_PLUGIN_DAEMON_URL": daemon.url,
           "DIFY_PLUGIN_TENANT_ID": ENV_TENANT}
    done = subprocess.run([sys.executable, "-m", "dify_plugin_client", "list", "-o", "json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"list": [], "total": 0}
    (tmp_path / ".dify").write_text("{broken")
    done = subprocess.run([sys.executable, "-m", "dify_plugin_client", "list"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and str(tmp_path / ".dify") in done.stderr


def test_invoke_json_output_keeps_blobs_as_base64(daemon: FixtureDaemon) -> None:
    blob = base64.b64encode(b"\xff\x00").decode()
    daemon.sse("POST", f"/plugin/{TENANT}/dispatch/tool/invoke", [
        chunk_text("t"),
        sse_line(success_body({"type": "blob", "message": {"blob": blob}, "meta": {"mime_type": "x/y"}}))])
    code, out, err = run([*base(daemon), "invoke", "acme/searcher/search", "search", "--no-validate", "-o", "json"])
    assert code == 0, err
    assert json.loads(out) == [
        {"type": "text", "message": {"text": "t"}, "meta": None},
        {"type": "blob", "message": {"blob": blob}, "meta": {"mime_type": "x/y"}}]
    code, out, err = run([*base(daemon), "invoke", "acme/searcher/search", "search", "--no-validate"])
    assert code == 0 and out == "t\n[blob] 2 bytes (x/y)\n"


def test_rust_cli_spellings_and_upgrade(tmp_path: Path, daemon: FixtureDaemon) -> None:
    """The flags of the Rust dify-plugin-client work here too."""
    m = f"/plugin/{TENANT}/management"
    pkg = tmp_path / "p.difypkg"
    pkg.write_bytes(b"PK")
    daemon.json("POST", f"{m}/install/upload/package",
                {"unique_identifier": IDENTIFIER, "manifest": declaration(), "verification": None})
    daemon.json("GET", f"{m}/tool", tool_provider_row())
    daemon.sse("POST", f"/plugin/{TENANT}/dispatch/tool/invoke", [chunk_text("ok")])
    daemon.json("POST", f"{m}/install/upgrade", {"all_installed": False, "task_id": "t4"})
    daemon.json("GET", f"{m}/install/tasks/t4", install_task("success", "success", "upgraded"))
    daemon.json("POST", f"{m}/install/identifiers", {"all_installed": True, "task_id": ""})

    assert run([*base(daemon), "upload-pkg", "--file", str(pkg)])[:2] == (0, IDENTIFIER + "\n")
    assert run([*base(daemon), "upload-pkg"])[0] == 2
    code, out, err = run([*base(daemon), "invoke", "--provider", "acme/searcher/search", "--tool", "search",
                          "--user", "u1", "--params", '{"query": "q"}'])
    assert (code, out) == (0, "ok\n"), err
    sent = daemon.requests_to(f"/plugin/{TENANT}/dispatch/tool/invoke")[0].json()
    assert sent["user_id"] == "u1" and sent["data"]["tool_parameters"] == {"query": "q"}
    assert run([*base(daemon), "invoke", "--tool", "search"])[0] == 2

    code, out, err = run([*base(daemon), "upgrade", "--from", IDENTIFIER, "--to", IDENTIFIER.replace("0.0.1", "0.0.2"),
                          "--poll-interval", "0.01"])
    assert code == 0, err
    assert "success upgraded" in out
    assert daemon.requests_to(f"{m}/install/upgrade")[0].json()["source"] == "package"

    code, out, err = run([*base(daemon), "install", "--identifier", IDENTIFIER])
    assert code == 0 and "task -: success" in out
    assert daemon.requests_to(f"{m}/install/identifiers")[0].json() == {
        "plugin_unique_identifiers": [IDENTIFIER], "source": "package", "metas": [{}]}

    code, out, _ = run([*base(daemon), "tools", "--provider", "acme/searcher/search"])
    assert code == 0 and out == "acme/searcher/search\tsearch\nacme/searcher/search\ttyped\n"
