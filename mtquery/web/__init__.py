"""The local map page (``mtquery serve``): ``app`` (the Starlette app over one read-only
session), ``server`` (bind, serve, start in a thread), ``static/`` (the page and the vendored
MapLibre GL JS and Natural Earth outlines, see ``static/VENDORED.md``), ``browser`` (a headless
Chromium driver for the page's test and screenshots), ``vendor`` (refreshing ``static/``)."""
