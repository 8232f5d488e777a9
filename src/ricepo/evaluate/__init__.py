"""Scoring: NDCG@10 through pytrec_eval, TREC run files."""
