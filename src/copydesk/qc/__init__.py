"""The publish gate: grammar, moderation and content checks of an article."""
