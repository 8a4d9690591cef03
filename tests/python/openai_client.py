"""The official openai client, unmodified, against the switchyard proxy.

Usage: openai_client.py BASE_URL CHAT_MODEL EMBED_MODEL LIMITED_MODEL
Prints one JSON object describing what the client saw.
"""

import json
import sys

import openai

base, chat_model, embed_model, limited_model = sys.argv[1:5]
client = openai.OpenAI(base_url=base + "/v1", api_key="sk-client-token", max_retries=0)
messages = [{"role": "user", "content": "Say something short"}]
out = {}

raw = client.chat.completions.with_raw_response.create(model=chat_model, messages=messages)
plain = raw.parse()
out["plain"] = {
    "content": plain.choices[0].message.content,
    "prompt_tokens": plain.usage.prompt_tokens,
    "cost": plain.model_dump()["usage"].get("cost"),
    "header_model": raw.headers.get("x-switchyard-model"),
    "header_cost": raw.headers.get("x-switchyard-cost"),
}


def stream(**extra):
    chunks = list(client.chat.completions.create(model=chat_model, messages=messages, stream=True, **extra))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage.model_dump() for c in chunks if c.usage is not None]
    return {"chunks": len(chunks), "text": text, "usage": usage}


out["stream"] = stream()
out["stream_usage"] = stream(stream_options={"include_usage": True})

emb = client.embeddings.create(model=embed_model, input=["one", "two"])
out["embeddings"] = {"count": len(emb.data), "dims": len(emb.data[0].embedding)}

out["models"] = sorted(m.id for m in client.models.list())


def error_of(model):
    try:
        client.chat.completions.create(model=model, messages=messages)
        return None
    except openai.APIStatusError as e:
        return {"class": type(e).__name__, "status": e.status_code, "code": e.code}


out["unknown_model"] = error_of("acme/no-such-model")
try:
    client.chat.completions.create(
        model=chat_model, messages=messages, extra_headers={"X-Switchyard-Task": "capped"}
    )
    out["over_budget"] = None
except openai.APIStatusError as e:
    out["over_budget"] = {"class": type(e).__name__, "status": e.status_code, "code": e.code}
out["limited_model"] = error_of(limited_model)
print(json.dumps(out))
