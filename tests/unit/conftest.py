"""The fast tier in two parts: the tests that need the database carry the `database` mark, set here from what
they ask of pytest-django (a `django_db` mark, or a fixture that opens the database); the others run without one,
in half a minute: `make test-fast` (`pytest tests/unit -m "not database"`)."""

import pytest

DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}


def needs_database(item: pytest.Item) -> bool:
    return item.get_closest_marker("django_db") is not None or bool(
        DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_database(item):
            item.add_marker(pytest.mark.database)
