"""The engine: reconcile one host (gather → plan → apply → reload → verify → roll back)."""
