from collections.abc import Iterator

import pytest

from tests.utils.s3 import ObjectStorage, moto_server


@pytest.fixture(scope="session")
def object_storage() -> Iterator[ObjectStorage]:
    with moto_server() as storage:
        yield storage
