"""Example configurations shipped with tomopilot (``tomopilot demo`` runs one)."""
