"""ict operator (kopf handlers and pure builders); see ARCHITECTURE.md."""
