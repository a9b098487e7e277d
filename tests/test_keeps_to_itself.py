"""The suite keeps to itself (issue 28, item 8): nothing a test or a fixture of any scope runs writes
into the user's real parse cache or anywhere else under the user's home.

The autouse fixture that gave each test a private parse cache was set up after module-scoped fixtures,
which loaded data into the user's real `~/.cache/digit-recognizer` (it listed pytest's temporary
train.csv files afterwards). conftest.pytest_configure now moves HOME and the parse cache for the whole
session before any fixture runs, and its pytest_sessionfinish fails the run if the real cache changed.
"""
import os
import pwd
from pathlib import Path

import pytest

from digit_recognizer import cache
from digit_recognizer.local_data import load_data
from test_bad_input import TEST, TRAIN_20, text


def the_users_home() -> Path:
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def the_users_own_cache() -> Path:
    """Where the kit keeps the parse cache for the user running the suite, outside the suite."""
    import conftest

    if getattr(conftest, "ISOLATION", None) is not None:
        return conftest.ISOLATION.real_cache
    return the_users_home() / ".cache" / "digit-recognizer"


@pytest.fixture(scope="module")
def loaded_by_a_module_fixture(tmp_path_factory) -> Path:
    """A module-scoped fixture that parses a data folder, as test_first_hour's and test_hostile_input's
    trained runs do: it is set up before any autouse function-scoped fixture."""
    data = tmp_path_factory.mktemp("module_data")
    (data / "train.csv").write_bytes(text(TRAIN_20))
    (data / "test.csv").write_bytes(text(TEST))
    before = set(the_users_own_cache().glob("*")) if the_users_own_cache().is_dir() else set()
    load_data(data)
    after = set(the_users_own_cache().glob("*")) if the_users_own_cache().is_dir() else set()
    return cache.cache_dir(), after - before


def test_a_module_scoped_fixture_already_has_a_private_parse_cache(loaded_by_a_module_fixture):
    folder, new_in_the_users_cache = loaded_by_a_module_fixture
    assert new_in_the_users_cache == set(), "a fixture wrote into the user's real parse cache"
    assert folder.resolve() != the_users_own_cache().resolve()
    assert the_users_home().resolve() not in folder.resolve().parents


def test_home_and_what_the_kit_writes_under_it_are_the_sessions_own():
    import conftest
    from digit_recognizer.kaggle.client import kaggle_config_dir
    from digit_recognizer.kaggle.records import fallback_records_path

    private = conftest.ISOLATION.private.resolve()
    for path in (Path.home(), fallback_records_path(), kaggle_config_dir()):
        assert private in path.resolve().parents, path


def test_the_users_real_parse_cache_is_unchanged_so_far(request):
    import conftest

    assert conftest.changes_to_the_real_cache(request.config) == []
