"""TorchScript backend: the export's packed convolutions run by torch (the default)."""

from __future__ import annotations

import copy
import json
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from midas_service.inference.engines import METADATA_FILE, ModelFileError

if TYPE_CHECKING:
    import numpy as np


class TorchScriptEngine:
    backend = "torchscript"
    precision = "fp32"  # the only one offered (inference/precision.py)

    def __init__(
        self,
        path: Path,
        threads: int,
        spinning: bool = False,
        precision: str = "fp32",  # load_engine admits fp32 only (inference/precision.py)
        cache_dir: Path | None = None,  # OpenVINO's; nothing to cache here
    ) -> None:
        import torch

        from midas_service.inference.packed_layouts import PackedLayouts

        torch.set_num_threads(threads)
        extra = {METADATA_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated"
            self._module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        self._torch = torch
        self.threads = threads
        self.metadata = json.loads(extra[METADATA_FILE] or "{}")
        # The weights in the layout oneDNN wants for each input shape and thread count.
        self.layouts = PackedLayouts(self._module, torch)

    def with_threads(self, threads: int) -> TorchScriptEngine:
        """The same module (weights shared) run at ``threads``: torch sets the count per call."""
        twin = copy.copy(self)
        twin.threads = threads
        return twin

    def infer(self, batch: np.ndarray) -> np.ndarray:
        # Another engine of this process may have run at another count (core_share.py).
        if self._torch.get_num_threads() != self.threads:
            self._torch.set_num_threads(self.threads)
        self.layouts.use(batch.shape[2], batch.shape[3], self.threads)
        with self._torch.inference_mode():
            return self._module(self._torch.from_numpy(batch)).numpy()


ENGINE = TorchScriptEngine


def read_metadata(path: Path) -> dict[str, Any]:
    """The export metadata of a TorchScript file: a zip whose ``extra/`` entry holds it."""
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()  # reads every entry: catches truncation and bit rot
            if broken is not None:
                raise ModelFileError(f"{path} is corrupt: entry {broken} fails its checksum")
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")]
            if not names:
                raise ModelFileError(
                    f"{path} has no {METADATA_FILE}; export it with midas-depth export"
                )
            metadata = json.loads(archive.read(names[0]))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise ModelFileError(
            f"{path} is not a TorchScript archive (truncated or corrupt?): {exc}"
        ) from exc
    except ValueError as exc:
        raise ModelFileError(f"{path}: unreadable {METADATA_FILE}: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: {METADATA_FILE} is not a JSON object")
    return metadata
