"""Every code example of ``python/README.md`` (the specification's examples), run as written.

Against the daemon built from this repository with the SDK tool plugin of ``tests/e2e_plugin``, only the
daemon URL and key, the package file, the tenant, the tool provider and the tool are replaced (see
``readme_examples``). The Python examples run in order in one namespace, as a reader pasting them would;
the shell and JSON examples run through the CLI. Then every method of the README's method list is called
with its keyword names on both clients, and its return type is checked against the list.

The same Python examples also run against the fixture daemon, where every call succeeds (so each example
runs to its last line) or answers with upstream's error payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shlex
import sys
import time
import traceback
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dify_plugin_client
from daemon_payloads import IDENTIFIER, IDENTIFIER_V2, TENANT
from daemon_process import DaemonProcess, build_package
from dify_plugin_client import (
    AsyncDifyPluginClient,
    DifyPluginClient,
    PluginConfig,
    PluginDaemonBadRequestError,
    PluginDaemonError,
    PluginNotFoundError,
)
from dify_plugin_client import entities
from dify_plugin_client.cli import main as cli_main
from dify_plugin_client.entities.tool import ToolInvokeMessage
from fixture_server import FixtureDaemon, RecordedRequest, Reply, chunk_text, error_body, sse_line, success_body
from readme_examples import (
    EXAMPLE_CLI_PROVIDER,
    EXAMPLE_CLI_TOOL,
    EXAMPLE_KEY,
    EXAMPLE_PACKAGE,
    EXAMPLE_PROVIDER,
    EXAMPLE_URL,
    Example,
    examples,
    signatures,
    unmarked_code_blocks,
)
from scenarios import happy

PROVIDER = "e2etest/searcher/search"
TOOL = "search"  # the example's tool name is the test plugin's tool name: nothing to replace
PYTHON_EXAMPLES = [
    "configuration",
    "upload-and-install",
    "list-manifest-readme",
    "invoke-streaming",
    "missing-dependencies",
    "uninstall-or-upgrade",
    "async-client",
]


def test_every_code_block_is_a_named_example() -> None:
    assert unmarked_code_blocks() == []
    found = examples()
    assert set(found) == {*PYTHON_EXAMPLES, "install", "cli", "cli-config-file"}
    assert [name for name in found if found[name].language == "python"] == PYTHON_EXAMPLES


# ------------------------------------------------------------------------------------------- running examples


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    import os

    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def run_example(example: Example, namespace: dict[str, Any], replacements: dict[str, str]) -> tuple[str, Any]:
    """Execute one Python example in ``namespace``; returns what it printed and what it raised (or None)."""
    code = compile(example.substituted(replacements), f"README.md example {example.name}", "exec")
    printed = io.StringIO()
    raised: BaseException | None = None
    with contextlib.redirect_stdout(printed):
        try:
            exec(code, namespace)
        except Exception as exc:  # noqa: BLE001 - the caller asserts on it
            raised = exc
    return printed.getvalue(), raised


def failing_line(exc: BaseException, example: str) -> str:
    """The source line of the example that raised ``exc``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == f"README.md example {example}"]
    assert frames, f"{exc!r} was not raised by example {example}"
    line = examples()[example].code.splitlines()[(frames[-1].lineno or 1) - 1]
    return line.strip()


def daemon_replacements(url: str, key: str, package: Path) -> dict[str, dict[str, str]]:
    connect = {EXAMPLE_URL: url, EXAMPLE_KEY: key}
    return {
        "configuration": connect,
        "upload-and-install": {**connect, EXAMPLE_PACKAGE: str(package)},
        "list-manifest-readme": {},
        "invoke-streaming": {EXAMPLE_PROVIDER: PROVIDER},
        "missing-dependencies": {},
        "uninstall-or-upgrade": {},
        "async-client": {**connect, EXAMPLE_PROVIDER: PROVIDER},
    }


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path_factory.mktemp("readme-daemon")).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("readme-package") / "searcher.difypkg"
    path.write_bytes(build_package("0.0.1"))
    return path


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    return {}


