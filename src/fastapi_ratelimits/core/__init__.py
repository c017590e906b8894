"""The per-request decision: matching, identities, the compiled engine and the gate,
``on_error``, token budgets, and the vocabulary below them (rates, patterns, decisions,
the registry of algorithms and identities)."""
