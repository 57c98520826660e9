"""``lexret serve``: a search page and a JSON API over one index, showing why each image matched.

- :mod:`lexret.serve.config`: the server's settings and limits;
- :mod:`lexret.serve.sample`: the embedded sample's indexes, built on first start into a cache folder;
- :mod:`lexret.serve.retriever`: one encoder and one searcher per index, shared by all requests;
- :mod:`lexret.serve.app`: the FastAPI application (routes, errors, time bounds, upload limits);
- ``static/``: the page (plain HTML, CSS and JavaScript; no build step, nothing from a CDN).

Importing this package is light; FastAPI, torch and the JVM load when a server is made.
"""