def test_python_examples_run_as_written(daemon: DaemonProcess, package: Path, state: dict[str, Any]) -> None:
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    replacements = daemon_replacements(daemon.url, daemon.key, package)
    found = examples()
    outputs: dict[str, str] = {}
    errors: dict[str, Any] = {}
    for name in PYTHON_EXAMPLES:
        outputs[name], errors[name] = run_example(found[name], namespace, replacements[name])
    try:
        # Configuration: a client for the daemon.
        assert errors["configuration"] is None
        # Upload and install: the poll loop ends with the task's success.
        assert errors["upload-and-install"] is None, daemon.log_tail()
        assert namespace["t"].status == "success", [p.message for p in namespace["t"].plugins]
        assert namespace["decoded"].unique_identifier.startswith("e2etest/searcher:0.0.1@")
        tenant_id = namespace["tenant_id"]
        # Listing: one plugin, its manifest and README.
        assert errors["list-manifest-readme"] is None
        assert outputs["list-manifest-readme"] == "searcher 0.0.1\n"
        assert namespace["manifest"].version == "0.0.1"
        assert isinstance(namespace["readme"], str)
        # Streaming: the text chunks, then the JSON message's object through `.data`.
        assert errors["invoke-streaming"] is None
        assert outputs["invoke-streaming"] == (
            "result 1 for hello world\nresult 2 for hello world\n"
            "{'query': 'hello world', 'limit': 2, 'types': {'limit': 'int'}}\n"
        )
        # The placeholder identifiers fail the daemon's identifier validation: a mapped daemon error.
        assert isinstance(errors["missing-dependencies"], PluginDaemonBadRequestError)
        assert "plugin_unique_identifier" in errors["missing-dependencies"].description
        assert failing_line(errors["missing-dependencies"], "missing-dependencies").startswith("missing = ")
        # Uninstall/upgrade with placeholders: the first call the daemon refuses raises its mapped error,
        # never a TypeError. Upstream refuses the unknown installation id (PluginNotFoundError); a daemon
        # that still answers `true` there refuses the placeholder identifiers of the upgrade instead.
        error = errors["uninstall-or-upgrade"]
        assert isinstance(error, PluginDaemonError), error
        line = failing_line(error, "uninstall-or-upgrade")
        if isinstance(error, PluginNotFoundError):
            assert line.startswith("client.uninstall(") and error.description == "plugin not found"
        else:
            assert isinstance(error, PluginDaemonBadRequestError) and line.startswith("client.upgrade_plugin(")
            assert "OriginalPluginUniqueIdentifier" in error.description
        # Async client: the same listing and stream.
        assert errors["async-client"] is None
        assert outputs["async-client"] == "searcher 0.0.1\nresult 1 for hello world\nresult 2 for hello world\n"
    finally:
        namespace["client"].close()
    state.update(tenant=tenant_id, identifier=namespace["decoded"].unique_identifier, task_id=namespace["task"].task_id)


