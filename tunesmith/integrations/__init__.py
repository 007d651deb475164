"""Bridges between tunesmith and the training frameworks: ``tunesmith.integrations.<library>``.

Each bridge is imported only when asked for (``import tunesmith`` imports none of them), and importing one
without its library installed raises an error that says which extra to install
(``pip install 'tunesmith[<extra>]'``).
"""
