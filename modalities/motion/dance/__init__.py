"""Dance: motion conditioned on music (procedural data on music rendered by the audio plugin,
beat alignment, a writer that plays each motion with its music)."""
