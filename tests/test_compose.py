"""compose.yaml (and the compose.tls.yaml override) read offline and checked against the repo:
mounted files exist, every ${VAR} of the mounted nginx templates is set, the upstream is the app
service on the port Gunicorn binds, ports line up, one upload limit feeds both services.

No Docker here: the files are parsed with pyyaml and merged the way `docker compose -f a -f b`
merges them (mappings key by key, volumes by target, ports appended).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dockerfile import ROOT, env_of, lineage, stages

COMPOSE = ROOT / "compose.yaml"
TLS_OVERRIDE = ROOT / "compose.tls.yaml"
TEMPLATES_DIR = "/etc/nginx/templates/"
CONF_D = "conf.d/"  # where the official image renders templates, relative to /etc/nginx
APP_SOURCES = ("midas_service/config.py", "gunicorn.conf.py")


def interpolate(value: Any) -> Any:
    """Compose's ${VAR:-default} / ${VAR} with an empty environment (the documented defaults)."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m[2] or "", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def split_volume(volume: str) -> tuple[str, str]:
    """'source:target[:mode]' -> (source, target); a source may be a ${VAR:-default}."""
    match = re.fullmatch(r"(\$\{[^}]*\}|[^:]+):([^:]+)(?::\w+)?", volume)
    assert match, f"unexpected volume syntax {volume!r}"
    return match[1], match[2]


def volume_target(volume: str) -> str:
    return split_volume(volume)[1]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key == "volumes" and key in merged:
            by_target = {volume_target(v): v for v in merged[key]}
            by_target.update({volume_target(v): v for v in value})
            merged[key] = list(by_target.values())
        elif key == "ports" and key in merged:
            merged[key] = merged[key] + value
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load(*files: Path) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for path in files:
        document = merge(document, yaml.safe_load(path.read_text()))
    return document


