"""The model server: SamService (no HTTP), the Flask app, the sam-server CLI (see docs/server.md)."""
