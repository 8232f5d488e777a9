"""Scoring: NDCG@10 through pytrec_eval, TREC run files."""

BATCH_SIZE = 16   # test queries an evaluation rolls out together (one sampler call and KV cache; ricepo plan counts it)