LAYOUTS = {"http": (COMPOSE,), "https": (COMPOSE, TLS_OVERRIDE)}


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(name, raw merged document, the same with the default values filled in)."""
    raw = load(*LAYOUTS[request.param])
    return request.param, raw, interpolate(raw)


def image_env() -> dict[str, str]:
    return env_of(lineage(stages(), "runtime"))


def mounted_templates(nginx: dict[str, Any]) -> dict[str, Path]:
    """Rendered file name in conf.d -> repository template, for every mounted template."""
    found = {}
    for volume in nginx["volumes"]:
        source, target = split_volume(volume)
        if target.startswith(TEMPLATES_DIR) and target.endswith(".template"):
            rendered = target.removeprefix(TEMPLATES_DIR).removesuffix(".template")
            found[rendered] = ROOT / source
    return found


def test_mounted_files_exist_in_the_repository(layout):
    name, raw, _ = layout
    for volume in raw["services"]["nginx"]["volumes"]:
        source = split_volume(volume)[0]
        if source.startswith("${MIDAS_TLS_DIR"):
            continue  # the user's certificate folder, never in the repository
        assert (ROOT / source).exists(), f"{name}: {source} is mounted but missing"
    if name == "https":
        assert "certs/" in (ROOT / ".gitignore").read_text().split(), "keys must not be committed"


def test_every_template_variable_is_provided(layout):
    name, _, doc = layout
    nginx = doc["services"]["nginx"]
    templates = mounted_templates(nginx)
    server = templates["default.conf"]
    assert server.name == ("midas-tls.conf.template" if name == "https" else "midas.conf.template")
    needed = {
        variable
        for path in templates.values()
        for variable in re.findall(r"\$\{(\w+)\}", path.read_text())
    }
    provided = {k for k, v in nginx["environment"].items() if str(v)}
    assert needed <= provided, f"{name}: unset in nginx: {sorted(needed - provided)}"
    # The includes of the server file are rendered from mounted templates too.
    for path in templates.values():
        for include in re.findall(r"^\s*include\s+(\S+);", path.read_text(), flags=re.M):
            assert include.removeprefix(CONF_D) in templates, f"{path.name} includes {include}"


def test_upstream_is_the_app_service_on_gunicorns_port(layout):
    _, _, doc = layout
    app, nginx = doc["services"]["app"], doc["services"]["nginx"]
    bind = app.get("environment", {}).get("GUNICORN_BIND") or image_env()["GUNICORN_BIND"]
    port = bind.rsplit(":", 1)[1]
    assert port in [str(p) for p in app["expose"]]
    servers = re.findall(r"server\s+([^;\s]+)", nginx["environment"]["MIDAS_UPSTREAM_SERVERS"])
    assert servers == [f"app:{port}"]
    assert nginx["depends_on"]["app"]["condition"] == "service_healthy"


def test_ports_line_up(layout):
    name, raw, doc = layout
    nginx = doc["services"]["nginx"]
    env = nginx["environment"]
    published = dict(str(p).rsplit(":", 1)[::-1] for p in nginx["ports"])  # container -> host
    assert env["NGINX_PORT"] in published
    if name == "https":
        assert env["NGINX_TLS_PORT"] in published
        assert str(env["NGINX_TLS_PUBLIC_PORT"]) == published[env["NGINX_TLS_PORT"]]
        (certs,) = [
            volume_target(v)
            for v in raw["services"]["nginx"]["volumes"]
            if v.startswith("${MIDAS_TLS_DIR")
        ]
        for key in ("NGINX_TLS_CERT", "NGINX_TLS_KEY"):
            assert env[key].startswith(certs + "/"), key
    static_targets = [volume_target(v) for v in nginx["volumes"] if v.startswith("./static:")]
    assert static_targets == [env["MIDAS_STATIC_ROOT"]]


def test_one_upload_limit_for_both(layout):
    _, raw, doc = layout
    app_env = raw["services"]["app"]["environment"]
    nginx_env = raw["services"]["nginx"]["environment"]
    assert app_env["MIDAS_MAX_UPLOAD_MB"] == nginx_env["MIDAS_MAX_UPLOAD_MB"]
    assert "${MIDAS_MAX_UPLOAD_MB" in app_env["MIDAS_MAX_UPLOAD_MB"]
    from midas_service.config import Settings

    default = doc["services"]["app"]["environment"]["MIDAS_MAX_UPLOAD_MB"]
    assert float(default) == Settings.max_upload_mb


def test_app_is_built_from_the_dockerfile_with_known_settings(layout):
    _, _, doc = layout
    app = doc["services"]["app"]
    assert (ROOT / app["build"]["context"] / "Dockerfile").is_file()
    dockerfile_args = {a.split("=")[0] for s in stages() for k, a in s.instructions if k == "ARG"}
    assert set(app["build"].get("args", {})) <= dockerfile_args
    sources = "\n".join((ROOT / p).read_text() for p in APP_SOURCES)
    for key in app["environment"]:
        assert f'"{key}"' in sources, f"the app does not read {key}"
    assert app["read_only"] is True and "/tmp" in app["tmpfs"]


def test_healthchecks(layout):
    _, _, doc = layout
    app, nginx = doc["services"]["app"], doc["services"]["nginx"]
    app_check = " ".join(app["healthcheck"]["test"])
    assert "python" in app_check and "/readyz" in app_check  # the image has no curl
    port = image_env()["GUNICORN_BIND"].rsplit(":", 1)[1]
    assert f"127.0.0.1:{port}/readyz" in app_check
    nginx_check = nginx["healthcheck"]["test"]
    assert nginx_check[:2] == ["CMD", "curl"]  # shipped in the Debian-based nginx image
    assert nginx["image"].split(":")[0] == "nginx" and "alpine" not in nginx["image"]
    port = nginx["environment"]["NGINX_PORT"]
    expected = "http://127.0.0.1/healthz" if port == "80" else f"http://127.0.0.1:{port}/healthz"
    assert nginx_check[-1] == expected


def test_worker_and_redis_services(layout):
    _, _, doc = layout
    services = doc["services"]
    app, worker, redis = services["app"], services["worker"], services["redis"]
    assert worker["image"] == app["image"]  # one image, both roles; app builds it
    assert worker["command"] == ["python", "-m", "midas_service", "worker"]
    for role in (app, worker):
        env = role["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert f"jobs:{env['MIDAS_JOBS_DIR']}" in role["volumes"]  # the one shared store
        assert role["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "jobs" in doc["volumes"] and "redis" in doc["volumes"]
    assert "--appendonly" in redis["command"] and "redis-cli" in redis["healthcheck"]["test"]
    jobs_limit = app["environment"]["MIDAS_JOBS_MAX_UPLOAD_MB"]
    assert services["nginx"]["environment"]["MIDAS_JOBS_MAX_UPLOAD_MB"] == jobs_limit
