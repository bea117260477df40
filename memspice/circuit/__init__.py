"""Circuit data: frozen elements, subcircuits, analyses, decks, and their builders."""
