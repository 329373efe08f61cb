"""Column values between cdc's internal form (PostgreSQL's text output, as decoders make it) and
the encodings other producers and consumers use on the wire."""
