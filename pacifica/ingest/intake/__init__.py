"""Accepting work without HTTP: the volume's layout, landing bundles, tus uploads, reservations.

Never imports CherryPy nor ``pacifica.ingest.web`` (tests/test_layering.py checks): the web
package parses requests and renders answers on top of this one.
"""
