"""The simulator's contents API and the /_sim/ commit route that sends GitHub's push."""

from __future__ import annotations

import base64

from prgate.simulator.github.model import blob_sha
from tests.unit.simulator.support import Sim


async def test_a_committed_file_is_served_base64_with_its_blob_sha_by_name_id_and_ref(sim: Sim) -> None:
    sim.seed()
    headers = {"Authorization": f"token {await sim.token()}"}
    missing = await sim.client.get("/repos/octo/repo/contents/.github/prgate.yml", headers=headers)
    assert missing.status == 404
    made = await sim.client.post("/_sim/repos/octo/repo/commits",
                                 json={"path": ".github/prgate.yml", "content": "warn_only: true\n"})
    assert made.status == 201
    first = (await made.json())["sha"]
    await sim.client.post("/_sim/repos/octo/repo/commits", json={"path": ".github/prgate.yml", "content": "x: 1\n"})
    for path in ("/repos/octo/repo/contents/.github/prgate.yml", "/repositories/1296269/contents/.github/prgate.yml"):
        resp = await sim.client.get(path, headers=headers)
        assert resp.status == 200
        body = await resp.json()
        assert (body["type"], body["encoding"], body["sha"]) == ("file", "base64", blob_sha(b"x: 1\n"))
        assert base64.b64decode(body["content"]) == b"x: 1\n"
    old = await sim.client.get("/repos/octo/repo/contents/.github/prgate.yml", params={"ref": first}, headers=headers)
    assert base64.b64decode((await old.json())["content"]) == b"warn_only: true\n"
    unknown = await sim.client.get("/repos/octo/repo/contents/.github/prgate.yml", params={"ref": "f" * 40},
                                   headers=headers)
    assert unknown.status == 404
    # Another installation's token does not see the repository.
    other = {"Authorization": f"token {await sim.token(456)}"}
    assert (await sim.client.get("/repos/octo/repo/contents/.github/prgate.yml", headers=other)).status == 404


def test_blob_sha_is_gits() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert blob_sha(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


async def test_the_push_payload_lists_what_the_commit_changed(sim: Sim) -> None:
    sim.seed()
    repo = sim.state.repo_by_name("octo/repo")
    added = sim.state.commit_file("octo/repo", ".github/prgate.yml", b"a: 1\n", "add", "alice")
    changed = sim.state.commit_file("octo/repo", ".github/prgate.yml", b"a: 2\n", "edit", "alice")
    removed = sim.state.commit_file("octo/repo", ".github/prgate.yml", None, "drop", "alice")
    assert (added.added, changed.modified, removed.removed) == ((".github/prgate.yml",),) * 3
    assert sim.state.file_at(repo.id, ".github/prgate.yml", None) is None
    assert sim.state.file_at(repo.id, ".github/prgate.yml", changed.sha) == b"a: 2\n"
