"""Statistics both apps share, on numbers and arrays alone: no Django, no app (import-linter checks it)."""
