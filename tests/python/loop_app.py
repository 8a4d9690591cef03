"""An application behind the switchyard proxy, written as a real one would be: the official
openai client, a task per request (X-Switchyard-Task), and quality feedback posted to
switchyard's ingest API by the answer's X-Switchyard-Request-Id.

Usage: loop_app.py PROXY_URL INGEST_URL REQUESTS_PER_TASK SEED TASK=MODEL:SHARE,MODEL:SHARE ...
The model of each request is drawn from its task's mix (the app's own choice; the proxy's
policy may replace it). Feedback is the mock upstream's quality for the answer plus uniform
noise of +-0.1, for every successful answer. Prints one JSON object of counts.
"""

import json
import random
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai

proxy, ingest, per_task, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
mixes = {}
for arg in sys.argv[5:]:
    task, mix = arg.split("=", 1)
    mixes[task] = [(m, float(s)) for m, s in (x.rsplit(":", 1) for x in mix.split(","))]

client = openai.OpenAI(base_url=proxy + "/v1", api_key="sk-app", max_retries=0)
rng = random.Random(seed)
jobs = []
for task, mix in mixes.items():
    models, weights = [m for m, _ in mix], [w for _, w in mix]
    for _ in range(per_task):
        jobs.append((task, rng.choices(models, weights)[0], rng.random()))
rng.shuffle(jobs)
# A fixed prompt per task, so a model's cost on a task is the same on every request.
prompts = {t: ("Answer for the %s task. " % t) * 12 for t in mixes}


def one(job):
    task, model, noise = job
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": prompts[task]}],
        max_tokens=40,
        # The header for the proxy; metadata.task also reaches the upstream (the mock).
        extra_headers={"X-Switchyard-Task": task},
        metadata={"task": task},
    )
    answer = raw.parse()
    quality = answer.model_dump()["switchyard_mock"]["quality"]
    value = min(1.0, max(0.0, quality + (noise - 0.5) * 0.2))
    record = {"request_id": raw.headers["x-switchyard-request-id"], "metric": "quality", "value": value}
    req = urllib.request.Request(
        ingest + "/v1/feedback",
        data=json.dumps(record).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200, r.status
    return raw.headers.get("x-switchyard-model"), raw.headers.get("x-switchyard-policy-version")


with ThreadPoolExecutor(max_workers=8) as pool:
    results = list(pool.map(one, jobs))
served = {}
for model, _ in results:
    served[model] = served.get(model, 0) + 1
print(json.dumps({"sent": len(jobs), "feedback": len(results), "served": served,
                  "versions": sorted({v or "" for _, v in results})}))
