"""A real hypercorn process started with a wrong setting: it exits, naming the variable, and writes nothing."""

from __future__ import annotations

import pytest

from testkit.servers import Server


def test_the_server_does_not_start_with_a_wrong_value(tmp_path):
    server = Server(workdir=tmp_path, env={"CHAT_DATABASE_URL": "mysql://x"})
    with pytest.raises(RuntimeError, match="exited") as caught:
        server.start()
    assert "CHAT_DATABASE_URL" in str(caught.value)
    assert not (tmp_path / "instance" / "chat.sqlite3").exists()
