"""The chat endpoint: a FastAPI app with the native and OpenAI-compatible APIs, the web page, metrics and
the embedded index's internal API. ``create_app`` (in ``enclave.server.app``) builds it.

Usage::

    from enclave.server.app import create_app

    uvicorn.run(create_app(load_settings()), host="127.0.0.1", port=8000)
"""
