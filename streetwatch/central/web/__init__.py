"""Server-rendered review pages: templates, static assets and the pure helpers they need."""
