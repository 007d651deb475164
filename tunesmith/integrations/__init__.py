"""Bridges to training frameworks: ``tunesmith.integrations.<library>``.

Each bridge imports its library when it is imported (never by ``import tunesmith``); a missing library is a
``MissingDependency`` error that says which extra to install.
"""
