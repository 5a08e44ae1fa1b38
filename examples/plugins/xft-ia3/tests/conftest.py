"""xft's test helpers: `xft_pm` (a fresh plugin manager with xft's built-ins) and `tiny_model` (tiny offline models)."""

pytest_plugins = ["xft_core.testing_fixtures"]
