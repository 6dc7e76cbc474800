from tests.lan.conftest import make_lan, stale_lans_removed  # noqa: F401
