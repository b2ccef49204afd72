from __future__ import annotations

import pytest

from testkit.app import api_login, api_register, started_app
from testkit.backends import BACKEND, drop_test_databases
from testkit.s3 import moto_s3
from testkit.servers import Server


def pytest_collection_modifyitems(config, items):
    if BACKEND == "postgres":
        skip = pytest.mark.skip(reason="about SQLite itself; this pass runs on PostgreSQL + Redis")
        for item in items:
            if "sqlite_only" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _drop_leftover_databases():
    """What module-scoped servers used goes when the session ends."""
    yield
    drop_test_databases()


@pytest.fixture(autouse=True)
def _fresh_backend(tmp_path):
    """Drop the PostgreSQL databases and Redis keys of this test's folder (after its servers and apps stopped)."""
    yield
    drop_test_databases(under=tmp_path)


@pytest.fixture
async def app(tmp_path):
    """A fresh application on its own database, started (migrations applied) for the test."""
    async with started_app(tmp_path) as application:
        yield application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_client(app):
    """Separate test clients (separate cookie jars), each one person."""
    return app.test_client


@pytest.fixture
def signup(make_client):
    """signup("alice") -> (client signed in as alice, alice's user dict)."""

    async def _signup(name: str):
        person = make_client()
        await api_register(person, name)
        return person, await api_login(person, name)

    return _signup


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto's, on 127.0.0.1) for the session, with its bucket: testkit.s3.S3Server."""
    with moto_s3(tmp_path_factory.mktemp("s3")) as s3:
        yield s3


@pytest.fixture
def server(tmp_path):
    """A real hypercorn process on a real SQLite file; its log must hold no traceback at the end."""
    srv = Server(workdir=tmp_path).start()
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log(), srv.log()
