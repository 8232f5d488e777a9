"""Retrievers over a canonical corpus: BM25 (bm25s) today; dense and hybrid come with issue 4."""
