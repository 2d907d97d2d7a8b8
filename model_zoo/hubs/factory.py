"""Pick the adapter for a source key, wired to the endpoint and token from settings.

The only place that maps source keys to protocol modules; the modules are imported lazily so
importing model_zoo.hubs (or running ``model-zoo list``) never pulls in httpx or
huggingface_hub.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .catalog import hub_info

if TYPE_CHECKING:
    import httpx

    from ..settings import Settings
    from .base import HubAdapter

# protocol module (HubInfo.hub) -> adapter class name in it
_ADAPTERS: dict[str, str] = {
    "huggingface": "HuggingFaceAdapter",
    "modelscope": "ModelScopeAdapter",
    "modelers": "ModelersAdapter",
    "openxlab": "OpenXLabAdapter",
}


def adapter_for(
    source: str,
    settings: Settings | None = None,
    *,
    client: httpx.Client | None = None,
) -> HubAdapter:
    """The HubAdapter for ``source`` (a key of ``catalog.HUBS``).

    Endpoint and token come from ``settings`` (``load_settings()`` when None). ``client`` is an
    httpx client to share (connection reuse, tests with ``httpx.MockTransport``); by default
    each adapter builds one with ``http.build_client``. The HuggingFace adapter lists through
    huggingface_hub's own client and uses ``client`` only for probes and follow-up checks.
    Raises KeyError naming the valid keys for an unknown source.
    """
    info = hub_info(source)
    if settings is None:
        from ..settings import load_settings

        settings = load_settings()
    module = importlib.import_module(f"{__package__}.{info.hub}")
    cls: Any = getattr(module, _ADAPTERS[info.hub])
    adapter = cls(settings.endpoint(source), settings.token(source), client=client, source=source)
    if info.hub == "openxlab" and settings.token(source) is None:
        key = settings.openxlab_access_key()  # raises a broken config file's error
        if key is not None:
            adapter.use_access_key(key)
    return adapter
