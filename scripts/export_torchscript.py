"""Export the model: the same as ``midas-depth export`` (midas_service/export/command.py).

python scripts/export_torchscript.py --output models/midas_small.pt            # official weights
python scripts/export_torchscript.py --random-weights --output models/midas_small.pt  # untrained!
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from midas_service.export.command import main

if __name__ == "__main__":
    sys.exit(main())