def cli(argv: list[str], home: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(argv, environ={"HOME": str(home)}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_examples_run_as_written(daemon: DaemonProcess, package: Path, state: dict[str, Any],
                                     tmp_path: Path) -> None:
    """Each command line of the CLI example, with ``[--tenant <tenant-id>]`` given, the package file, the
    provider and tool replaced, and the daemon URL/key from a config file (the next example)."""
    config = tmp_path / "dify.json"
    config.write_text(json.dumps({"url": daemon.url, "key": daemon.key}))
    tenant = state["tenant"]
    identifier = state["identifier"]
    text = examples()["cli"].substituted({
        "[--tenant <tenant-id>]": f"--tenant {tenant}",
        "<user-id>": "user-123",
        "./my_plugin.difypkg": str(package),
        EXAMPLE_CLI_PROVIDER: PROVIDER,
        f"--tool {EXAMPLE_CLI_TOOL}": f"--tool {TOOL}",
        "plugin@1.0.0": identifier,
    })
    commands = [shlex.split(line) for line in text.replace("\\\n", " ").splitlines() if line.strip()]
    assert [c[1] for c in commands] == ["list", "upload-pkg", "install", "install", "invoke"]
    outputs = []
    for command in commands:
        assert command[0] == "dify-plugin-client"
        code, out, err = cli([*command[1:], "--config", str(config)], tmp_path)
        assert code == 0, (command, out, err)
        outputs.append(out)
    assert identifier in outputs[0]
    assert outputs[1] == identifier + "\n"
    assert all("success" in out for out in outputs[2:4])
    assert outputs[4] == 'result 1 for hello\nresult 2 for hello\n[json] {"query":"hello","limit":2,"types":{"limit":"int"}}\n'


def test_cli_config_file_example(daemon: DaemonProcess, state: dict[str, Any], tmp_path: Path) -> None:
    text = examples()["cli-config-file"].substituted(
        {EXAMPLE_URL: daemon.url, EXAMPLE_KEY: daemon.key, "your-tenant-id": state["tenant"]}
    )
    (tmp_path / ".dify").write_text(text)
    code, out, err = cli(["list", "-o", "json"], tmp_path)  # ~/.dify, the default file
    assert code == 0, err
    assert [p["plugin_unique_identifier"] for p in json.loads(out)["list"]] == [state["identifier"]]
    code, out, err = cli(["config", "-o", "json"], tmp_path)
    assert code == 0 and json.loads(out)["timeout"] == 120.0


def test_install_example_is_how_this_package_is_installed() -> None:
    """The install example is what the test set-up runs (scripts/test: ``pip install -e "python[test]"``):
    the package imported here is this directory's source, installed in editable mode."""
    assert examples()["install"].code == "pip install -e .  # or pip install .\n"
    source = Path(dify_plugin_client.__file__).resolve()
    assert source == Path(__file__).resolve().parents[1] / "src" / "dify_plugin_client" / "__init__.py"


# ------------------------------------------------------------------------------------------- the method list


def resolve(annotation: str) -> Any:
    names = {**vars(typing), **vars(entities), "ToolInvokeMessage": ToolInvokeMessage}
    from collections.abc import AsyncGenerator, Generator

    names.update(Generator=Generator, AsyncGenerator=AsyncGenerator)
    return eval(annotation, names)  # noqa: S307 - annotations of this package and the README


def same_type(ours: Any, documented: Any) -> bool:
    """Equal, or, for unions of ``ToolInvokeMessage`` variants, every variant a subclass of the documented one."""
    if ours == documented:
        return True
    if typing.get_origin(ours) is typing.Union:
        return all(isinstance(documented, type) and issubclass(member, documented) for member in typing.get_args(ours))
    ours_args, documented_args = typing.get_args(ours), typing.get_args(documented)
    return (
        typing.get_origin(ours) is typing.get_origin(documented) is not None
        and len(ours_args) == len(documented_args)
        and all(same_type(a, b) for a, b in zip(ours_args, documented_args))
    )


@pytest.mark.parametrize("client_class", [DifyPluginClient, AsyncDifyPluginClient])
def test_method_list_matches_both_clients(client_class: type) -> None:
    listed = signatures()
    assert len(listed) == 22
    hints_module = sys.modules[client_class.__module__]
    for signature in listed:
        method = getattr(client_class, signature.name)
        parameters = list(__import__("inspect").signature(method).parameters)
        assert parameters[1 : 1 + len(signature.parameters)] == signature.parameters, signature.name
        documented = resolve(signature.returns)
        ours = typing.get_type_hints(method, vars(hints_module))["return"]
        if client_class is AsyncDifyPluginClient and signature.name == "invoke":
            from collections.abc import AsyncGenerator

            documented = AsyncGenerator[typing.get_args(documented)[0], None]  # type: ignore[valid-type]
        assert same_type(ours, documented), (signature.name, ours, documented)


def keyword_calls(tenant: str, identifier: str, new_identifier: str, task_id: str, package: bytes,
                  installation_id: Any) -> dict[str, Any]:
    """Arguments for every listed method, by the README's keyword names (a function: computed when called)."""
    return {
        "upload_pkg": dict(tenant_id=tenant, pkg=package, verify_signature=False),
        "upload_bundle": dict(tenant_id=tenant, bundle=b"not a bundle", verify_signature=False),
        "install_from_identifiers": dict(tenant_id=tenant, identifiers=[identifier], source="package", metas=[{}]),
        "fetch_plugin_installation_task": dict(tenant_id=tenant, task_id=task_id),
        "fetch_plugin_installation_tasks": dict(tenant_id=tenant, page=1, page_size=10),
        "delete_plugin_installation_task": dict(tenant_id=tenant, task_id=task_id),
        "delete_all_plugin_installation_task_items": dict(tenant_id=tenant),
        "delete_plugin_installation_task_item": dict(tenant_id=tenant, task_id=task_id, identifier=identifier),
        "fetch_missing_dependencies": dict(tenant_id=tenant, plugin_unique_identifiers=[identifier, new_identifier]),
        "fetch_plugin_installation_by_ids": dict(tenant_id=tenant, plugin_ids=["e2etest/searcher"]),
        "list_plugins": dict(tenant_id=tenant),
        "list_plugins_with_total": dict(tenant_id=tenant, page=1, page_size=10),
        "fetch_plugin_manifest": dict(tenant_id=tenant, plugin_unique_identifier=identifier),
        "decode_plugin_from_identifier": dict(tenant_id=tenant, plugin_unique_identifier=identifier),
        "fetch_plugin_readme": dict(tenant_id=tenant, plugin_unique_identifier=identifier, language="en_US"),
        "fetch_plugin_by_identifier": dict(tenant_id=tenant, identifier=identifier),
        "fetch_tool_providers": dict(tenant_id=tenant),
        "fetch_tool_provider": dict(tenant_id=tenant, provider=PROVIDER),
        "check_tools_existence": dict(tenant_id=tenant, provider_ids=[
            {"plugin_id": "e2etest/searcher", "provider_name": "search"}]),
        "invoke": dict(tenant_id=tenant, user_id="user-123", tool_provider=PROVIDER, tool_name=TOOL,
                       credentials={}, tool_parameters={"query": "kw"}),
        "upgrade_plugin": dict(tenant_id=tenant, original_plugin_unique_identifier=identifier,
                               new_plugin_unique_identifier=new_identifier, source="package", meta={}),
        # After the upgrade: the tenant's installation, looked up then.
        "uninstall": lambda: dict(tenant_id=tenant, plugin_installation_id=installation_id()),
    }


def check_results(results: dict[str, tuple[Any, Any]], identifier: str, new_identifier: str) -> None:
    """What the daemon answers each keyword call of ``keyword_calls``."""
    # Not a bundle: the daemon's mapped bad request (the call reached it with its keywords).
    result, error = results.pop("upload_bundle")
    assert isinstance(error, PluginDaemonBadRequestError), error
    checks = {
        "upload_pkg": lambda r: r.unique_identifier == identifier,
        "install_from_identifiers": lambda r: r.all_installed is True,
        "fetch_plugin_installation_task": lambda r: r.status == "success",
        "fetch_plugin_installation_tasks": lambda r: isinstance(r, list),
        "delete_plugin_installation_task": lambda r: r is True,
        "delete_all_plugin_installation_task_items": lambda r: r is True,
        "delete_plugin_installation_task_item": lambda r: r is True,
        "fetch_missing_dependencies": lambda r: [(m.plugin_unique_identifier, m.current_identifier) for m in r]
        == [(new_identifier, identifier)],
        "fetch_plugin_installation_by_ids": lambda r: [i.plugin_unique_identifier for i in r] == [identifier],
        "list_plugins": lambda r: [p.plugin_unique_identifier for p in r] == [identifier],
        "list_plugins_with_total": lambda r: r.total == 1,
        "fetch_plugin_manifest": lambda r: r.version == "0.0.1",
        "decode_plugin_from_identifier": lambda r: r.unique_identifier == identifier,
        "fetch_plugin_readme": lambda r: r.startswith("# E2E Searcher"),
        "fetch_plugin_by_identifier": lambda r: r is True,
        "fetch_tool_providers": lambda r: [p.declaration.identity.name for p in r] == [PROVIDER],
        "fetch_tool_provider": lambda r: r.declaration.identity.name == PROVIDER,
        "check_tools_existence": lambda r: r == [True],
        "invoke": lambda r: [m.message.text for m in r if m.type == "text"] == ["result 1 for kw\n", "result 2 for kw\n"],
        "upgrade_plugin": lambda r: r.all_installed or bool(r.task_id),
        "uninstall": lambda r: r is True,
    }
    assert set(checks) == set(results)
    for name, check in checks.items():
        result, error = results[name]
        assert error is None, (name, error)
        assert check(result), (name, result)


ORDER = [  # the task calls need the install task before it is deleted; uninstall comes last
    "upload_pkg", "upload_bundle", "install_from_identifiers", "fetch_plugin_installation_task",
    "fetch_plugin_installation_tasks", "delete_plugin_installation_task_item", "delete_plugin_installation_task",
    "delete_all_plugin_installation_task_items", "fetch_missing_dependencies", "fetch_plugin_installation_by_ids",
    "list_plugins", "list_plugins_with_total", "fetch_plugin_manifest", "decode_plugin_from_identifier",
    "fetch_plugin_readme", "fetch_plugin_by_identifier", "fetch_tool_providers", "fetch_tool_provider",
    "check_tools_existence", "invoke", "upgrade_plugin", "uninstall",
]


def test_every_method_by_its_keyword_names(daemon: DaemonProcess, package: Path) -> None:
    """Sync then async, each in a tenant of its own with the test plugin installed and v0.0.2 uploaded."""
    assert sorted(ORDER) == sorted(s.name for s in signatures())
    for flavour in ("sync", "async"):
        tenant = str(uuid.uuid4())
        setup = DifyPluginClient(PluginConfig(url=daemon.url, key=daemon.key, timeout=60))
        try:
            identifier = setup.upload_pkg(tenant, package.read_bytes()).unique_identifier
            new_identifier = setup.upload_pkg(tenant, build_package("0.0.2")).unique_identifier
            started = setup.install_from_identifiers(tenant, [identifier], "package", [{}])
            task = setup.wait_for_installation_task(tenant, started.task_id, timeout=300)
            assert task.status == "success", [p.message for p in task.plugins]

            def finish_upgrade(response: Any) -> None:
                if response is not None and not response.all_installed:
                    done = setup.wait_for_installation_task(tenant, response.task_id, timeout=300)
                    assert done.status == "success", [p.message for p in done.plugins]

            def installation_id() -> str:
                return setup.list_plugins(tenant)[0].installation_id

            calls = keyword_calls(tenant, identifier, new_identifier, started.task_id, package.read_bytes(),
                                  installation_id)
            if flavour == "sync":
                results = run_sync(daemon, calls, finish_upgrade)
            else:
                results = asyncio.run(run_async(daemon, calls, finish_upgrade))
            check_results(results, identifier, new_identifier)
            assert setup.list_plugins(tenant) == []
        finally:
            setup.close()


def arguments(calls: dict[str, Any], name: str) -> dict[str, Any]:
    value = calls[name]
    return value() if callable(value) else dict(value)


def run_sync(daemon: DaemonProcess, calls: dict[str, Any], after_upgrade: Any) -> dict[str, tuple[Any, Any]]:
    results: dict[str, tuple[Any, Any]] = {}
    with DifyPluginClient(PluginConfig(url=daemon.url, key=daemon.key, timeout=60)) as client:
        for name in ORDER:
            try:
                result = getattr(client, name)(**arguments(calls, name))
                results[name] = (list(result) if name == "invoke" else result, None)
            except PluginDaemonError as exc:
                results[name] = (None, exc)
            if name == "upgrade_plugin":
                after_upgrade(results[name][0])
    return results


async def run_async(daemon: DaemonProcess, calls: dict[str, Any], after_upgrade: Any) -> dict[str, tuple[Any, Any]]:
    results: dict[str, tuple[Any, Any]] = {}
    async with AsyncDifyPluginClient(PluginConfig(url=daemon.url, key=daemon.key, timeout=60)) as client:
        for name in ORDER:
            try:
                result = await getattr(client, name)(**arguments(calls, name))
                if name == "invoke":
                    result = [m async for m in result]
                results[name] = (result, None)
            except PluginDaemonError as exc:
                results[name] = (None, exc)
            if name == "upgrade_plugin":
                after_upgrade(results[name][0])
    return results


# ------------------------------------------------------------------------------------------- fixture daemon


def any_tenant(server: FixtureDaemon) -> None:
    """Answer the happy routes for whatever tenant the examples generate."""

    def answer(request: RecordedRequest) -> Reply:
        parts = request.path.split("/")
        if len(parts) > 2 and parts[1] == "plugin" and parts[2] != TENANT:
            parts[2] = TENANT
            rewritten = RecordedRequest(request.method, "/".join(parts), request.raw_path, request.query,
                                        request.headers, request.body)
            responder = server.routes.get((request.method, rewritten.path))
            if responder is None:
                for (method, path), candidate in server.routes.items():
                    if method == request.method and path.endswith("*") and rewritten.path.startswith(path[:-1]):
                        responder = candidate
            if responder is not None:
                return responder(rewritten)
        return Reply(status=404, body=b'{"code":"not_found","message":"route not found"}')

    server.fallback = answer


def fixture_replacements(server: FixtureDaemon, package: Path) -> dict[str, dict[str, str]]:
    replacements = daemon_replacements(server.url, server.api_key, package)
    for name in ("invoke-streaming", "async-client"):
        replacements[name] = {**replacements[name], EXAMPLE_PROVIDER: "acme/searcher/search"}
    return replacements


@pytest.fixture
def fixture_daemon() -> Iterator[FixtureDaemon]:
    server = FixtureDaemon().start()
    try:
        yield server
    finally:
        server.stop()


def test_python_examples_run_to_the_end_against_the_fixture(fixture_daemon: FixtureDaemon, tmp_path: Path) -> None:
    """Where every call succeeds, each example runs to its last line and sends the documented requests."""
    happy(fixture_daemon)
    fixture_daemon.sse("POST", f"/plugin/{TENANT}/dispatch/tool/invoke", [
        chunk_text("hello"), sse_line(success_body({"type": "json", "message": {"json_object": {"n": 1}}, "meta": None}))])
    any_tenant(fixture_daemon)
    package = tmp_path / "p.difypkg"
    package.write_bytes(b"PK")
    replacements = fixture_replacements(fixture_daemon, package)
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    found = examples()
    printed = {}
    for name in PYTHON_EXAMPLES:
        printed[name], error = run_example(found[name], namespace, replacements[name])
        assert error is None, (name, error)
    namespace["client"].close()
    assert printed["list-manifest-readme"] == "searcher 0.0.1\n"
    assert printed["invoke-streaming"] == "hello{'n': 1}\n"
    assert printed["missing-dependencies"] == f"{IDENTIFIER_V2} {IDENTIFIER}\n"
    requests = {r.path.split("/management/")[-1]: r for r in fixture_daemon.requests if "/management/" in r.path}
    assert requests["uninstall"].json() == {"plugin_installation_id": "abc123"}
    assert requests["install/upgrade"].json() == {
        "original_plugin_unique_identifier": "plugin-a@1.0.0", "new_plugin_unique_identifier": "plugin-a@1.1.0",
        "source": "package", "meta": {}}
    assert requests["installation/missing"].json() == {"plugin_unique_identifiers": ["plugin-a@1.0.0", "plugin-b@2.0.0"]}


def test_uninstall_example_raises_upstreams_error_for_an_unknown_installation(
    fixture_daemon: FixtureDaemon, tmp_path: Path
) -> None:
    """Upstream answers ``abc123`` (no such installation) with HTTP 200 and Error(-404, PluginNotFoundError)."""
    happy(fixture_daemon)
    fixture_daemon.on("POST", f"/plugin/{TENANT}/management/uninstall",
                      Reply(body=error_body(-404, "PluginNotFoundError", "plugin not found")))
    any_tenant(fixture_daemon)
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    replacements = fixture_replacements(fixture_daemon, tmp_path / "unused")
    for name in ("configuration", "uninstall-or-upgrade"):
        if name == "uninstall-or-upgrade":
            namespace.update(tenant_id=str(uuid.uuid4()), PluginInstallationSource=entities.PluginInstallationSource)
        _, error = run_example(examples()[name], namespace, replacements[name])
    namespace["client"].close()
    assert isinstance(error, PluginNotFoundError)
    assert (error.code, error.error_type, error.description) == (-404, "PluginNotFoundError", "plugin not found")
    assert failing_line(error, "uninstall-or-upgrade") == 'client.uninstall(tenant_id, plugin_installation_id="abc123")'
    assert fixture_daemon.requests_to(f"/plugin/{TENANT}/management/install/upgrade") == []
