"""The chat endpoint: FastAPI app with the native and OpenAI-compatible APIs."""
