"""The agent's prompt: a chat template entry per backbone family (config `templates`)."""

from __future__ import annotations


def format_documents(ranking: list[tuple[str, float]], corpus: dict[str, dict], n: int, max_chars: int) -> str:
    lines = []
    for i, (doc_id, _) in enumerate(ranking[:n], 1):
        doc = corpus[doc_id]
        body = f"{doc['title']}: {doc['text']}" if doc.get("title") else doc["text"]
        lines.append(f"[{i}] {' '.join(body.split())[:max_chars]}")
    return "\n".join(lines) if lines else "(no documents found)"


def build_messages(template: dict, query: str, documents: str) -> list[dict]:
    messages = []
    if template.get("system"):
        messages.append({"role": "system", "content": template["system"]})
    messages.append({"role": "user", "content": template["user"].format(query=query, documents=documents)})
    return messages
