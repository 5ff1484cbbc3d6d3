"""Documents per channel and the index `/ask` searches (no discord import here).

- :mod:`bot.documents.chunking`: documents into passages (character spans).
- :mod:`bot.documents.index`: documents, passages and their full text in SQLite
  (:class:`DocumentIndex`, writes through :class:`IndexWriter` in one transaction).
- :mod:`bot.documents.vectors`: passage vectors in a sqlite-vec table, on
  :mod:`bot.documents.database`'s connection, which can load it.
- :mod:`bot.documents.indexer`: embedding new passages off the event loop.
- :mod:`bot.documents.search`: dense and bm25 candidates, fused.
- :mod:`bot.documents.reading`: the extractive reader over what was found.
- :mod:`bot.documents.parsing`: an upload's text (.txt, .md, .html, .pdf), run in a child
  process by :mod:`bot.isolated`.

The rules about who may change what live in :mod:`bot.contexts`, the service cogs use.
"""
