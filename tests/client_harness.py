"""Run one official hub client against the local hub, inside that client's own virtualenv.

Not a test module: ``fixtures_clients.run_client`` starts it with the venv's interpreter as
``python client_harness.py CLIENT ARGS_JSON`` and reads one JSON line from stdout. Standard
library only (plus the client), since it runs where model-zoo is not installed.

Before the client is imported, the network is fenced in:

* host names listed in ``resolve`` (a whitelisted hub name such as ``hub.modelers.cn``) resolve
  to 127.0.0.1, so a client that insists on its hub's domain reaches the local hub;
* every other name or address outside 127.0.0.0/8 is refused (and listed in ``blocked``), so
  the client's telemetry or anything else it tries never leaves the machine.

Clients:

* ``openmind`` (Modelers, ``openmind_hub``): lists with ``OmApi.list_repo_files`` and downloads
  with ``snapshot_download``; the endpoint comes from ``OPENMIND_HUB_ENDPOINT``, read at import.
* ``openxlab`` (``openxlab``): its endpoint is a module constant (no setting), so the harness
  points the constants at the local hub, then runs ``openxlab.model.download``; with
  ``precreate`` it first makes the sub-directories the client never creates itself.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import traceback

BLOCKED: list[str] = []


def _loopback(host: str) -> bool:  # model_zoo.netaddr.is_loopback_host; not importable here
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fence(resolve: dict[str, str]) -> None:
    """Resolve ``resolve``'s names to loopback; refuse every other non-loopback destination."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else host
        if name in resolve:
            return real_getaddrinfo(resolve[name], port, *args, **kwargs)
        if name is None or _loopback(str(name)):
            return real_getaddrinfo(host, port, *args, **kwargs)
        BLOCKED.append(str(name))
        raise socket.gaierror(socket.EAI_NONAME, f"blocked by the test fence: {name}")

    def connect(self, address):  # type: ignore[no-untyped-def]
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(str(address[0])):
            BLOCKED.append(str(address[0]))
            raise OSError(f"blocked by the test fence: {address[0]}")
        return real_connect(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]


def run_openmind(args: dict) -> dict:
    from openmind_hub import OmApi, snapshot_download

    token = args.get("token")
    revision = args.get("revision")
    listed = OmApi().list_repo_files(args["repo"], revision=revision, token=token)
    out = snapshot_download(
        args["repo"],
        revision=revision,
        token=token,
        local_dir=args["local_dir"],
        cache_dir=args["cache_dir"],
        local_dir_use_symlinks=False,
        max_workers=2,
    )
    return {"listed": sorted(listed), "path": out}


def run_openxlab(args: dict) -> dict:
    import openxlab.model.common.bury as bury
    import openxlab.model.common.constants as constants
    import openxlab.model.handler.download_file as download_file
    import openxlab.xlab.handler.user_token as user_token
    from openxlab.model.clients.openapi_client import OpenapiClient
    from openxlab.xlab.clients.auth_client import AuthClient

    endpoint = args["endpoint"]  # what the client calls openapi.openxlab.org.cn/api/v1
    # The client reads these constants at import, into each module that uses them.
    for module in (constants, download_file, bury):
        module.endpoint = endpoint
    user_token.AUTH_CLIENT = AuthClient(endpoint + "/sso-be/api/v1/open/")
    owner, name = args["repo"].split("/")
    # getFileDownloadUrl exactly as download() asks it, to report what the hub lists.
    models, files = OpenapiClient(endpoint).get_download_url(owner, name, None, None, None)
    cache = os.path.join(os.path.expanduser("~"), ".cache", "model", f"{owner}_{name}")
    for rel in args.get("precreate", []):
        os.makedirs(os.path.join(args["local_dir"], rel), exist_ok=True)
        os.makedirs(os.path.join(cache, rel), exist_ok=True)
    from openxlab.model import download

    done = download(args["repo"], output=args["local_dir"])
    return {
        "listed": sorted(entry["fileName"] for entry in (files or {}).values()),
        "model_names": sorted(models or {}),
        "downloaded": sorted(os.path.relpath(p, args["local_dir"]) for p in done or []),
        "token_file": os.path.exists(
            os.path.join(os.path.expanduser("~"), ".openxlab", "token.json")
        ),
    }


CLIENTS = {"openmind": run_openmind, "openxlab": run_openxlab}


def main() -> int:
    client, raw = sys.argv[1], sys.argv[2]
    args = json.loads(raw)
    fence(args.get("resolve", {}))
    try:
        result = {"ok": True, **CLIENTS[client](args)}
    except BaseException as exc:  # noqa: BLE001 - reported to the test as data
        result = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc(),
        }
    result["blocked"] = sorted(set(BLOCKED))
    sys.stdout.flush()
    print("HARNESS-RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
