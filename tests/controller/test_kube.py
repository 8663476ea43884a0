"""The operator's API client (aiohttp on kopf's login) against the real API server."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.kube_controlplane import ControlPlane
from redisqueue.controller.api.kube import EventTooLarge, Kube, KubeError
from redisqueue.controller.api.login import NoClusterError
from redisqueue.controller.api.paths import object_path

SELF_REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


async def _whoami(kube: Kube) -> str:
    review = await kube.request(
        "POST",
        SELF_REVIEW,
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(review["status"]["userInfo"]["username"])


@contextlib.asynccontextmanager
async def token_client(admin: Kube, token_file: Path, token: str) -> AsyncIterator[Kube]:
    """A client of ``admin``'s cluster that signs in with ``token`` alone, which it reads again
    from ``token_file`` as in a pod (the test writes and rewrites the file)."""
    info = dataclasses.replace(
        admin.info, certificate_data=None, private_key_data=None, token=token
    )
    client = Kube(info, token_file=str(token_file))
    try:
        yield client
    finally:
        await client.close()


async def test_a_rotated_service_account_token_is_read_again_after_a_401(
    control_plane: ControlPlane, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    # In a pod the kubelet rewrites the mounted token before it expires; the client must
    # pick up the new one instead of failing with the token it read at start.
    control_plane.kubectl("create", "serviceaccount", "rotating", "-n", namespace)
    token = control_plane.kubectl("create", "token", "rotating", "-n", namespace).stdout.strip()
    token_file = tmp_path / "token"
    token_file.write_text("a-token-that-was-rotated-away\n")
    async with token_client(kube, token_file, "a-token-that-was-rotated-away") as rotating:
        with pytest.raises(NoClusterError, match="refuses the configured credentials") as caught:
            await rotating.check_reachable()
        assert "a-token-that-was-rotated-away" not in str(caught.value)

        token_file.write_text(token + "\n")  # the kubelet's rotation
        assert await _whoami(rotating) == f"system:serviceaccount:{namespace}:rotating"


async def test_an_unchanged_token_file_is_not_a_retry(kube: Kube, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not-a-valid-token\n")
    async with token_client(kube, token_file, "not-a-valid-token") as invalid:
        with pytest.raises(KubeError) as caught:
            await _whoami(invalid)
        assert caught.value.status == 401


async def test_objects_round_trip_and_a_large_one_arrives_whole_on_a_watch(
    control_plane: ControlPlane, kube: Kube, namespace: str
) -> None:
    assert kube.host == control_plane.server
    assert (await kube.check_reachable()).startswith("v1.")
    collection = object_path("v1", "ConfigMap", namespace)
    version = [v async for _, v in kube.list_pages(collection)][-1]
    # A watch event is one line; this one is larger than aiohttp's default read buffer.
    big = "x" * (300 * 1024)
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "big", "namespace": namespace},
        "data": {"blob": big},
    }
    await kube.apply(cm, field_manager="test")
    events = kube.watch(collection, version, timeout_seconds=30)
    async for kind, obj in events:
        if obj["metadata"]["name"] == "big":
            assert kind == "ADDED"
            assert obj["data"]["blob"] == big
            break
    await events.aclose()

    path = object_path("v1", "ConfigMap", namespace, "big")
    await kube.merge_patch(path, {"data": {"blob": "small"}})
    assert (await kube.get(path) or {})["data"] == {"blob": "small"}
    assert await kube.delete(path)
    assert not await kube.delete(path)
    assert await kube.get(path) is None
    with pytest.raises(KubeError) as caught:
        await kube.create({**cm, "metadata": {"name": "Not Valid", "namespace": namespace}})
    assert caught.value.status == 422 and "Not Valid" in caught.value.message


def test_a_kubeconfig_whose_broken_line_holds_a_token_is_refused_without_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("users:\n- name: u\n  user: {token: secret-token-123\ncontexts: [\n")
    with pytest.raises(NoClusterError) as caught:
        Kube.from_kubeconfig(config)
    message = str(caught.value)
    assert message.startswith(f"the kubeconfig at {config} is not usable: it is not valid YAML")
    assert "secret-token-123" not in message


def test_a_kubeconfig_naming_a_missing_context_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("current-context: elsewhere\ncontexts: []\nclusters: []\nusers: []\n")
    with pytest.raises(NoClusterError, match="refers to a missing entry 'elsewhere'"):
        Kube.from_kubeconfig(config)


async def test_lists_come_in_pages_and_secrets_as_metadata_only(kube: Kube, namespace: str) -> None:
    collection = object_path("v1", "Secret", namespace)
    for i in range(5):
        await kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"s{i}", "namespace": namespace},
                "stringData": {"password": f"value-{i}"},
            }
        )
    pages = [page async for page, _ in kube.list_pages(collection, page_size=2, metadata_only=True)]
    assert [len(p) for p in pages] == [2, 2, 1]
    names = [item["metadata"]["name"] for page in pages for item in page]
    assert names == [f"s{i}" for i in range(5)]
    assert all("data" not in item for page in pages for item in page)
    assert all(item["kind"] == "PartialObjectMetadata" for page in pages for item in page)

    version = [v async for _, v in kube.list_pages(collection, metadata_only=True)][-1]
    events = kube.watch(collection, version, timeout_seconds=30, metadata_only=True)
    await kube.merge_patch(
        object_path("v1", "Secret", namespace, "s3"), {"stringData": {"password": "new"}}
    )
    async for kind, obj in events:
        assert (kind, obj["metadata"]["name"]) == ("MODIFIED", "s3")
        assert "data" not in obj and "stringData" not in obj
        break
    await events.aclose()


async def test_an_event_larger_than_the_reader_takes_ends_the_watch_with_a_clear_error(
    kube: Kube, namespace: str
) -> None:
    collection = object_path("v1", "ConfigMap", namespace)
    version = [v async for _, v in kube.list_pages(collection)][-1]
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "big", "namespace": namespace},
            "data": {"blob": "x" * 200_000},
        }
    )
    with pytest.raises(EventTooLarge, match="larger than 100000 bytes"):
        async for _ in kube.watch(collection, version, timeout_seconds=30, max_event_bytes=100_000):
            pass
