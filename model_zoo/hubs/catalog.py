"""Static facts about each hub model-zoo speaks: names, default endpoints, variables, URL shapes.

Pure data, no network and no heavy imports, so the registry, settings and CLI can use it
at start-up. The protocol code for each hub lives in its own module beside this one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The source keys users type (`--source`), also the keys of an entry's `sources` mapping.
HF = "hf"
MODELSCOPE = "modelscope"
MODELERS = "modelers"
OPENXLAB = "openxlab"
OPENXLAB_ORIGIN = "openxlab-origin"

SOURCE_KEYS: tuple[str, ...] = (HF, MODELSCOPE, MODELERS, OPENXLAB, OPENXLAB_ORIGIN)

# `namespace/name`, the shape every one of these hubs uses for a repository id.
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class HubInfo:
    key: str  # source key, e.g. "hf"
    title: str  # human name, e.g. "HuggingFace"
    hub: str  # protocol module name under model_zoo.hubs (openxlab-origin shares openxlab's)
    default_endpoint: str
    endpoint_env: str  # environment variable that overrides the endpoint
    token_envs: tuple[str, ...]  # variables read for credentials, first wins
    web_url: str  # format string with {repo_id}
    hf_format: bool  # True when the repositories hold HuggingFace-format checkpoints
    # What to tell a user refused access, where it is not "set TOKEN_ENV to a token".
    credentials_advice: str | None = None


HUBS: dict[str, HubInfo] = {
    HF: HubInfo(
        key=HF,
        title="HuggingFace",
        hub="huggingface",
        default_endpoint="https://huggingface.co",
        endpoint_env="HF_ENDPOINT",
        token_envs=("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"),
        web_url="https://huggingface.co/{repo_id}",
        hf_format=True,
    ),
    MODELSCOPE: HubInfo(
        key=MODELSCOPE,
        title="ModelScope",
        hub="modelscope",
        default_endpoint="https://modelscope.cn",  # modelscope_hub.constants.DEFAULT_ENDPOINT
        endpoint_env="MODELSCOPE_ENDPOINT",
        token_envs=("MODELSCOPE_API_TOKEN",),
        web_url="https://modelscope.cn/models/{repo_id}",
        hf_format=True,
    ),
    MODELERS: HubInfo(
        key=MODELERS,
        title="Modelers",
        hub="modelers",
        default_endpoint="https://modelers.cn",
        endpoint_env="OPENMIND_HUB_ENDPOINT",
        token_envs=("OPENMIND_HUB_TOKEN", "MODELERS_TOKEN"),
        web_url="https://modelers.cn/models/{repo_id}",
        hf_format=True,
    ),
    OPENXLAB: HubInfo(
        key=OPENXLAB,
        title="OpenXLab",
        hub="openxlab",
        default_endpoint="https://openapi.openxlab.org.cn/api/v1",
        endpoint_env="OPENXLAB_ENDPOINT",
        token_envs=("OPENXLAB_TOKEN",),
        web_url="https://openxlab.org.cn/models/detail/{repo_id}",
        hf_format=True,
        credentials_advice="Set OPENXLAB_AK and OPENXLAB_SK to an access key pair with access (or "
        "run `openxlab login`), or OPENXLAB_TOKEN to a token",
    ),
    OPENXLAB_ORIGIN: HubInfo(
        key=OPENXLAB_ORIGIN,
        title="OpenXLab (origin format)",
        hub="openxlab",
        default_endpoint="https://openapi.openxlab.org.cn/api/v1",
        endpoint_env="OPENXLAB_ENDPOINT",
        token_envs=("OPENXLAB_TOKEN",),
        web_url="https://openxlab.org.cn/models/detail/{repo_id}",
        hf_format=False,
        credentials_advice="Set OPENXLAB_AK and OPENXLAB_SK to an access key pair with access (or "
        "run `openxlab login`), or OPENXLAB_TOKEN to a token",
    ),
}


def hub_info(key: str) -> HubInfo:
    """The HubInfo for a source key; raises KeyError listing the valid keys."""
    try:
        return HUBS[key]
    except KeyError:
        raise KeyError(f"unknown source {key!r}; valid sources: {', '.join(SOURCE_KEYS)}") from None
