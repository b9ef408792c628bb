"""OpenAPI 3.1 description of the API, built from the option declarations (options.py), the
error classes (errors.py) and the output table (images/outputs.py) the handlers use."""

from __future__ import annotations

from typing import Any

from midas_service import options
from midas_service.config import JobSettings, Settings
from midas_service.errors import ERROR_CODES
from midas_service.images.outputs import FORMATS, KINDS
from midas_service.options import Option

# A job's result: a zip of per-photo answers, or the video.
JOB_MEDIA = ("application/zip", "video/mp4", "video/x-matroska")

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


def query_parameter(option: Option, description: str = "") -> dict[str, object]:
    return {
        "name": option.name,
        "in": "query",
        "required": False,
        "description": description or option.meaning,
        "schema": option.schema(),
    }


def predict_parameters(settings: Settings) -> list[dict[str, object]]:
    """/predict's options, from their declarations (midas_service/options.py)."""
    per_kind = "; ".join(
        f"{kind.name}: {kind.default_format} (default)"
        + "".join(f", {fmt}" for fmt in kind.formats[1:])
        for kind in KINDS.values()
    )
    described = {"format": per_kind}
    only = f" Only with output={' and '.join(options.THREE_D)}."
    parameters = []
    for option in options.PREDICT:
        text = described.get(option.name, option.meaning)
        parameter = query_parameter(option, text + (only if option in options.VIEW else ""))
        if option is options.COLORMAP:
            parameter["schema"] = {**option.schema(), "default": settings.colormap}
        parameters.append(parameter)
    return parameters


def job_parameters(most_frame_side: int) -> list[dict[str, object]]:
    """/jobs' options: a photo's (as for /predict) and a video's, from their declarations."""
    photo = {option.name: option for option in options.PHOTO_JOB}
    video = {option.name: option for option in options.video_accepted(most_frame_side)}
    parameters = []
    for name in options.JOB_NAMES:
        if name in photo and name in video and photo[name] != video[name]:
            text = f"photos: as for /predict; a video: {', '.join(video[name].choices)}"
            parameter = query_parameter(photo[name], text)
            parameter["schema"] = {
                "type": "string",
                "enum": list(dict.fromkeys([*photo[name].choices, *video[name].choices])),
            }
        elif name in photo and name in video:
            parameter = query_parameter(photo[name])
        elif name in photo:
            parameter = query_parameter(photo[name], f"photos only: {photo[name].meaning}")
        else:
            parameter = query_parameter(video[name], f"video only: {video[name].meaning}")
        parameters.append(parameter)
    return parameters


def openapi_document(settings: Settings, jobs: JobSettings | None = None) -> dict[str, object]:
    binary = {"type": "string", "format": "binary"}
    media = sorted({fmt.media_type for fmt in FORMATS.values()})
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
                        *predict_parameters(settings),
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
        document["paths"].update(jobs_paths(settings, jobs))
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


def jobs_paths(settings: Settings, jobs: JobSettings) -> dict[str, Any]:
    """The /jobs part of the document."""
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    status_schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": ["photos", "video"]},
            "status": {
                "type": "string",
                "enum": ["queued", "started", "finished", "failed", "canceled"],
            },
            "progress": {
                "type": "object",
                "properties": {"done": {"type": "integer"}, "total": {"type": ["integer", "null"]}},
            },
            "eta_s": {"type": ["number", "null"]},
            "error": {"type": ["string", "null"]},
            "attempts": {"type": "integer"},
            "summary": {"type": "object"},
            "status_url": {"type": "string"},
            "result_url": {"type": "string"},
            "created": {"type": "number"},
            "expires": {"type": "number"},
        },
    }
    error = {"$ref": "#/components/schemas/Error"}

    def errors(*codes: str) -> dict[str, Any]:
        by_status: dict[str, list[str]] = {}
        for code in codes:
            by_status.setdefault(str(ERROR_CODES[code].status), []).append(
                f"`{code}`: {ERROR_CODES[code].meaning}"
            )
        return {
            status: {
                "description": "; ".join(lines),
                "content": {"application/json": {"schema": error}},
            }
            for status, lines in sorted(by_status.items())
        }

    return {
        "/jobs": {
            "post": {
                "summary": "Submit a video, a zip of photos, or photos as a job",
                "parameters": job_parameters(settings.video.max_side),
                "requestBody": {
                    "required": True,
                    "description": f"one or more multipart fields `file`; at most "
                    f"{jobs.max_upload_mb:g} MB in all",
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {
                                        "type": "array",
                                        "items": {"type": "string", "format": "binary"},
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": {
                        "description": "queued; `Location` is the status URL",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": status_schema}},
                    },
                    **errors(
                        "bad_parameter",
                        "missing_file",
                        "bad_archive",
                        "too_large",
                        "quota_exceeded",
                        "jobs_unavailable",
                    ),
                },
            }
        },
        "/jobs/{job_id}": {
            "get": {
                "summary": "A job's status and progress",
                "parameters": [job_id],
                "responses": {
                    "200": {
                        "description": "the status",
                        "content": {"application/json": {"schema": status_schema}},
                    },
                    **errors("job_not_found", "jobs_unavailable"),
                },
            },
            "delete": {
                "summary": "Cancel a queued or running job (202), or remove a finished one (204)",
                "parameters": [job_id],
                "responses": {
                    "202": {
                        "description": "cancel requested",
                        "content": {"application/json": {"schema": status_schema}},
                    },
                    "204": {"description": "removed with its files"},
                    **errors("job_not_found", "jobs_unavailable"),
                },
            },
        },
        "/jobs/{job_id}/result": {
            "get": {
                "summary": "The result: a zip of /predict's outputs per photo (and report.json), "
                "or the video",
                "parameters": [job_id],
                "responses": {
                    "200": {
                        "description": "the result",
                        "content": {
                            m: {"schema": {"type": "string", "format": "binary"}} for m in JOB_MEDIA
                        },
                    },
                    **errors("job_not_found", "job_not_finished", "jobs_unavailable"),
                },
            }
        },
    }
