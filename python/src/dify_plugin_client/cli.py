"""The ``dify-plugin-client`` console script: a thin command line over ``DifyPluginClient``.

Owns: argument parsing, settings resolution (flags > environment > JSON config file > defaults), output
rendering (``-o text|json|yaml``) and exit codes, the same as the Rust ``dify-plugin-client``:
0 success; 1 daemon error, daemon unreachable or timed out, plugin or install task failed, serverless
reinstall ended in ``error``; 2 usage or configuration error (a missing admin key too); 4 API key (or admin
API key) rejected; 6 the daemon speaks another API (unknown route, unexpected payload).
Must not: talk to the daemon other than through ``DifyPluginClient``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

import httpx
import yaml
from pydantic import BaseModel

from .client import DifyPluginClient
from .config import DEFAULT_KEY, DEFAULT_TIMEOUT, DEFAULT_URL, PluginConfig
from .entities.daemon import (
    PluginInstallTaskStartResponse,
    PluginInstallTaskStatus,
    PluginLogEntry,
    PluginLogsResponse,
)
from .entities.plugin import PluginInstallationSource
from .entities.tool import TextMessage, ToolInvokeMessageUnion
from .errors import (
    PluginDaemonError,
    PluginDaemonResponseError,
    PluginDaemonUnauthorizedError,
    ToolParameterValidationError,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAUTHORIZED = 4
EXIT_INCOMPATIBLE = 6

ENV_URL = "DIFY_PLUGIN_DAEMON_URL"
ENV_KEY = "DIFY_PLUGIN_DAEMON_KEY"
ENV_TIMEOUT = "DIFY_PLUGIN_DAEMON_TIMEOUT"
ENV_TENANT = "DIFY_PLUGIN_TENANT_ID"
ENV_ADMIN_KEY = "DIFY_PLUGIN_ADMIN_API_KEY"
DEFAULT_CONFIG_FILE = "~/.dify"


class UsageError(Exception):
    """Bad flags, a malformed config file or missing settings: exit code 2."""


class TaskFailedError(Exception):
    """An install task ended in ``failed``, or a serverless reinstall ended in ``error``: exit code 1."""


@dataclass(frozen=True)
class Settings:
    url: str
    key: str
    timeout: float
    tenant: str | None
    sources: dict[str, str]
    # The admin API key (``admin`` commands): ``--admin-key``, else the environment; never the config file.
    admin_key: str | None = None


def _read_config_file(path_text: str | None, home: str | None) -> tuple[dict[str, Any], str | None]:
    """Load the JSON config file; an explicit path must exist, the default one (``$HOME/.dify``) is optional."""
    explicit = path_text is not None
    if explicit:
        path = Path(os.path.expanduser(str(path_text)))
    else:
        path = Path(home or os.path.expanduser("~")) / DEFAULT_CONFIG_FILE.removeprefix("~/")
    if not path.exists():
        if explicit:
            raise UsageError(f"config file {path} does not exist")
        return {}, None
    if not path.is_file():
        if explicit:
            raise UsageError(f"config file {path} is not a file")
        return {}, None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    if not text.strip():
        return {}, str(path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"malformed config file {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"malformed config file {path}: expected a JSON object with url, key, timeout, tenant")
    for name in ("url", "key", "tenant"):
        if name in data and not isinstance(data[name], str):
            raise UsageError(f"malformed config file {path}: '{name}' must be a string")
    if "timeout" in data and (isinstance(data["timeout"], bool) or not isinstance(data["timeout"], (int, float, str))):
        raise UsageError(f"malformed config file {path}: 'timeout' must be a number")
    return data, str(path)


def _parse_timeout(value: Any, origin: str) -> float:
    try:
        timeout = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"invalid timeout {value!r} from {origin}: expected seconds") from None
    if not timeout > 0 or timeout != timeout or timeout == float("inf"):
        raise UsageError(f"invalid timeout {value!r} from {origin}: must be a positive number")
    return timeout


def resolve_settings(args: argparse.Namespace, environ: dict[str, str] | os._Environ[str]) -> Settings:
    """Merge flags, environment, config file and defaults (in that order of precedence)."""
    file_values, file_path = _read_config_file(getattr(args, "config", None), environ.get("HOME"))
    file_origin = f"config file {file_path}"
    sources: dict[str, str] = {}

    def pick(name: str, flag: Any, env_name: str, default: Any) -> Any:
        if flag is not None:
            sources[name] = "flag"
            return flag
        env_value = environ.get(env_name)
        if env_value:
            sources[name] = f"env {env_name}"
            return env_value
        if name in file_values and file_values[name] not in (None, ""):
            sources[name] = file_origin
            return file_values[name]
        sources[name] = "default"
        return default

    url = pick("url", getattr(args, "url", None), ENV_URL, DEFAULT_URL)
    key = pick("key", getattr(args, "key", None), ENV_KEY, DEFAULT_KEY)
    raw_timeout = pick("timeout", getattr(args, "timeout", None), ENV_TIMEOUT, DEFAULT_TIMEOUT)
    tenant = pick("tenant", getattr(args, "tenant", None), ENV_TENANT, None)
    timeout = _parse_timeout(raw_timeout, sources["timeout"])
    if not str(url).startswith(("http://", "https://")):
        raise UsageError(f"invalid daemon URL {url!r} from {sources['url']}: must start with http:// or https://")
    admin_key = getattr(args, "admin_key", None) or environ.get(ENV_ADMIN_KEY) or None
    return Settings(url=str(url), key=str(key), timeout=timeout, tenant=tenant, sources=sources, admin_key=admin_key)


# ------------------------------------------------------------------------------------------- output


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=False)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _emit(out: TextIO, fmt: str, value: Any, text: Callable[[Any], str]) -> None:
    if fmt == "json":
        out.write(json.dumps(_jsonable(value), ensure_ascii=False, indent=2) + "\n")
    elif fmt == "yaml":
        out.write(yaml.safe_dump(_jsonable(value), allow_unicode=True, sort_keys=False))
    else:
        rendered = text(value)
        out.write(rendered if rendered.endswith("\n") or not rendered else rendered + "\n")


# ------------------------------------------------------------------------------------------- commands


def _require_tenant(settings: Settings) -> str:
    if not settings.tenant:
        raise UsageError(f"no tenant: pass --tenant, set {ENV_TENANT}, or put 'tenant' in the config file")
    return settings.tenant


def _read_file(path_text: str) -> bytes:
    try:
        return Path(path_text).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path_text}: {exc}") from None


def _json_option(text: str | None, what: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a JSON object")
    return value


def mask_secret(secret: str) -> str:
    """Keep the first and last two characters of secrets longer than 6; hide everything else."""
    if len(secret) > 6:
        return secret[:2] + "*" * (len(secret) - 4) + secret[-2:]
    return "*" * len(secret)


def cmd_config(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    value = {
        "url": settings.url,
        "key": mask_secret(settings.key),
        "timeout": settings.timeout,
        "tenant": settings.tenant,
        "sources": settings.sources,
    }
    _emit(out, args.output, value, lambda v: "\n".join(f"{k}: {v[k]}  ({v['sources'][k]})" for k in settings.sources))
    return EXIT_OK


def cmd_list(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    result = client.list_plugins_with_total(_require_tenant(settings), args.page, args.page_size)

    def text(v: Any) -> str:
        lines = [f"{p.plugin_unique_identifier}\t{p.installation_id}\t{p.source.value}" for p in v.list]
        return "\n".join(lines + [f"total: {v.total}"])

    _emit(out, args.output, result, text)
    return EXIT_OK


def _one_of(positional: str | None, flag: str | None, what: str) -> str:
    """A value given either positionally or with its flag (the Rust CLI's spelling), not both."""
    if positional and flag and positional != flag:
        raise UsageError(f"{what} given twice ({positional!r} and {flag!r})")
    value = positional or flag
    if not value:
        raise UsageError(f"{what} is required")
    return value


def cmd_upload_pkg(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    path = _one_of(args.file, args.file_flag, "the package file")
    decoded = client.upload_pkg(_require_tenant(settings), _read_file(path), args.verify_signature)
    _emit(out, args.output, decoded, lambda v: v.unique_identifier)
    return EXIT_OK


def cmd_install(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    tenant = _require_tenant(settings)
    identifiers: list[str] = list(args.identifier or [])
    source = PluginInstallationSource(args.source)
    for path in args.file or []:
        decoded = client.upload_pkg(tenant, _read_file(path), args.verify_signature)
        identifiers.append(decoded.unique_identifier)
    metas: list[dict[str, Any]] = [
        {"plugin_unique_identifier": i} if source == PluginInstallationSource.Marketplace else {} for i in identifiers
    ]
    started = client.install_from_identifiers(tenant, identifiers, source, metas)
    return _finish_task(client, tenant, identifiers, started, args, out)


def _finish_task(
    client: DifyPluginClient,
    tenant: str,
    identifiers: list[str],
    started: PluginInstallTaskStartResponse,
    args: argparse.Namespace,
    out: TextIO,
) -> int:
    result: dict[str, Any] = {
        "identifiers": identifiers,
        "all_installed": started.all_installed,
        "task_id": started.task_id,
        "status": "success" if started.all_installed else "running",
        "plugins": [],
    }
    if not started.all_installed and not args.no_wait:
        try:
            task = client.wait_for_installation_task(tenant, started.task_id, args.poll_interval, args.wait_timeout)
        except TimeoutError as exc:
            raise TaskFailedError(str(exc)) from None
        result["status"] = task.status.value
        result["plugins"] = [
            {"plugin_unique_identifier": p.plugin_unique_identifier, "status": p.status.value, "message": p.message}
            for p in task.plugins
        ]

    def text(v: dict[str, Any]) -> str:
        lines = [f"task {v['task_id'] or '-'}: {v['status']}"]
        lines += [f"{p['plugin_unique_identifier']}: {p['status']} {p['message']}".rstrip() for p in v["plugins"]]
        if not v["plugins"]:
            lines += [f"{i}: {v['status']}" for i in v["identifiers"]]
        return "\n".join(lines)

    _emit(out, args.output, result, text)
    if result["status"] == PluginInstallTaskStatus.Failed.value:
        raise TaskFailedError(f"install task {started.task_id} failed")
    return EXIT_OK


def _parse_parameter_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"invalid parameter {pair!r}: expected name=value")
        parameters[name] = value
    return parameters


_TEXT_LIKE = ("link", "image", "image_link", "binary_link")


def _compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class StreamPrinter:
    """Text rendering of an invocation stream, as the Rust ``dify-plugin-client`` prints it.

    ``text`` chunks are written as they come (the tool's own newlines only); every other chunk gets a line
    of its own: ``[link] URL`` for links and images, ``[json] {...}`` with the JSON value itself, ``[blob]
    N bytes (mime type)``, and ``[type] {...}`` with the message for the rest. ``finish()`` ends an open
    text line, so whatever follows (the prompt, or an error on stderr) starts on a line of its own.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.open_line = False

    def _line(self, text: str) -> None:
        self._close_line()
        self.out.write(text + "\n")

    def _close_line(self) -> None:
        if self.open_line:
            self.out.write("\n")
            self.open_line = False

    def message(self, message: ToolInvokeMessageUnion) -> None:
        kind = str(message.type)
        if message.type == "text":
            self.out.write(message.message.text)
            if message.message.text:
                self.open_line = not message.message.text.endswith("\n")
        elif isinstance(message.message, TextMessage) and kind in _TEXT_LIKE:
            self._line(f"[{kind}] {message.message.text}")
        elif message.type == "json":
            self._line(f"[json] {_compact_json(message.message.json_object)}")
        elif message.type == "blob":
            mime = (message.meta or {}).get("mime_type") or "application/octet-stream"
            self._line(f"[blob] {len(message.message.blob)} bytes ({mime})")
        else:
            self._line(f"[{kind}] {_compact_json(_jsonable(message)['message'])}")
        self.out.flush()

    def finish(self) -> None:
        self._close_line()
        self.out.flush()


def cmd_invoke(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    tenant = _require_tenant(settings)
    provider = _one_of(args.provider, args.provider_flag, "the tool provider (org/plugin/provider)")
    tool = _one_of(args.tool, args.tool_flag, "the tool name")
    parameters = _json_option(args.params, "--params")
    parameters.update(_parse_parameter_pairs(args.param or []))
    messages = client.invoke(
        tenant_id=tenant,
        user_id=args.user,
        tool_provider=provider,
        tool_name=tool,
        credentials=_json_option(args.credentials, "--credentials"),
        tool_parameters=parameters,
        credential_type=args.credential_type,
        validate_parameters=not args.no_validate,
    )
    if args.output == "text":
        printer = StreamPrinter(out)
        try:
            for message in messages:
                printer.message(message)
        finally:
            printer.finish()
        return EXIT_OK
    _emit(out, args.output, list(messages), str)
    return EXIT_OK


def cmd_tasks(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    tasks = client.fetch_plugin_installation_tasks(_require_tenant(settings), args.page, args.page_size)
    _emit(
        out,
        args.output,
        tasks,
        lambda v: "\n".join(f"{t.id}\t{t.status.value}\t{t.completed_plugins}/{t.total_plugins}" for t in v),
    )
    return EXIT_OK


def cmd_task(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    task = client.fetch_plugin_installation_task(_require_tenant(settings), args.task_id)

    def text(t: Any) -> str:
        lines = [f"task {t.id}: {t.status.value} ({t.completed_plugins}/{t.total_plugins})"]
        lines += [f"{p.plugin_unique_identifier}: {p.status.value} {p.message}".rstrip() for p in t.plugins]
        return "\n".join(lines)

    _emit(out, args.output, task, text)
    return EXIT_OK


def cmd_uninstall(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    tenant = _require_tenant(settings)
    installation_id = args.installation
    if "/" in installation_id:
        # A plugin id (org/name) or unique identifier: look the installation up.
        plugin_id = installation_id.split(":", 1)[0]
        matches = [p for p in client.list_plugins(tenant) if p.plugin_id == plugin_id]
        if not matches:
            raise UsageError(f"plugin {plugin_id} is not installed for tenant {tenant}")
        installation_id = matches[0].installation_id
    ok = client.uninstall(tenant, installation_id)
    _emit(out, args.output, {"installation_id": installation_id, "uninstalled": ok}, lambda v: str(v["uninstalled"]).lower())
    return EXIT_OK


def cmd_manifest(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    manifest = client.fetch_plugin_manifest(_require_tenant(settings), args.identifier)
    _emit(
        out,
        args.output,
        manifest,
        lambda m: f"{m.author}/{m.name} {m.version} ({m.category.value})\n{m.label.en_US}\n{m.description.en_US}",
    )
    return EXIT_OK


def cmd_readme(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    content = client.fetch_plugin_readme(_require_tenant(settings), args.identifier, args.language)
    _emit(out, args.output, {"content": content, "language": args.language}, lambda v: v["content"])
    return EXIT_OK


def log_entry_line(entry: PluginLogEntry) -> str:
    """``time [source] message`` for stderr lines, ``time [source] LEVEL message`` for the others."""
    if entry.source == "stderr":
        return f"{entry.time} [{entry.source}] {entry.message}"
    return f"{entry.time} [{entry.source}] {entry.level} {entry.message}"


def _logs_text(response: PluginLogsResponse) -> str:
    lines = []
    if response.dropped > 0 and response.entries and response.entries[0].seq > 1:
        lines.append(f"({response.dropped} older lines were dropped)")
    lines.extend(log_entry_line(e) for e in response.entries)
    return "\n".join(lines)


def cmd_logs(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    tenant = _require_tenant(settings)
    if args.tail < 1:
        raise UsageError(f"--tail must be at least 1, got {args.tail}")
    response = client.fetch_plugin_logs(tenant, args.plugin, limit=args.tail)
    _emit(out, args.output, response, _logs_text)
    if not args.follow:
        return EXIT_OK
    after = response.last_seq
    try:
        while True:
            out.flush()
            time.sleep(1.0)
            response = client.fetch_plugin_logs(tenant, args.plugin, after=after)
            after = response.last_seq
            if response.entries:
                _emit(out, args.output, response, _logs_text)
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_missing(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    missing = client.fetch_missing_dependencies(_require_tenant(settings), args.identifiers)
    _emit(
        out,
        args.output,
        missing,
        lambda v: "\n".join(
            f"{m.plugin_unique_identifier}\t{m.current_identifier or 'not installed'}" for m in v
        ),
    )
    return EXIT_OK


def cmd_tools(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    tenant = _require_tenant(settings)
    if args.provider:
        providers = [client.fetch_tool_provider(tenant, args.provider)]
    else:
        providers = client.fetch_tool_providers(tenant)
    _emit(
        out,
        args.output,
        providers,
        lambda v: "\n".join(
            f"{p.declaration.identity.name}\t{t.identity.name}" for p in v for t in p.declaration.tools
        ),
    )
    return EXIT_OK


def cmd_upgrade(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    tenant = _require_tenant(settings)
    started = client.upgrade_plugin(tenant, args.original, args.new, PluginInstallationSource(args.source), {})
    return _finish_task(client, tenant, [args.new], started, args, out)


def _emit_item(out: TextIO, fmt: str, item: Any) -> None:
    """One streamed item as it arrives: a compact JSON line (text, json) or a YAML document (yaml)."""
    if fmt == "yaml":
        out.write("---\n" + yaml.safe_dump(_jsonable(item), allow_unicode=True, sort_keys=False))
    else:
        out.write(_compact_json(_jsonable(item)) + "\n")
    out.flush()


def cmd_invoke_v2(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    tenant = _require_tenant(settings)
    data = _json_option(args.data, "--data")
    for item in client.invoke_v2(args.identifier, args.route, tenant, data, user_id=args.user):
        _emit_item(out, args.output, item)
    return EXIT_OK


def cmd_extract(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    extracted = client.extract_v2(args.identifier)
    _emit(out, args.output, extracted,
          lambda v: yaml.safe_dump(_jsonable(v), allow_unicode=True, sort_keys=False))
    return EXIT_OK


def _require_admin_key(settings: Settings) -> str:
    if not settings.admin_key:
        raise UsageError(f"the admin API key is required (--admin-key or {ENV_ADMIN_KEY})")
    return settings.admin_key


def cmd_admin_reinstall(client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    admin_key = _require_admin_key(settings)
    last: dict[str, Any] | None = None
    for event in client.admin_reinstall_serverless(admin_key, args.identifier):
        if args.output == "text":
            out.write(f"{event.get('event')}: {event.get('data')}\n")
            out.flush()
        else:
            _emit_item(out, args.output, event)
        last = event
    if last is not None and last.get("event") == "done":
        return EXIT_OK
    if last is not None and last.get("event") == "error":
        raise TaskFailedError(str(last.get("data")))
    raise TaskFailedError("the reinstall ended without a result")


def cmd_admin_switch_endpoint(
    client: DifyPluginClient, settings: Settings, args: argparse.Namespace, out: TextIO
) -> int:
    admin_key = _require_admin_key(settings)
    switched = client.admin_switch_serverless_endpoint(
        admin_key, args.identifier, args.function_name, args.function_url
    )
    _emit(out, args.output, switched,
          lambda _: f"{args.identifier} now runs on {args.function_name} ({args.function_url})")
    return EXIT_OK


# ------------------------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _global_options() -> _Parser:
    """Flags accepted both before and after the command (defaults suppressed so they never override)."""
    common = _Parser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=f"daemon URL (env {ENV_URL})")
    common.add_argument("--key", default=argparse.SUPPRESS, help=f"API key, X-Api-Key (env {ENV_KEY})")
    common.add_argument("--timeout", default=argparse.SUPPRESS, help=f"request timeout in seconds (env {ENV_TIMEOUT})")
    common.add_argument("--config", default=argparse.SUPPRESS, help="JSON config file (default ~/.dify)")
    common.add_argument("--tenant", default=argparse.SUPPRESS, help=f"tenant id (env {ENV_TENANT})")
    common.add_argument(
        "-o", "--output", choices=["text", "json", "yaml"], default=argparse.SUPPRESS, help="output format"
    )
    return common


def add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-wait", action="store_true", help="return after starting the task")
    parser.add_argument("--wait-timeout", type=float, default=900.0, help="give up waiting after SECONDS")
    parser.add_argument("--poll-interval", type=float, default=0.5, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = _Parser(prog="dify-plugin-client", description="Talk to a Dify plugin daemon.", parents=[common])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    add("config", cmd_config, "show the effective settings and where each came from")

    sub = add("list", cmd_list, "list installed plugins")
    sub.add_argument("--page", type=int, default=1)
    sub.add_argument("--page-size", type=int, default=256)

    sub = add("upload-pkg", cmd_upload_pkg, "upload a .difypkg and print its unique identifier")
    sub.add_argument("file", nargs="?")
    sub.add_argument("--file", dest="file_flag", metavar="FILE", help="the package (same as the positional FILE)")
    sub.add_argument("--verify-signature", action="store_true")

    sub = add("install", cmd_install, "install plugins from package files or uploaded identifiers")
    what = sub.add_mutually_exclusive_group(required=True)
    what.add_argument("--file", action="append", help="package file to upload and install (repeatable)")
    what.add_argument("--identifier", action="append", help="already uploaded unique identifier (repeatable)")
    sub.add_argument("--source", choices=[s.value for s in PluginInstallationSource], default="package")
    sub.add_argument("--verify-signature", action="store_true")
    add_wait_options(sub)

    sub = add("invoke", cmd_invoke, "invoke a tool and stream its messages")
    sub.add_argument("provider", nargs="?", help="org/plugin/provider")
    sub.add_argument("tool", nargs="?")
    sub.add_argument("--provider", dest="provider_flag", metavar="PROVIDER", help="same as the positional PROVIDER")
    sub.add_argument("--tool", dest="tool_flag", metavar="TOOL", help="same as the positional TOOL")
    sub.add_argument("-p", "--param", action="append", help="tool parameter name=value (repeatable)")
    sub.add_argument("--params", help="tool parameters as a JSON object")
    sub.add_argument("--credentials", help="credentials as a JSON object")
    sub.add_argument("--credential-type", default="api-key", choices=["api-key", "oauth2", "unauthorized"])
    sub.add_argument("--user", default="dify-plugin-client")
    sub.add_argument("--no-validate", action="store_true",
                     help="send parameters as given, without fetching the tool declaration to cast them")

    sub = add("tasks", cmd_tasks, "list install tasks")
    sub.add_argument("--page", type=int, default=1)
    sub.add_argument("--page-size", type=int, default=256)

    sub = add("task", cmd_task, "show one install task")
    sub.add_argument("task_id")

    sub = add("uninstall", cmd_uninstall, "uninstall by installation id (or plugin id org/name)")
    sub.add_argument("installation")

    sub = add("upgrade", cmd_upgrade, "upgrade an installed plugin to another uploaded version")
    sub.add_argument("--from", dest="original", required=True, help="installed unique identifier")
    sub.add_argument("--to", dest="new", required=True, help="uploaded unique identifier to upgrade to")
    sub.add_argument("--source", choices=[s.value for s in PluginInstallationSource], default="package")
    add_wait_options(sub)

    sub = add("manifest", cmd_manifest, "show a plugin's manifest")
    sub.add_argument("identifier")

    sub = add("readme", cmd_readme, "print a plugin's README")
    sub.add_argument("identifier")
    sub.add_argument("--language", default="en_US")

    sub = add("logs", cmd_logs, "print an installed plugin's recent stderr, log messages and process notes")
    sub.add_argument("plugin", help="author/name (or a unique identifier)")
    sub.add_argument("--tail", type=int, default=200, help="how many of the newest lines to print")
    sub.add_argument("--follow", action="store_true", help="keep printing new lines (polls every second)")

    sub = add("missing", cmd_missing, "list which of the given identifiers are not installed")
    sub.add_argument("identifiers", nargs="+")

    sub = add("tools", cmd_tools, "list tool providers and their tools")
    sub.add_argument("--provider", help="only this provider (org/plugin/provider)")

    sub = add("invoke-v2", cmd_invoke_v2,
              "invoke a plugin version by unique identifier (/v2/invoke) and print each streamed item")
    sub.add_argument("--identifier", required=True, help="author/name:version@checksum")
    sub.add_argument("--route", required=True, help="the dispatch route, e.g. /tool/invoke, /llm/invoke")
    sub.add_argument("--data", default="{}", help="the route's data as a JSON object")
    sub.add_argument("--user", default="", help="user id sent with the invocation")

    sub = add("extract", cmd_extract, "print the manifest decoded from a version's stored package (/v2/invoke/extract)")
    sub.add_argument("identifier", help="author/name:version@checksum")

    admin = commands.add_parser(
        "admin", parents=[common], help="the admin API for serverless plugins (the daemon needs ADMIN_API_ENABLED=true)",
        description="The admin API for serverless plugins (the daemon needs ADMIN_API_ENABLED=true).",
    )
    admin.add_argument("--admin-key", help=f"sent as X-Admin-Api-Key (env {ENV_ADMIN_KEY})")
    admin_commands = admin.add_subparsers(dest="admin_command", metavar="COMMAND", parser_class=_Parser, required=True)
    sub = admin_commands.add_parser(
        "reinstall", parents=[common], help="launch a serverless plugin version again and print the reinstall events"
    )
    sub.set_defaults(handler=cmd_admin_reinstall)
    sub.add_argument("--identifier", required=True, help="author/name:version@checksum")
    sub = admin_commands.add_parser(
        "switch-endpoint", parents=[common], help="point a serverless plugin version at another function"
    )
    sub.set_defaults(handler=cmd_admin_switch_endpoint)
    sub.add_argument("--identifier", required=True, help="author/name:version@checksum")
    sub.add_argument("--function-name", required=True)
    sub.add_argument("--function-url", required=True)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: dict[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    env = os.environ if environ is None else environ
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        if not getattr(args, "command", None):
            raise UsageError("dify-plugin-client: a command is required (try --help)")
        if not hasattr(args, "output"):
            args.output = "text"
        settings = resolve_settings(args, env)
        config = PluginConfig(url=settings.url, key=settings.key, timeout=settings.timeout)
        with DifyPluginClient(config) as client:
            code: int = args.handler(client, settings, args, out)
        return code
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except UsageError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    except ToolParameterValidationError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE
    except TaskFailedError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_ERROR
    except PluginDaemonUnauthorizedError as exc:
        which = "admin API key" if getattr(args, "command", None) == "admin" else "API key"
        err.write(f"error: the daemon rejected the {which}: {exc}\n")
        return EXIT_UNAUTHORIZED
    except PluginDaemonResponseError as exc:
        err.write(f"error: the daemon's answer does not match this client's API: {exc}\n")
        return EXIT_INCOMPATIBLE
    except PluginDaemonError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_ERROR
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 401:
            err.write(f"error: the daemon rejected the API key (HTTP 401)\n")
            return EXIT_UNAUTHORIZED
        err.write(f"error: HTTP {exc.response.status_code} from {exc.request.url}\n")
        return EXIT_INCOMPATIBLE if exc.response.status_code == 404 else EXIT_ERROR
    except ValueError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_USAGE



__all__ = ["main", "build_parser", "resolve_settings", "Settings"]
