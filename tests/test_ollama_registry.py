"""serve-mirror's Ollama registry protocol: a client taking Ollama's steps and ``oras`` (an
independent OCI client) pull the GGUF files of a repository, byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from fixtures_gguf import tiny_gguf  # noqa: F401  (fixture)
from ollama_pull import OllamaStylePull, PullError, is_fully_qualified, parse_name

from model_zoo.ollama.gguf_header import read_header
from model_zoo.ollama.modelfile import CHATML_TEMPLATE, MEDIA_TYPES
from model_zoo.runner.chat import DEFAULT_SYSTEM_PROMPT
from model_zoo.testing.local_hub import LocalHub

REPO = "internlm/internlm2_5-1_8b-chat-gguf"
FILES = {
    "q8_0": "internlm2_5-1_8b-chat-q8_0.gguf",
    "q4_0": "internlm2_5-1_8b-chat-q4_0.gguf",
    "fp16": "internlm2_5-1_8b-chat-fp16.gguf",
}


@pytest.fixture
def gguf_repo(tiny_gguf, tmp_path: Path) -> Path:  # noqa: F811
    root = tmp_path / "hub"
    repo = root / REPO
    repo.mkdir(parents=True)
    for level, name in FILES.items():
        _, path = tiny_gguf("internlm2", {"fp16": "f16"}.get(level, level))
        shutil.copy(path, repo / name)
    (repo / "README.md").write_text("# tiny GGUF files\n")
    return root


@pytest.fixture
def hub(gguf_repo: Path):
    with LocalHub(gguf_repo) as h:
        yield h


def _name(hub: LocalHub, tag: str, repo: str = REPO) -> str:
    return f"{hub.url}/{repo}:{tag}"


def test_ollama_steps_pull_byte_identical_blobs(
    hub: LocalHub, gguf_repo: Path, tmp_path: Path
) -> None:
    client = OllamaStylePull(insecure=True, part_size=64 * 1024)
    result = client.pull(_name(hub, "q8_0"), tmp_path / "blobs")
    manifest = result.manifest
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    kinds = [layer["mediaType"] for layer in manifest["layers"]]
    assert kinds == [MEDIA_TYPES[k] for k in ("model", "template", "system", "params")]
    model = manifest["layers"][0]
    source = gguf_repo / REPO / FILES["q8_0"]
    assert result.blobs[model["digest"]].read_bytes() == source.read_bytes()
    assert model["digest"] == "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
    by_type = {
        layer["mediaType"]: result.blobs[layer["digest"]].read_bytes()
        for layer in manifest["layers"]
    }
    assert by_type[MEDIA_TYPES["template"]].decode() == CHATML_TEMPLATE
    assert by_type[MEDIA_TYPES["system"]].decode() == DEFAULT_SYSTEM_PROMPT
    params = json.loads(by_type[MEDIA_TYPES["params"]])
    assert params["stop"] == ["<|im_start|>", "<|im_end|>"]
    config = json.loads(result.blobs[manifest["config"]["digest"]].read_bytes())
    assert config["model_format"] == "gguf" and config["model_family"] == "internlm2"
    assert config["file_type"] == "Q8_0"
    assert config["model_type"]  # a parameter count, as `ollama show` prints it
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]
    # the model blob came in parts through Range requests on the address Location named
    ranged = [r for r in result.requests if r[0] == "GET" and r[2] is not None]
    assert len([r for r in ranged if model["digest"] in r[1]]) >= 2
    records = [r for r in hub.stats.requests if r.protocol == "ollama" and r.range]
    assert records and all(r.status == 206 for r in records)


def test_oras_gets_the_same_bytes(hub: LocalHub, tmp_path: Path) -> None:
    import oras.provider

    steps = OllamaStylePull(insecure=True).pull(_name(hub, "q4_0"), tmp_path / "ollama")
    host = hub.url.removeprefix("http://")
    registry = oras.provider.Registry(hostname=host, insecure=True)
    manifest = registry.get_manifest(f"{host}/{REPO}:q4_0")
    assert manifest == steps.manifest
    for layer in [*manifest["layers"], manifest["config"]]:
        out = registry.download_blob(
            f"{host}/{REPO}:q4_0", layer["digest"], str(tmp_path / "oras" / layer["digest"])
        )
        assert Path(out).read_bytes() == steps.blobs[layer["digest"]].read_bytes()
    pulled = registry.pull(target=f"{host}/{REPO}:q4_0", outdir=str(tmp_path / "oras-pull"))
    assert sorted(Path(p).read_bytes() for p in pulled) == sorted(
        steps.blobs[layer["digest"]].read_bytes() for layer in manifest["layers"]
    )


def test_oci_only_clients_get_an_oci_manifest_with_the_same_layers(hub: LocalHub) -> None:
    import oras.provider

    host = hub.url.removeprefix("http://")
    registry = oras.provider.Registry(hostname=host, insecure=True)
    oci = registry.get_manifest(
        f"{host}/{REPO}:q8_0", allowed_media_type=["application/vnd.oci.image.manifest.v1+json"]
    )
    docker = registry.get_manifest(f"{host}/{REPO}:q8_0")
    assert oci["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert oci["layers"] == docker["layers"] and oci["config"] == docker["config"]


def test_tags_are_quantization_levels(hub: LocalHub, tmp_path: Path) -> None:
    client = OllamaStylePull(insecure=True)
    for tag, level in (("Q8_0", "q8_0"), ("f16", "fp16"), ("FP16", "fp16"), ("latest", "fp16")):
        result = client.pull(_name(hub, tag), tmp_path / tag)
        model = result.blobs[result.manifest["layers"][0]["digest"]]
        assert read_header(model).file_type == {"q8_0": "Q8_0", "fp16": "F16"}[level], tag
    # no tag: "latest" (Q4_K_M when present, else the first file by name: fp16 here)
    assert parse_name(f"{hub.url}/{REPO}").tag == "latest"
    with pytest.raises(PullError, match="file does not exist"):
        client.pull(_name(hub, "q4_k_m"), tmp_path / "missing")


def test_unknown_tag_lists_the_tags(hub: LocalHub) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{hub.url}/v2/{REPO}/manifests/q2_k")
    body = json.loads(err.value.read())
    assert err.value.code == 404
    assert body["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert "fp16, q4_0, q8_0" in body["errors"][0]["message"]


def test_http_needs_insecure_and_names_are_ollamas(hub: LocalHub, tmp_path: Path) -> None:
    with pytest.raises(PullError, match="insecure"):
        OllamaStylePull().pull(_name(hub, "q8_0"), tmp_path)
    n = parse_name("http://mirror.local:8765/internlm/internlm2_5-7b-chat-gguf:q4_k_m")
    assert (n.scheme, n.host, n.namespace, n.model, n.tag) == (
        "http",
        "mirror.local:8765",
        "internlm",
        "internlm2_5-7b-chat-gguf",
        "q4_k_m",
    )
    assert is_fully_qualified(n)
    assert not is_fully_qualified(
        parse_name("http://h:1/name.with.dots/model:tag")
    )  # no '.' in namespaces


def test_registry_probe_and_blob_head(hub: LocalHub) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{hub.url}/v2/") as resp:
        assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    steps = OllamaStylePull(insecure=True)
    manifest = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"{hub.url}/v2/{REPO}/manifests/q8_0",
                headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            )
        ).read()
    )
    for layer in manifest["layers"]:
        req = urllib.request.Request(f"{hub.url}/v2/{REPO}/blobs/{layer['digest']}", method="HEAD")
        with urllib.request.urlopen(req) as resp:
            assert int(resp.headers["Content-Length"]) == layer["size"]
            assert resp.headers["Docker-Content-Digest"] == layer["digest"]
            assert resp.headers["Location"].endswith(f"/v2/{REPO}/blobs/{layer['digest']}")
    del steps


def test_repository_files_replace_the_generated_layers(gguf_repo: Path, tmp_path: Path) -> None:
    repo = gguf_repo / REPO
    (repo / "template").write_text("{{ .Prompt }}")
    (repo / "params").write_text('{"stop": ["END"]}')
    with LocalHub(gguf_repo) as hub:
        result = OllamaStylePull(insecure=True).pull(_name(hub, "q8_0"), tmp_path)
    by_type = {
        layer["mediaType"]: result.blobs[layer["digest"]].read_bytes()
        for layer in result.manifest["layers"]
    }
    assert by_type[MEDIA_TYPES["template"]] == b"{{ .Prompt }}"
    assert json.loads(by_type[MEDIA_TYPES["params"]]) == {"stop": ["END"]}


def test_a_gated_repository_wants_its_token(gguf_repo: Path, tmp_path: Path) -> None:
    with LocalHub(gguf_repo, tokens={REPO: "secret"}) as hub:
        with pytest.raises(PullError, match="401"):
            OllamaStylePull(insecure=True).pull(_name(hub, "q8_0"), tmp_path / "a")
        result = OllamaStylePull(insecure=True, token="secret").pull(
            _name(hub, "q8_0"), tmp_path / "b"
        )
        assert result.blobs


def test_a_corrupted_blob_fails_the_digest_check(hub: LocalHub, tmp_path: Path) -> None:
    from model_zoo.testing.faults import Fault

    hub.faults.add(Fault.flip_byte(offset=1000, times=None, path=FILES["q8_0"]))
    with pytest.raises(PullError, match="digest mismatch"):
        OllamaStylePull(insecure=True).pull(_name(hub, "q8_0"), tmp_path)


def test_serve_mirror_banner_shows_the_ollama_command(hub: LocalHub) -> None:
    from model_zoo.cli.cmd_mirror import mirror_banner

    lines = mirror_banner(hub, "a directory")
    assert f"ollama pull --insecure {hub.url}/{REPO}:fp16" in lines
