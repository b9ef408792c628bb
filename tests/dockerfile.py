"""The Dockerfile read as text: stages, their instructions, the environment a stage ends with.

No Docker engine is needed; tests/test_deploy_manifests.py checks the text and
tests/test_runtime_image.py replays the runtime stage on this machine.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their (KEYWORD, arguments) instructions; comments and continuations resolved."""
    logical, pending = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        logical.append(pending + raw)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m[1], m[0]), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, base))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            global_args[key] = value
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return stages


def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def lineage(stages: list[Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    by_name = {s.name: s for s in stages}
    chain = [by_name[name]]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    return chain


def in_build_order(chain: list[Stage]) -> list[tuple[str, str]]:
    """Every instruction of a lineage, oldest stage first."""
    return [instruction for stage in reversed(chain) for instruction in stage.instructions]


def env_of(chain: list[Stage]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, value in in_build_order(chain):
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(value))
    return env


def copy_sources(instruction: str) -> tuple[list[str], str, str | None]:
    """COPY arguments -> (sources, destination, the --from stage or None)."""
    words = instruction.split()
    options = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    stage = next((o.split("=", 1)[1] for o in options if o.startswith("--from=")), None)
    return paths[:-1], paths[-1], stage


def dockerignore_rules() -> list[str]:
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]
