"""OpenAPI 3.1 description of the API, built from the same constants the handlers validate with."""

from __future__ import annotations

from typing import Any

from midas_service.config import Settings
from midas_service.geometry import view
from midas_service.geometry.camera import DEFAULT_FOV_DEG
from midas_service.geometry.depth import DEFAULT_FAR, DEFAULT_NEAR
from midas_service.geometry.grid import DEFAULT_MAX_SIDE, MAX_GRID_SIDE, MIN_GRID_SIDE
from midas_service.images.outputs import FORMATS, KINDS
from midas_service.images.visualize import COLORMAPS
from midas_service.jobs.config import JobSettings
from midas_service.web.errors import ERROR_CODES

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "request_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": list(ERROR_CODES)},
                "message": {"type": "string"},
            },
        },
        "request_id": {"type": "string"},
    },
}


def _error(description: str) -> dict[str, object]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def error_responses() -> dict[str, dict[str, object]]:
    """One response per status, listing each code of ``ERROR_CODES`` with that status."""
    by_status: dict[int, list[str]] = {}
    for code, error in ERROR_CODES.items():
        by_status.setdefault(error.status, []).append(f"`{code}`: {error.meaning}")
    return {str(status): _error("; ".join(lines)) for status, lines in sorted(by_status.items())}


def _query(name: str, choices: list[str], default: str, description: str) -> dict[str, object]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "enum": choices, "default": default},
    }


def _number(name: str, schema: dict[str, object], description: str) -> dict[str, object]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def view_parameters() -> list[dict[str, object]]:
    """The 3D parameters; refused with any output that is not 3D."""
    three_d = " and ".join(name for name, kind in KINDS.items() if kind.geometry)
    only = f"Only with output={three_d}."
    return [
        _number(
            "fov",
            {"type": "number", "minimum": view.FOV_MIN_DEG, "maximum": view.FOV_MAX_DEG},
            f"horizontal angle of view in degrees; default: from EXIF FocalLengthIn35mmFilm, "
            f"else {DEFAULT_FOV_DEG:g}. {only}",
        ),
        _number(
            "near",
            {
                "type": "number",
                "minimum": view.NEAR_MIN,
                "exclusiveMaximum": view.FAR_MAX,
                "default": DEFAULT_NEAR,
            },
            f"depth given to the nearest point of the map; below far. {only}",
        ),
        _number(
            "far",
            {"type": "number", "maximum": view.FAR_MAX, "default": DEFAULT_FAR},
            f"depth given to the farthest point; must exceed near. {only}",
        ),
        _number(
            "max_side",
            {
                "type": "integer",
                "minimum": MIN_GRID_SIDE,
                "maximum": MAX_GRID_SIDE,
                "default": DEFAULT_MAX_SIDE,
            },
            f"most vertices per side of the grid. {only}",
        ),
    ]


def openapi_document(settings: Settings, jobs: JobSettings | None = None) -> dict[str, object]:
    binary = {"type": "string", "format": "binary"}
    media = sorted({fmt.media_type for fmt in FORMATS.values()})
    formats = sorted(FORMATS)
    per_kind = "; ".join(
        f"{kind.name}: {kind.default_format} (default)"
        + "".join(f", {fmt}" for fmt in kind.formats[1:])
        for kind in KINDS.values()
    )
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "MiDaS depth service",
            "version": "0.1.0",
            "description": "Relative inverse depth (larger = nearer) of one photo.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Depth map of one photo",
                    "parameters": [
                        _query("output", list(KINDS), "heatmap", "what to return"),
                        _query(
                            "format",
                            formats,
                            "jpeg",
                            per_kind,
                        ),
                        _query("colormap", list(COLORMAPS), settings.colormap, "heatmap colours"),
                        *view_parameters(),
                        {
                            "name": "X-Request-ID",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 128},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "description": (
                            f"JPEG, PNG, WebP, BMP or TIFF; at most {settings.max_upload_mb:g} MB "
                            f"and {settings.max_pixels} pixels"
                        ),
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["image"],
                                    "properties": {"image": binary},
                                }
                            },
                            "image/*": {"schema": binary},
                            "application/octet-stream": {"schema": binary},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "heatmap/side picture (input size; side is twice as "
                            "wide), raw depth, or a 3D point cloud (PLY) or mesh (GLB)",
                            "content": {m: {"schema": binary} for m in media},
                        },
                        **error_responses(),
                    },
                }
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness with model metadata",
                    "responses": {"200": {"description": "ready"}, "503": _error("not ready")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text"}},
                }
            },
        },
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }
    if jobs is not None:
        from midas_service.web.jobs import openapi_paths

        document["paths"].update(openapi_paths(jobs))
    if settings.api_keys:
        _require_keys(document, settings.metrics_public)
    return document


def _require_keys(document: dict[str, Any], metrics_public: bool) -> None:
    """With MIDAS_API_KEYS set: the two ways to send a key, required where the service asks."""
    document["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    paths = [("/predict", "post")] + ([] if metrics_public else [("/metrics", "get")])
    paths += [
        (path, method)
        for path, operations in document["paths"].items()
        if path.startswith("/jobs")
        for method in operations
    ]
    for path, method in paths:
        operation = document["paths"][path][method]
        operation["security"] = [{"bearer": []}, {"apiKey": []}]
        operation["responses"]["401"] = _error("missing or invalid API key")
