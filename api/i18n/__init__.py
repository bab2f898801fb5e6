"""The control room in several languages: catalogues, the reader's language, summaries."""
