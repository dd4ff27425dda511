"""`make ha-test` (tests/ha/run.sh): a test's outcome for its fixtures'
teardown (the guests' console tails when it failed)."""
import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep
